"""Pick the value registered for the smallest capability range that contains a capability."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

Value = TypeVar("Value")


@dataclass
class CapabilityRanges(Generic[Value]):
    """Values registered for inclusive capability ranges; None as an upper bound is open.

    Registering a range again replaces its value. Among the ranges containing a capability the
    narrowest wins; between ranges of equal width, the one registered last.
    """

    _entries: list[tuple[int, int | None, Value]] = field(default_factory=list)

    def insert(self, low: int, high: int | None, value: Value) -> None:
        self._entries = [entry for entry in self._entries if entry[:2] != (low, high)]
        self._entries.append((low, high, value))

    def select(self, capability: int | None) -> Value | None:
        """The value of the narrowest range containing capability. An unknown capability
        (None) only matches a range that does not restrict it: (0, None)."""
        best: tuple[float, Value] | None = None
        for low, high, value in self._entries:
            if capability is None:
                contains = low == 0 and high is None
            else:
                contains = low <= capability and (high is None or capability <= high)
            if not contains:
                continue
            width = float("inf") if high is None else high - low
            if best is None or width <= best[0]:
                best = (width, value)
        return None if best is None else best[1]

    def copy(self) -> CapabilityRanges[Value]:
        return CapabilityRanges(list(self._entries))
