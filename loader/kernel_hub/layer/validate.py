"""Checks that a hub layer can stand in for a host class's forward, and for which modes."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from .mode import Mode

if TYPE_CHECKING:
    from torch import nn

# The only class attributes a layer may add to nn.Module's.
LAYER_FLAGS = frozenset({"can_torch_compile", "has_backward"})


def validate_layer(layer: object, host: type[nn.Module]) -> None:
    """Raise TypeError unless `layer` is a stateless nn.Module whose forward has the host's
    forward parameters (same names and kinds, `self` excepted)."""
    from torch import nn

    name = getattr(layer, "__qualname__", repr(layer))
    if not (isinstance(layer, type) and issubclass(layer, nn.Module)):
        raise TypeError(f"layer {name} is not an nn.Module subclass")
    if layer.__init__ is not nn.Module.__init__:
        raise TypeError(
            f"layer {name} overrides __init__; a layer must be stateless and use the host "
            "module's state"
        )
    extra = set(dir(layer)) - set(dir(nn.Module)) - LAYER_FLAGS
    if extra:
        raise TypeError(
            f"layer {name} defines {', '.join(sorted(extra))}; a layer may only add "
            f"{' and '.join(sorted(LAYER_FLAGS))} to nn.Module "
            "(forward calls nothing else on the layer)"
        )
    layer_params = _forward_params(layer)
    host_params = _forward_params(host)
    if layer_params != host_params:
        raise TypeError(
            f"forward of layer {name} takes ({_describe(layer_params)}) but "
            f"{host.__qualname__}.forward takes ({_describe(host_params)})"
        )


def unsupported_mode_reason(layer: type[nn.Module], mode: Mode) -> str | None:
    """Why `layer` cannot serve kernelize's mode, or None when it can. A layer must declare
    can_torch_compile = True to be used under torch.compile, and has_backward = False
    excludes it from training."""
    if Mode.TORCH_COMPILE in mode and getattr(layer, "can_torch_compile", False) is not True:
        return (
            f"layer {layer.__qualname__} does not declare can_torch_compile = True, "
            "and mode has TORCH_COMPILE"
        )
    if Mode.TRAINING in mode and not getattr(layer, "has_backward", True):
        return f"layer {layer.__qualname__} declares has_backward = False, and mode has TRAINING"
    return None


def _forward_params(cls: type) -> list[tuple[str, inspect._ParameterKind]]:
    params = list(inspect.signature(cls.forward).parameters.values())[1:]
    return [(param.name, param.kind) for param in params]


def _describe(params: list[tuple[str, inspect._ParameterKind]]) -> str:
    return ", ".join(f"{name}: {kind.description}" for name, kind in params) or "nothing"
