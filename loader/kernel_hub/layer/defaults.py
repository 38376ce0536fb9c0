"""The mapping of transformer-kernels layers to the layer names transformers uses.

Defined, not registered: register_kernel_mapping(TRANSFORMER_KERNELS_MAPPING) opts in.
"""

from __future__ import annotations

from .repos import LayerRepository

TRANSFORMER_KERNELS_REPO = "transformer-kernels/transformer-kernels"

_RMS_NORM = LayerRepository(TRANSFORMER_KERNELS_REPO, layer_name="RMSNorm", version=1)

TRANSFORMER_KERNELS_MAPPING = {
    "RMSNorm": {"cuda": _RMS_NORM, "cpu": _RMS_NORM},
}
