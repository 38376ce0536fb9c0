"""transformer_kernels: fused kernels for transformer LLMs and diffusion transformers.

Every op is a torch.library custom op under this build's unique namespace (`ops`), with a
fake implementation and autograd, so it runs in eager mode and under torch.compile.
"""

from . import layers
from ._ops import BACKEND, add_op_namespace_prefix, ops
from .adaln import adaln, adaln_gated, adaln_gated_reference, adaln_reference
from .geglu import geglu, geglu_reference, gelu, gelu_reference, silu_and_mul
from .flash_attn import SUPPORTED_HEAD_DIMS, attention_reference, flash_attn, flash_attn_varlen
from .flash_attn_integrations import FlashAttnProcessor, flash_attention_forward
from .rmsnorm import rms_norm, rms_norm_add, rms_norm_add_reference, rms_norm_reference
from .rope import apply_rope3d, apply_rotary, apply_rotary_pos_emb, rope3d_reference, rope_reference

__all__ = [
    "adaln",
    "adaln_gated",
    "adaln_gated_reference",
    "adaln_reference",
    "add_op_namespace_prefix",
    "apply_rope3d",
    "apply_rotary",
    "apply_rotary_pos_emb",
    "attention_reference",
    "BACKEND",
    "flash_attention_forward",
    "flash_attn",
    "flash_attn_varlen",
    "FlashAttnProcessor",
    "geglu",
    "geglu_reference",
    "gelu",
    "gelu_reference",
    "layers",
    "ops",
    "rms_norm",
    "rms_norm_add",
    "rms_norm_add_reference",
    "rms_norm_reference",
    "rope3d_reference",
    "rope_reference",
    "silu_and_mul",
    "SUPPORTED_HEAD_DIMS",
]
