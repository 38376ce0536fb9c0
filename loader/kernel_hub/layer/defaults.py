"""The mapping of transformer-kernels layers to the layer names hosts use.

Every layer of the package's `layers` module is mapped under its own name, on CUDA and CPU
(tests/loader/test_kernelize.py checks the list against the built package). A host class opts
in by that name: transformers' `@use_kernel_forward_from_hub("RMSNorm")` classes and the
`SiluAndMul` name of Hugging Face's kernels as they are; others through
`replace_kernel_forward_from_hub(diffusers.models.activations.GEGLU, "GEGLU")` and the like
(each layer's docstring names the host classes it replaces).

Defined, not registered: register_kernel_mapping(TRANSFORMER_KERNELS_MAPPING) opts in.
"""

from __future__ import annotations

from .repos import LayerRepository

TRANSFORMER_KERNELS_REPO = "transformer-kernels/transformer-kernels"

LAYER_NAMES = (
    "AdaLayerNormContinuous",
    "AdaLayerNormZero",
    "AdaLayerNormZeroSingle",
    "ApplyRotaryPosEmb",
    "GEGLU",
    "GELU",
    "RMSNorm",
    "RoPE3D",
    "SiluAndMul",
)


def _mapped(layer_name: str) -> dict[str, LayerRepository]:
    repo = LayerRepository(TRANSFORMER_KERNELS_REPO, layer_name=layer_name, version=1)
    return {"cuda": repo, "cpu": repo}


TRANSFORMER_KERNELS_MAPPING = {name: _mapped(name) for name in LAYER_NAMES}
