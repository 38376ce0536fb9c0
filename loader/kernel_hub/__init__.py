"""kernel_hub: resolve and load kernel variants built by kernel_builder.

Variant directories follow Hugging Face's `kernels` format, so either loader can load them.
"""

from __future__ import annotations

from types import ModuleType

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
    "KernelizeError",
    "KernelizeWarning",
    "LayerRepository",
    "LocalLayerRepository",
    "LockedLayerRepository",
    "Mode",
    "ROCMProperties",
    "NoCompatibleVariantError",
    "NoarchVariant",
    "SystemInfo",
    "Variant",
    "VariantDecision",
    "VariantError",
    "backend_type",
    "detect_system",
    "format_variant",
    "get_kernel",
    "get_kernel_variants_local",
    "get_local_kernel",
    "kernelize",
    "local_kernel_overrides",
    "parse_variant",
    "register_kernel_mapping",
    "replace_kernel_forward_from_hub",
    "resolve_variants",
    "system_variant_names",
    "use_kernel_forward_from_hub",
    "use_kernel_mapping",
]


def get_kernel(
    repo_id: str,
    revision: str | None = None,
    version: int | None = None,
    backend: str | None = None,
) -> ModuleType:
    """Load a kernel by Hub repo id. For now only repos mapped by LOCAL_KERNELS are served
    (revision and version are not consulted for those)."""
    local_path = local_kernel_overrides().get(repo_id)
    if local_path is None:
        raise NotImplementedError(
            "Hub download lands with the loader issue; set LOCAL_KERNELS=..."
            f" (e.g. LOCAL_KERNELS={repo_id}=/path/to/kernel)"
        )
    return get_local_kernel(local_path, backend=backend)
