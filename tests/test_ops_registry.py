"""One test that walks every registered op and runs torch.library.opcheck on it.

Sample inputs are declared per op; an op in _schemas.SCHEMAS without samples fails the walk,
so a new op cannot skip opcheck.
"""

import pytest
import torch

from support import HAS_GPU


def _rms_norm_samples(kernel, device):
    def t(*shape, dtype=torch.float32):
        return torch.randn(*shape, dtype=dtype, device=device)

    rows, hidden = 3, 20
    x, w, r, dy = t(rows, hidden), t(hidden), t(rows, hidden), t(rows, hidden)
    rstd = torch.empty(rows, device=device)
    kernel.ops.rms_norm_fwd_out(torch.empty_like(x), rstd, x, w, 1e-6)
    grad = lambda a: a.clone().requires_grad_(True)  # noqa: E731
    return {
        "rms_norm_fwd_out": [
            (torch.empty_like(x), torch.empty(rows, device=device), x, w, 1e-6),
            (torch.empty_like(x), torch.empty(rows, device=device), x, None, 1e-5),
        ],
        "rms_norm_add_fwd_out": [
            (torch.empty_like(x), torch.empty_like(x), torch.empty(rows, device=device), x, r, w, 1e-6),
        ],
        "rms_norm_bwd_out": [
            (torch.empty_like(x), torch.empty_like(w), dy, x, w, rstd, None),
            (torch.empty_like(x), None, dy, x, None, rstd, r),
        ],
        "rms_norm": [(grad(x), grad(w), 1e-6), (grad(x), None, 1e-6)],
        "rms_norm_add": [(grad(x), grad(r), grad(w), 1e-6)],
        "rms_norm_backward": [(dy, x, w, rstd, None, True), (dy, x, None, rstd, r, False)],
    }


SAMPLE_BUILDERS = [_rms_norm_samples]


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
        for build in SAMPLE_BUILDERS:
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
