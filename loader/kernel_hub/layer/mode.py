"""The modes kernelize runs in, and which registered mode serves each of them."""

from __future__ import annotations

from enum import Flag, auto


class Mode(Flag):
    """How the kernelized model will be used.

    kernelize takes INFERENCE or TRAINING, optionally with TORCH_COMPILE. A mapping registers
    repositories under those same combinations or under FALLBACK (used when nothing more
    specific is registered; a bare repository in a mapping is registered as FALLBACK).
    """

    FALLBACK = auto()
    TRAINING = auto()
    INFERENCE = auto()
    TORCH_COMPILE = auto()


# For each kernelize mode, the registered modes that may serve it, best first (the order of
# Hugging Face's kernels). A kernel registered for training also serves inference, never the
# reverse; one registered for torch.compile also serves eager use of the same kind.
_SEARCH_ORDER: dict[Mode, tuple[Mode, ...]] = {
    Mode.INFERENCE: (
        Mode.INFERENCE,
        Mode.INFERENCE | Mode.TORCH_COMPILE,
        Mode.TRAINING,
        Mode.TRAINING | Mode.TORCH_COMPILE,
        Mode.FALLBACK,
    ),
    Mode.TRAINING: (
        Mode.TRAINING,
        Mode.TRAINING | Mode.TORCH_COMPILE,
        Mode.FALLBACK,
    ),
    Mode.INFERENCE | Mode.TORCH_COMPILE: (
        Mode.INFERENCE | Mode.TORCH_COMPILE,
        Mode.TRAINING | Mode.TORCH_COMPILE,
        Mode.FALLBACK,
    ),
    Mode.TRAINING | Mode.TORCH_COMPILE: (
        Mode.TRAINING | Mode.TORCH_COMPILE,
        Mode.FALLBACK,
    ),
}

REGISTRABLE_MODES = frozenset(_SEARCH_ORDER) | {Mode.FALLBACK}


def check_kernelize_mode(mode: Mode) -> None:
    """Raise ValueError unless mode is one kernelize can run in."""
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a kernel_hub Mode, got {mode!r}")
    if Mode.FALLBACK in mode:
        raise ValueError("Mode.FALLBACK is only for registering mappings, not for kernelize")
    if Mode.INFERENCE in mode and Mode.TRAINING in mode:
        raise ValueError("mode cannot contain both Mode.INFERENCE and Mode.TRAINING")
    if mode not in _SEARCH_ORDER:
        raise ValueError(
            f"mode {mode} must contain Mode.INFERENCE or Mode.TRAINING "
            "(optionally with Mode.TORCH_COMPILE)"
        )


def check_registered_mode(mode: Mode) -> None:
    """Raise ValueError unless a mapping may register a repository under mode."""
    if not isinstance(mode, Mode) or mode not in REGISTRABLE_MODES:
        allowed = ", ".join(sorted(str(each) for each in REGISTRABLE_MODES))
        raise ValueError(
            f"a mapping cannot register a repository under {mode!r}; use one of {allowed}"
        )


def search_order(mode: Mode) -> tuple[Mode, ...]:
    """The registered modes that serve kernelize's mode, best first."""
    check_kernelize_mode(mode)
    return _SEARCH_ORDER[mode]
