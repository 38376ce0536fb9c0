"""Pure layers for kernelize: forward only, reading the host module's attributes.

Each class replaces the `forward` of a host class in transformers or diffusers; it never
defines `__init__` and keeps the host's forward signature.
"""

import torch
from torch import nn

from .rmsnorm import rms_norm
from .rope import apply_rotary_pos_emb


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


__all__ = ["ApplyRotaryPosEmb", "RMSNorm"]
