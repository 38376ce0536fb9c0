"""Pure layers for kernelize: forward only, reading the host module's attributes.

Each class replaces the `forward` of a host class in transformers or diffusers; it never
defines `__init__` and keeps the host's forward signature.
"""

import torch
from torch import nn

from .adaln import adaln
from .rmsnorm import rms_norm


class RMSNorm(nn.Module):
    """Replaces transformers' LlamaRMSNorm, MistralRMSNorm, Qwen2RMSNorm (and the other
    `*RMSNorm` classes shaped like them: `weight`, `variance_epsilon`) and diffusers'
    `diffusers.models.normalization.RMSNorm` (`weight` may be None, `eps`).

    Output dtype follows the host: transformers multiplies an fp32 weight with the
    normalized activations, so the result is promote(x.dtype, weight.dtype); with matching
    dtypes that is x's dtype.
    """

    weight: torch.Tensor | None
    # The op is a custom op with a fake implementation and autograd: kernelize may use this
    # layer in TORCH_COMPILE and TRAINING modes.
    can_torch_compile = True
    has_backward = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = getattr(self, "weight", None)
        eps = getattr(self, "variance_epsilon", None)
        if eps is None:
            eps = getattr(self, "eps", 1e-6)
        if weight is None or weight.dtype == hidden_states.dtype:
            return rms_norm(hidden_states, weight, eps)
        out_dtype = torch.promote_types(weight.dtype, hidden_states.dtype)
        return rms_norm(hidden_states, weight.to(hidden_states.dtype), eps).to(out_dtype)


# ---------------------------------------------------------------- AdaLN


def _norm_kind(norm: nn.Module, hidden: int):
    """"layer" or "rms" for the norms diffusers' AdaLN classes hold, None for anything else.

    LayerNorm: torch's nn.LayerNorm (diffusers' `LayerNorm` alias and `FP32LayerNorm` are it or
    subclass it) or a class named *LayerNorm with `eps`, `weight`, `bias`; RMSNorm: a class named
    *RMSNorm with `eps` and `weight`. The norm must be over the last dim only.
    """
    name = type(norm).__name__
    if isinstance(norm, nn.LayerNorm):
        return "layer" if tuple(norm.normalized_shape) == (hidden,) else None
    if not hasattr(norm, "eps"):
        return None
    if name.endswith("RMSNorm"):
        return "rms"
    if name.endswith("LayerNorm"):
        return "layer"
    return None


def _norm_output_dtype(kind: str, norm: nn.Module, x: torch.Tensor) -> torch.dtype:
    """The dtype the host's norm(x) returns. LayerNorm: x's. diffusers' RMSNorm: x's without a
    weight; with one, x is cast to a 16-bit weight's dtype, or promoted by an fp32 weight."""
    weight = getattr(norm, "weight", None)
    if kind == "layer" or weight is None:
        return x.dtype
    if weight.dtype in (torch.float16, torch.bfloat16):
        return weight.dtype
    return torch.promote_types(x.dtype, weight.dtype)


def _modulated_norm(norm: nn.Module, x: torch.Tensor, scale: torch.Tensor,
                    shift: torch.Tensor) -> torch.Tensor:
    """The hosts' `norm(x) * (1 + scale[:, None]) + shift[:, None]` (scale, shift: [B, D]).

    An affine norm's weight goes to the kernel; its bias b is folded into the shift:
    (n * w + b) * (1 + scale) + shift = n * w * (1 + scale) + (shift + b * (1 + scale)).
    Everything runs in the host's output dtype (x is cast up when the modulation is wider). A
    norm of another kind, or an x that is not [B, S, D], takes the host's own math.
    """
    kind = _norm_kind(norm, x.shape[-1])
    if kind is None or x.dim() != 3:
        return norm(x) * (1 + scale[:, None]) + shift[:, None]
    dtype = torch.promote_types(_norm_output_dtype(kind, norm, x), scale.dtype)
    weight = getattr(norm, "weight", None)
    bias = getattr(norm, "bias", None)
    if bias is not None:
        shift = shift + bias.to(dtype) * (1 + scale.to(dtype))
    return adaln(
        x.to(dtype),
        scale.to(dtype),
        shift.to(dtype),
        None if weight is None else weight.to(dtype),
        norm.eps,
        kind,
    )


class AdaLayerNormZero(nn.Module):
    """Replaces diffusers' `diffusers.models.normalization.AdaLayerNormZero` (DiT, PixArt,
    SD3/Flux joint blocks): reads `emb` (None, or the timestep/label embedding), `silu`,
    `linear` and `norm` (LayerNorm without affine, or FP32LayerNorm), and returns
    (x, gate_msa, shift_mlp, scale_mlp, gate_mlp) like the host."""

    can_torch_compile = True
    has_backward = True

    def forward(self, x, timestep=None, class_labels=None, hidden_dtype=None, emb=None):
        if getattr(self, "emb", None) is not None:
            emb = self.emb(timestep, class_labels, hidden_dtype=hidden_dtype)
        emb = self.linear(self.silu(emb))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = emb.chunk(6, dim=1)
        x = _modulated_norm(self.norm, x, scale_msa, shift_msa)
        return x, gate_msa, shift_mlp, scale_mlp, gate_mlp


class AdaLayerNormZeroSingle(nn.Module):
    """Replaces diffusers' `diffusers.models.normalization.AdaLayerNormZeroSingle` (Flux single
    blocks): reads `silu`, `linear` and `norm`, and returns (x, gate_msa) like the host."""

    can_torch_compile = True
    has_backward = True

    def forward(self, x, emb=None):
        emb = self.linear(self.silu(emb))
        shift_msa, scale_msa, gate_msa = emb.chunk(3, dim=1)
        x = _modulated_norm(self.norm, x, scale_msa, shift_msa)
        return x, gate_msa


class AdaLayerNormContinuous(nn.Module):
    """Replaces diffusers' `diffusers.models.normalization.AdaLayerNormContinuous` (the final
    norm of SD3, Flux and others): reads `silu`, `linear` and `norm` (LayerNorm, affine or not,
    or diffusers' RMSNorm, weight optional). Note the host's chunk order: scale, then shift."""

    can_torch_compile = True
    has_backward = True

    def forward(self, x, conditioning_embedding):
        emb = self.linear(self.silu(conditioning_embedding).to(x.dtype))
        scale, shift = torch.chunk(emb, 2, dim=1)
        return _modulated_norm(self.norm, x, scale, shift)


__all__ = ["AdaLayerNormContinuous", "AdaLayerNormZero", "AdaLayerNormZeroSingle", "RMSNorm"]
