"""Exceptions that kernel_hub raises for people to read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .resolve import VariantDecision
    from .system import SystemInfo


class VariantError(ValueError):
    """A variant name or variant object that is not in the variant grammar."""


class NoCompatibleVariantError(ImportError):
    """No variant of a kernel can be loaded on this system.

    The message lists every variant that was considered and why it was rejected, and describes
    this system; the same facts are kept on the exception for callers that want them.
    """

    def __init__(
        self,
        location: str,
        decisions: Sequence[VariantDecision],
        system: SystemInfo,
    ) -> None:
        self.location = location
        self.decisions = list(decisions)
        self.system = system
        super().__init__(_explain(location, self.decisions, system))


def _explain(location: str, decisions: list[VariantDecision], system: SystemInfo) -> str:
    header = f"No compatible kernel variant in {location} for this system ({system.describe()})."
    if not decisions:
        return (
            f"{header}\nNo variant directories were found: a variant directory holds a "
            "metadata.json, either under build/, directly in the given directory, or the "
            "given directory is itself one (metadata.json + __init__.py)."
        )
    lines = [f"  {decision.name}: {decision.reason}" for decision in decisions]
    return "\n".join([header, "Variants considered:", *lines])
