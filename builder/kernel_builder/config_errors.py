"""Error reporting for build.toml: one exception that carries every problem found in one pass."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable


class ConfigError(Exception):
    """build.toml is invalid. `errors` holds one line per problem, each prefixed with the file."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


class ErrorCollector:
    """Accumulates problems in one file; `raise_if_any` turns them into a ConfigError."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self.errors: list[str] = []

    def add(self, message: str, table: str | None = None, key: str | None = None) -> None:
        parts = [self.file_label + ":"]
        if table is not None:
            parts.append(f"[{table}]")
        if key is not None:
            parts.append(f"{key}:")
        parts.append(message)
        self.errors.append(" ".join(parts))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigError(self.errors)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean `x`?)' for a near miss, '' otherwise. Treats '_' and '-' as the same."""
    by_normalized = {candidate.replace("_", "-"): candidate for candidate in candidates}
    matches = difflib.get_close_matches(
        word.replace("_", "-"), list(by_normalized), n=1, cutoff=0.6
    )
    if not matches:
        return ""
    return f" (did you mean `{by_normalized[matches[0]]}`?)"


def describe_value(value: object) -> str:
    """A TOML-flavoured description of a parsed value, for 'expected X, found Y' messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return f"array of {len(value)} item(s)"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"date/time {value.isoformat()}"
    return type(value).__name__
