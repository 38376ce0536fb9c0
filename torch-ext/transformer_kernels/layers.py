"""Pure layers for kernelize: forward only, reading the host module's attributes.

Each class replaces the `forward` of a host class in transformers or diffusers; it never
defines `__init__` and keeps the host's forward signature.
"""

import torch
from torch import nn

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


__all__ = ["RMSNorm"]
