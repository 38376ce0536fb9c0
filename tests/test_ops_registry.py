"""One test that walks every registered op and runs torch.library.opcheck on it.

Sample inputs come from tests/opcheck_samples/<kernel>.py; an op in _schemas.SCHEMAS without
samples fails the walk, so a new op cannot skip opcheck.
"""

import importlib
import pkgutil

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import opcheck_samples
from support import HAS_GPU


def _sample_builders():
    return [
        importlib.import_module(f"opcheck_samples.{m.name}").samples
        for m in pkgutil.iter_modules(opcheck_samples.__path__)
    ]


def _variants_and_devices(variant_modules):
    pairs = [(name, "cpu") for name in ("cpu", "triton") if name in variant_modules]
    if HAS_GPU:
        pairs += [(name, "cuda") for name in ("cuda", "triton") if name in variant_modules]
    return pairs


def test_opcheck_every_registered_op(variant_modules):
    pairs = _variants_and_devices(variant_modules)
    assert pairs, "no variant to check"
    for name, device in pairs:
        kernel = variant_modules[name]
        schemas = kernel._schemas.SCHEMAS
        samples = {}
        for build in _sample_builders():
            samples.update(build(kernel, device))
        assert set(samples) == set(schemas), (
            f"ops without opcheck samples: {sorted(set(schemas) - set(samples))}"
        )
        for op_name, arg_sets in samples.items():
            op = getattr(kernel.ops, op_name)
            for args in arg_sets:
                try:
                    torch.library.opcheck(op, args)
                except Exception as error:
                    pytest.fail(f"opcheck {name}/{device} {op_name}: {error}")


class _RecordOps(TorchDispatchMode):
    """The names of the ATen and custom ops run while active (not the ops inside them)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


def _ops_with_unused_outputs(ops, device):
    """(op name, call, inputs) for every autograd op with outputs that a caller may leave
    unused: mean, rstd and lse always, z and residual_out here too. bf16 on the GPU, where
    flash_attn takes no fp32."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)

    x, scale, shift, weight = rand(2, 5, 48), rand(2, 48), rand(2, 5, 48), rand(48)
    q, k, v = rand(1, 17, 2, 64), rand(1, 17, 2, 64), rand(1, 17, 2, 64)
    flat_q, flat_k, flat_v = rand(17, 2, 64), rand(17, 2, 64), rand(17, 2, 64)
    cu = torch.tensor([0, 7, 17], device=device, dtype=torch.int32)
    return [
        ("rms_norm", lambda: ops.rms_norm(x, weight, 1e-6), (x, weight)),
        ("rms_norm_add", lambda: ops.rms_norm_add(x, shift, weight, 1e-6), (x, shift, weight)),
        ("adaln", lambda: ops.adaln(x, scale, shift, weight, 1e-6, "layer"),
         (x, scale, shift, weight)),
        ("adaln_gated", lambda: ops.adaln_gated(x, shift, scale, scale, shift, None, 1e-6, "rms"),
         (x, scale, shift)),
        ("flash_attn", lambda: ops.flash_attn(q, k, v, 0.125, True, -1, -1), (q, k, v)),
        ("flash_attn_varlen",
         lambda: ops.flash_attn_varlen(flat_q, flat_k, flat_v, cu, cu, 10, 10, 0.125, False, -1,
                                       -1),
         (flat_q, flat_k, flat_v)),
    ]


ZERO_FILLS = {"aten::zeros", "aten::zeros_like", "aten::zero_", "aten::fill_", "aten::new_zeros",
              "aten::full", "aten::full_like"}


def test_unused_outputs_get_no_zero_gradient(variant_modules):
    """Autograd fills a zero gradient for each output that got none (on the GPU, a fill kernel
    per output and backward) unless the op's autograd turns materialize_grads off; the backward
    ops take a missing dz / dresidual as absent. Only the first output gets a gradient here."""
    pairs = _variants_and_devices(variant_modules)
    assert pairs, "no variant to check"
    for name, device in pairs:
        kernel = variant_modules[name]
        for op_name, call, inputs in _ops_with_unused_outputs(kernel.ops, device):
            y = call()[0]
            dy = torch.randn_like(y)
            with _RecordOps() as recorded:
                grads = torch.autograd.grad(y, inputs, dy)
            where = f"{name}/{device} {op_name}"
            fills = [n for n in recorded.names if n in ZERO_FILLS]
            assert not fills, f"{where}: the backward filled zeros: {fills}"
            backward_ops = [n for n in recorded.names if n.endswith("_backward")]
            assert len(backward_ops) == 1, f"{where}: ran {recorded.names}"
            assert all(g.shape == t.shape and torch.isfinite(g).all()
                       for g, t in zip(grads, inputs)), where
