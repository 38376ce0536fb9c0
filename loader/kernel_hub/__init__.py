"""kernel_hub: resolve and load kernel variants built by kernel_builder.

Variant directories follow Hugging Face's `kernels` format, so either loader can load them.
"""

from __future__ import annotations

from .errors import NoCompatibleVariantError, VariantError
from .layer import (
    TRANSFORMER_KERNELS_MAPPING,
    CUDAProperties,
    Device,
    KernelizeError,
    KernelizeWarning,
    LayerRepository,
    LocalLayerRepository,
    LockedLayerRepository,
    Mode,
    ROCMProperties,
    kernelize,
    register_kernel_mapping,
    replace_kernel_forward_from_hub,
    use_kernel_forward_from_hub,
    use_kernel_mapping,
)
from .local import get_kernel_variants_local, get_local_kernel, local_kernel_overrides
from .resolve import VariantDecision, resolve_variants
from .system import SystemInfo, detect_system, system_variant_names
from .variants import (
    ArchVariant,
    NoarchVariant,
    Variant,
    backend_type,
    format_variant,
    parse_variant,
)

__all__ = [
    "TRANSFORMER_KERNELS_MAPPING",
    "ArchVariant",
    "CUDAProperties",
    "Device",
    "KernelIntegrityError",
    "KernelizeError",
    "KernelizeWarning",
    "LockMismatchError",
    "LayerRepository",
    "LocalLayerRepository",
    "LockedLayerRepository",
    "Mode",
    "ROCMProperties",
    "NoCompatibleVariantError",
    "NoarchVariant",
    "SystemInfo",
    "UntrustedKernelError",
    "Variant",
    "VariantDecision",
    "VariantError",
    "backend_type",
    "detect_system",
    "format_variant",
    "has_kernel",
    "install_kernel",
    "get_kernel",
    "get_kernel_variants",
    "get_locked_kernel",
    "get_kernel_variants_local",
    "get_local_kernel",
    "kernelize",
    "load_kernel",
    "local_kernel_overrides",
    "parse_variant",
    "register_kernel_mapping",
    "replace_kernel_forward_from_hub",
    "resolve_variants",
    "system_variant_names",
    "use_kernel_forward_from_hub",
    "use_kernel_mapping",
]

# The Hub half imports huggingface_hub; it loads on first use so the builder, which imports
# the variant grammar and digests from this package, runs where huggingface_hub is absent.
_HUB_NAMES = {
    "get_kernel": "hub",
    "get_kernel_variants": "hub",
    "has_kernel": "hub",
    "install_kernel": "hub",
    "UntrustedKernelError": "hub",
    "KernelIntegrityError": "cache",
    "load_kernel": "lock",
    "get_locked_kernel": "lock",
    "LockMismatchError": "lock",
}


def __getattr__(name: str):
    module = _HUB_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel_hub' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)

