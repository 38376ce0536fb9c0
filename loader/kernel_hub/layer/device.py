"""Devices that mappings register kernels for, and the device a model runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_TYPES = frozenset({"cpu", "cuda", "rocm", "mps", "xpu", "npu", "neuron", "tpu"})


@dataclass(frozen=True)
class CUDAProperties:
    """An inclusive range of CUDA compute capabilities written major*10+minor (8.6 is 86)."""

    min_capability: int
    max_capability: int

    def __post_init__(self) -> None:
        _check_range(self.min_capability, self.max_capability)


@dataclass(frozen=True)
class ROCMProperties:
    """An inclusive range of ROCm capabilities as torch reports them, written major*10+minor."""

    min_capability: int
    max_capability: int

    def __post_init__(self) -> None:
        _check_range(self.min_capability, self.max_capability)


_PROPERTIES_FOR = {CUDAProperties: "cuda", ROCMProperties: "rocm"}


@dataclass(frozen=True)
class Device:
    """A device type in a kernel mapping, optionally narrowed to a capability range."""

    type: str
    properties: CUDAProperties | ROCMProperties | None = None

    def __post_init__(self) -> None:
        check_device_type(self.type)
        if self.properties is None:
            return
        wanted = _PROPERTIES_FOR.get(type(self.properties))
        if wanted is None:
            raise TypeError(
                "Device properties must be CUDAProperties or ROCMProperties, "
                f"got {self.properties!r}"
            )
        if wanted != self.type:
            raise ValueError(
                f"{type(self.properties).__name__} only applies to '{wanted}' devices, "
                f"not '{self.type}'"
            )

    def capability_range(self) -> tuple[int, int | None]:
        """(low, high) inclusive; high None means no upper limit."""
        if self.properties is None:
            return 0, None
        return self.properties.min_capability, self.properties.max_capability


@dataclass(frozen=True)
class Target:
    """The device kernelize selects kernels for: its type and, for GPUs, its capability."""

    type: str
    capability: int | None = None

    def describe(self) -> str:
        if self.capability is None:
            return self.type
        return f"{self.type} (capability {self.capability // 10}.{self.capability % 10})"


def check_device_type(device_type: str) -> None:
    if device_type not in DEVICE_TYPES:
        raise ValueError(
            f"unknown device type {device_type!r}; "
            f"kernel mappings know {', '.join(sorted(DEVICE_TYPES))}"
        )


def target_for(device: str | torch.device | Device | None, model: nn.Module) -> Target:
    """The Target for kernelize's device argument, or the model's device when it is None."""
    import torch

    if isinstance(device, Device):
        device = device.type
    if device is None:
        device = _model_device(model)
    if isinstance(device, str) and device in DEVICE_TYPES:
        device_type, index = device, None
    else:
        torch_device = torch.device(device)
        device_type, index = torch_device.type, torch_device.index
    if device_type == "cuda" and torch.version.hip is not None:
        device_type = "rocm"
    check_device_type(device_type)
    if device_type in ("cuda", "rocm"):
        return Target(device_type, gpu_capability(index))
    return Target(device_type)


def gpu_capability(index: int | None = None) -> int | None:
    """The visible GPU's capability as major*10+minor, None when no GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return major * 10 + minor


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    raise ValueError(
        "kernelize cannot tell the model's device (it has no parameters or buffers); pass device="
    )


def _check_range(low: int, high: int) -> None:
    if not (isinstance(low, int) and isinstance(high, int)):
        raise TypeError(
            f"capabilities are integers major*10+minor (e.g. 90), got {low!r} and {high!r}"
        )
    if low > high:
        raise ValueError(f"min_capability ({low}) is greater than max_capability ({high})")
