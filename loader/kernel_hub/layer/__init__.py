"""kernelize: swap the forward of marked model layers for kernel layers from the Hub or disk."""

from .defaults import TRANSFORMER_KERNELS_MAPPING
from .device import CUDAProperties, Device, ROCMProperties
from .host import replace_kernel_forward_from_hub, use_kernel_forward_from_hub
from .kernelize import kernelize
from .mapping import register_kernel_mapping, use_kernel_mapping
from .mode import Mode
from .report import KernelizeError, KernelizeWarning
from .repos import LayerRepository, LocalLayerRepository, LockedLayerRepository

__all__ = [
    "CUDAProperties",
    "Device",
    "KernelizeError",
    "KernelizeWarning",
    "LayerRepository",
    "LocalLayerRepository",
    "LockedLayerRepository",
    "Mode",
    "ROCMProperties",
    "TRANSFORMER_KERNELS_MAPPING",
    "kernelize",
    "register_kernel_mapping",
    "replace_kernel_forward_from_hub",
    "use_kernel_forward_from_hub",
    "use_kernel_mapping",
]
