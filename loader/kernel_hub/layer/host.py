"""Marking host classes (and functions) whose forward kernelize may replace."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

# The attribute Hugging Face's kernels uses too, so models decorated by either are seen.
LAYER_NAME_ATTRIBUTE = "kernel_layer_name"

Decorated = TypeVar("Decorated")


def replace_kernel_forward_from_hub(cls: type[nn.Module], layer_name: str) -> None:
    """Mark cls so kernelize replaces its forward with the layer mapped for layer_name.

    For classes you do not own; the decorator is preferred, since a third-party class can
    change its forward or attributes under the mapped layer.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"replace_kernel_forward_from_hub needs an nn.Module subclass, got {cls!r}")
    setattr(cls, LAYER_NAME_ATTRIBUTE, layer_name)


def use_kernel_forward_from_hub(layer_name: str) -> Callable[[Decorated], Decorated | nn.Module]:
    """Decorator: on an nn.Module subclass, marks it with layer_name and returns it. On a
    function, returns an nn.Module instance that calls the function (so kernelize can replace
    it when it is a submodule of the model); the function may set can_torch_compile and
    has_backward attributes, which the module class carries."""

    def decorate(target):
        if inspect.isclass(target):
            replace_kernel_forward_from_hub(target, layer_name)
            return target
        if inspect.isfunction(target):
            module_class = _module_class_for(target)
            replace_kernel_forward_from_hub(module_class, layer_name)
            return module_class()
        raise TypeError(
            "@use_kernel_forward_from_hub applies to nn.Module classes and functions, "
            f"not {target!r}"
        )

    return decorate


def host_layer_name(module: nn.Module) -> str | None:
    """The layer name the module's class was marked with, or None."""
    name = getattr(type(module), LAYER_NAME_ATTRIBUTE, None)
    return name if isinstance(name, str) else None


def _module_class_for(function: Callable) -> type[nn.Module]:
    def forward(self, *args, **kwargs):
        return function(*args, **kwargs)

    signature = inspect.signature(function)
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    # Layer validation compares forward signatures, so forward shows the function's parameters.
    forward.__signature__ = signature.replace(
        parameters=[self_parameter, *signature.parameters.values()]
    )
    attributes = {
        "forward": forward,
        "__doc__": function.__doc__,
        "__module__": function.__module__,
        "__qualname__": function.__qualname__,
        "can_torch_compile": getattr(function, "can_torch_compile", False),
        "has_backward": getattr(function, "has_backward", True),
    }
    return type(function.__name__, (nn.Module,), attributes)
