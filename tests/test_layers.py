"""The kernelize layers: their forward, bound to a host module the way kernelize binds it,
matches the host's own forward (hosts shaped like transformers' LlamaRMSNorm and diffusers'
RMSNorm; the real classes when installed)."""

import types

import pytest
import torch
from torch import nn

from hosts import LlamaStyleRMSNorm
from tolerance import assert_matches_reference


class DiffusersStyleRMSNorm(nn.Module):
    """diffusers' RMSNorm without affine weight: `eps`, weight None."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = None

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return (hidden_states * torch.rsqrt(variance + self.eps)).to(input_dtype)


def _kernelized(host: nn.Module, layer_cls) -> nn.Module:
    host.forward = types.MethodType(layer_cls.forward, host)
    return host


@pytest.fixture
def layers(variant_modules):
    return variant_modules["cpu"].layers


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rmsnorm_layer_matches_llama_style_host(layers, dtype):
    host = LlamaStyleRMSNorm(96, dtype=dtype)
    x = torch.randn(2, 5, 96, dtype=dtype)
    expected = host(x)
    got = _kernelized(host, layers.RMSNorm)(x)
    assert got.dtype == expected.dtype
    exact = LlamaStyleRMSNorm.forward(host.double(), x.double())
    assert_matches_reference(got, exact, expected, "llama-style")


def test_rmsnorm_layer_keeps_promotion_when_weight_is_fp32(layers):
    host = LlamaStyleRMSNorm(64, dtype=torch.float32)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    got = _kernelized(host, layers.RMSNorm)(x)
    assert got.dtype == host.weight.dtype == torch.float32


def test_rmsnorm_layer_without_weight_matches_diffusers_style_host(layers):
    host = DiffusersStyleRMSNorm()
    x = torch.randn(4, 33, dtype=torch.float32)
    torch.testing.assert_close(_kernelized(DiffusersStyleRMSNorm(), layers.RMSNorm)(x), host(x))


def test_layer_follows_kernelize_rules(layers):
    """No __init__ of its own, and the same forward signature as the host classes."""
    assert "__init__" not in vars(layers.RMSNorm)
    import inspect

    params = list(inspect.signature(layers.RMSNorm.forward).parameters)
    assert params == list(inspect.signature(LlamaStyleRMSNorm.forward).parameters)


def test_rmsnorm_layer_on_real_transformers_class(layers):
    modeling = pytest.importorskip("transformers.models.llama.modeling_llama")
    host = modeling.LlamaRMSNorm(48, eps=1e-5)
    x = torch.randn(2, 48)
    expected = host(x)
    torch.testing.assert_close(_kernelized(host, layers.RMSNorm)(x), expected, rtol=1e-5, atol=1e-5)
