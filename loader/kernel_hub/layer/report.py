"""What kernelize tells people when a module keeps its original forward."""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict

logger = logging.getLogger("kernel_hub")

_NAMES_SHOWN = 3


class KernelizeError(RuntimeError):
    """kernelize(use_fallback=False) could not give a module a kernel."""


class KernelizeWarning(UserWarning):
    """A mapped kernel could not be used; the modules keep their original forward."""


class FallbackReport:
    """Collects the modules left on their original forward, grouped by reason, and reports
    each reason once: a warning when a mapped kernel was unusable, an INFO log line when
    nothing was mapped. With use_fallback=False the first reason raises instead."""

    def __init__(self, use_fallback: bool) -> None:
        self.use_fallback = use_fallback
        self._unusable: dict[str, list[str]] = defaultdict(list)
        self._unmapped: dict[str, list[str]] = defaultdict(list)

    def unmapped(self, module_name: str, reason: str) -> None:
        self._check_fallback(module_name, reason, None)
        self._unmapped[reason].append(module_name)

    def unusable(self, module_name: str, reason: str, error: BaseException | None = None) -> None:
        self._check_fallback(module_name, reason, error)
        self._unusable[reason].append(module_name)

    def emit(self) -> None:
        """Report every reason collected; call it from kernelize itself (warning stack level)."""
        for reason, names in self._unmapped.items():
            logger.info("kernelize kept the original forward of %s: %s", _modules(names), reason)
        for reason, names in self._unusable.items():
            warnings.warn(
                f"kernelize kept the original forward of {_modules(names)}: {reason}",
                KernelizeWarning,
                stacklevel=3,  # the caller of kernelize
            )

    def _check_fallback(self, module_name: str, reason: str, error: BaseException | None) -> None:
        if not self.use_fallback:
            raise KernelizeError(
                f"kernelize could not replace the forward of {_display(module_name)}: {reason}"
            ) from error


def _modules(names: list[str]) -> str:
    shown = ", ".join(_display(name) for name in names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    count = f"{len(names)} module{'s' if len(names) != 1 else ''}"
    return f"{count} ({shown}{f', and {more} more' if more > 0 else ''})"


def _display(module_name: str) -> str:
    return repr(module_name) if module_name else "the model itself"
