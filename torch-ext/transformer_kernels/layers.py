"""Pure layers for kernelize: forward only, reading the host module's attributes.

Each class replaces the `forward` of a host class in transformers or diffusers; it never
defines `__init__` and keeps the host's forward signature.
"""

import torch
from torch import nn

from .geglu import geglu, gelu, silu_and_mul
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


__all__ = ["GEGLU", "GELU", "RMSNorm", "SiluAndMul"]
