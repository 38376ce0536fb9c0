"""Pure layers for kernelize: forward only, reading the host module's attributes.

Each class replaces the `forward` of a host class in transformers or diffusers; it never
defines `__init__` and keeps the host's forward signature.
"""

import torch
from torch import nn

from .adaln import adaln
from .geglu import geglu, gelu, silu_and_mul
from .rmsnorm import rms_norm
from .rope import apply_rope3d, apply_rotary_pos_emb


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


class GEGLU(nn.Module):
    """Replaces diffusers' `diffusers.models.activations.GEGLU` (`proj`: nn.Linear(dim_in,
    2 * dim_out)). The host computes `hidden_states, gate = proj(x).chunk(2, -1)` and returns
    `hidden_states * F.gelu(gate)`: the exact erf GELU applied to the SECOND half, hence
    approximate="none" and swap_halves=True here. The host's other branches are left out: the
    `mps` one (fp32 GELU on torch < 2.0) and the Ascend NPU one (torch_npu.npu_geglu); extra
    positional arguments and `scale` are ignored, as the host ignores them (with a deprecation
    warning).
    """

    proj: nn.Module
    can_torch_compile = True
    has_backward = True

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return geglu(self.proj(hidden_states), approximate="none", swap_halves=True)


class GELU(nn.Module):
    """Replaces diffusers' `diffusers.models.activations.GELU` (`proj`: nn.Linear(dim_in,
    dim_out), `approximate`: "none" or "tanh"): `F.gelu(proj(x), approximate=approximate)`.
    With approximate="tanh" this is the "gelu-approximate" feed-forward activation of
    LTX-Video's transformer blocks. The host's `mps` branch (fp32 GELU on torch < 2.0) is left
    out.
    """

    proj: nn.Module
    approximate: str
    can_torch_compile = True
    has_backward = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return gelu(self.proj(hidden_states), approximate=getattr(self, "approximate", "none"))


class SiluAndMul(nn.Module):
    """silu(x[..., :d]) * x[..., d:] with d = x.shape[-1] // 2 (SwiGLU's gate): the forward of
    vLLM's `vllm.model_executor.layers.activation.SiluAndMul` (forward_native) and of the
    `SiluAndMul` layer of kernels-community/activation (the pure-layer example of Hugging
    Face's kernels documentation, `forward(self, x)`). Stateless.
    """

    can_torch_compile = True
    has_backward = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return silu_and_mul(x)


class ApplyRotaryPosEmb(nn.Module):
    """Replaces transformers' `apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)` in the
    models that expose it to Hub kernels (Llama, Mistral, Qwen2/3, Gemma and the other copies of
    modeling_llama's function): recent transformers decorate it with
    `@use_kernel_func_from_hub("rotary_pos_emb")`, which turns the function into an nn.Module
    whose forward takes the function's parameters and carries the layer name
    "rotary_pos_emb", and `@use_kernelized_func(apply_rotary_pos_emb)` on the attention class
    registers that module with the model, so kernelize can swap its forward for this one.

    The signature is that of the decorated function, (q, k, cos, sin, unsqueeze_dim=1): the
    versions with the decorator no longer take position_ids (transformers 4.38 to 4.47 had a
    `position_ids=None` parameter, "Deprecated and unused"; the package-level
    `apply_rotary_pos_emb` still accepts it). Layer validation compares parameter names, so a
    position_ids parameter here would make this layer unusable on every host that has the hook.

    q, k: [B, H, S, D] for unsqueeze_dim=1 (transformers' layout), [B, S, H, D] for 2; cos, sin:
    [B, S, D] built as cat(freqs, freqs) (only the first half is read). Returns (q_embed, k_embed)
    in q's dtype, computed in fp32.
    """

    can_torch_compile = True
    has_backward = True

    def forward(self, q, k, cos, sin, unsqueeze_dim=1):
        return apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)


def _host_split(host: nn.Module) -> tuple[int, int, int]:
    """The (t, h, w) band widths as the host names them: HunyuanVideoRotaryPosEmbed's
    `rope_dim`, WanRotaryPosEmbed's `t_dim` / `h_dim` / `w_dim`, or (older Wan classes without
    those) Wan's rule on `attention_head_dim`."""
    rope_dim = getattr(host, "rope_dim", None)
    if rope_dim is not None:
        return tuple(int(d) for d in rope_dim)
    if all(hasattr(host, name) for name in ("t_dim", "h_dim", "w_dim")):
        return int(host.t_dim), int(host.h_dim), int(host.w_dim)
    head_dim = getattr(host, "attention_head_dim", None)
    if head_dim is None:
        raise AttributeError(f"RoPE3D: {type(host).__name__} has none of rope_dim, "
                             "t_dim / h_dim / w_dim, attention_head_dim")
    h = w = 2 * (int(head_dim) // 6)
    return int(head_dim) - h - w, h, w


class RoPE3D(nn.Module):
    """The 3D (t, h, w) rotary embedding of video DiTs, applied to a query or key: forward(x,
    grid, layout="bshd") with x [B, T*H*W, heads, D] ("bshd") or [B, heads, T*H*W, D] ("bhsd")
    and grid (T, H, W) returns x rotated (interleaved pairs, positions = grid indices), with the
    band split and base read from the rotary module it is bound to: diffusers'
    HunyuanVideoRotaryPosEmbed (`rope_dim`, e.g. (16, 56, 56); `theta`, 256) or
    WanRotaryPosEmbed (`t_dim`, `h_dim`, `w_dim`, or Wan's rule on `attention_head_dim` in
    versions without them; `theta` when the class stores it, else Wan's 10000).

    No host class's forward has this signature, so kernelize cannot swap it in: those classes'
    forward(hidden_states) returns cos / sin tables of the whole video, and the rotation happens
    in the attention processor, which calls diffusers' `apply_rotary_emb` on the query and key:
    WanAttnProcessor on [B, S, heads, D] (after `unflatten(2, (heads, -1))`),
    HunyuanVideoAttnProcessor2_0 on [B, heads, S, D] (after `.transpose(1, 2)`, video tokens
    only: the text tokens of single-stream blocks follow them and are not rotated). To use the
    kernel, the processor calls `apply_rope3d(query, (T, H, W), split, theta, layout=...)` on the
    same tensors (a view of the video tokens is fine) in place of `apply_rotary_emb`, and the
    table is not needed; or it calls this forward on the model's rotary module,
    `RoPE3D.forward(model.rope, query, grid)`.
    LTX-Video's rotary embedding is not this band form (it interleaves the three axes'
    frequencies over the whole inner dim, positions scaled by the base grid); its tables fit the
    1D op, `apply_rotary(..., interleaved=True)` with x viewed as [B, S, 1, inner_dim].
    """

    can_torch_compile = True
    has_backward = True

    def forward(self, x, grid, layout="bshd"):
        theta = float(getattr(self, "theta", 10000.0))
        return apply_rope3d(x, grid, _host_split(self), theta, layout=layout, interleaved=True)


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


__all__ = [
    "AdaLayerNormContinuous",
    "AdaLayerNormZero",
    "AdaLayerNormZeroSingle",
    "ApplyRotaryPosEmb",
    "GEGLU",
    "GELU",
    "RMSNorm",
    "RoPE3D",
    "SiluAndMul",
]
