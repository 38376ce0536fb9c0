"""Host modules shaped like the transformers/diffusers classes our layers replace."""

import torch
from torch import nn


class LlamaStyleRMSNorm(nn.Module):
    """The forward of transformers' LlamaRMSNorm: fp32 math, weight applied after the cast."""

    def __init__(self, hidden, eps=1e-6, dtype=torch.float32):
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(hidden, dtype=dtype))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)
