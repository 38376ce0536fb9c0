"""Binding a layer's forward to a module instance, and undoing exactly that."""

from __future__ import annotations

import weakref
from types import MethodType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# module -> the bound forward kernelize put on it; used to undo only our own replacement,
# never a forward someone else set on the instance (hooks of other libraries do that).
_installed: weakref.WeakKeyDictionary[nn.Module, MethodType] = weakref.WeakKeyDictionary()


def use_layer_forward(module: nn.Module, layer: type[nn.Module]) -> None:
    bound = MethodType(layer.forward, module)
    module.forward = bound
    _installed[module] = bound


def use_original_forward(module: nn.Module) -> None:
    """Remove the forward kernelize installed on module, so its class's forward applies."""
    bound = _installed.pop(module, None)
    if bound is not None and module.__dict__.get("forward") is bound:
        del module.__dict__["forward"]
