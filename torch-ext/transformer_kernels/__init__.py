"""transformer_kernels: fused kernels for transformer LLMs and diffusion transformers.

Every op is a torch.library custom op under this build's unique namespace (`ops`), with a
fake implementation and autograd, so it runs in eager mode and under torch.compile.
"""

from . import layers
from ._ops import BACKEND, add_op_namespace_prefix, ops
from .flash_attn import SUPPORTED_HEAD_DIMS, attention_reference, flash_attn, flash_attn_varlen
from .flash_attn_integrations import FlashAttnProcessor, flash_attention_forward
from .rmsnorm import rms_norm, rms_norm_add, rms_norm_add_reference, rms_norm_reference

__all__ = [
    "BACKEND",
    "FlashAttnProcessor",
    "SUPPORTED_HEAD_DIMS",
    "add_op_namespace_prefix",
    "attention_reference",
    "flash_attention_forward",
    "flash_attn",
    "flash_attn_varlen",
    "layers",
    "ops",
    "rms_norm",
    "rms_norm_add",
    "rms_norm_add_reference",
    "rms_norm_reference",
]
