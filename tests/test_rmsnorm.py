"""RMSNorm on every backend this machine can run, against the fp32 reference.

Backends: the C++ CPU kernels (CPU variant and the CPU path of the CUDA variant), Triton
(interpreter on CPU tensors without a GPU; real kernels on a GPU), CUDA (GPU only).
"""

import pytest
import torch

from support import HAS_GPU, INTERPRETER
from tolerance import assert_matches_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (rows, hidden): vector-width tails (7, 4095, 5123), a single element, zero rows.
NATIVE_SHAPES = [(3, 1), (5, 7), (4, 4095), (2, 5123), (0, 64), (1, 4096), (64, 8192)]
INTERPRETER_SHAPES = [(3, 1), (2, 7), (3, 33), (0, 16), (2, 128)]

BACKENDS = [
    pytest.param(("cpu", "cpu"), id="cpu"),
    pytest.param(("cuda", "cpu"), id="cuda-variant-on-cpu-tensors"),
    pytest.param(
        ("triton", "cpu"),
        id="triton-interpreter",
        marks=pytest.mark.skipif(not INTERPRETER, reason="Triton interpreter off (GPU present)"),
    ),
    pytest.param(
        ("cuda", "cuda"), id="cuda", marks=pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
    ),
    pytest.param(
        ("triton", "cuda"),
        id="triton-cuda",
        marks=pytest.mark.skipif(not HAS_GPU, reason="needs a GPU"),
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request, variant_modules):
    variant, device = request.param
    if variant not in variant_modules:
        pytest.skip(f"no {variant} variant was built in this environment")
    shapes = INTERPRETER_SHAPES if (variant, device) == ("triton", "cpu") else NATIVE_SHAPES
    return variant_modules[variant], device, shapes


def _interpreted(kernel, device) -> bool:
    return kernel.BACKEND == "triton" and device == "cpu"


def _inputs(rows, hidden, dtype, device, with_weight=True):
    x = torch.randn(rows, hidden, dtype=dtype, device=device)
    weight = (1 + 0.5 * torch.randn(hidden, dtype=dtype, device=device)) if with_weight else None
    return x, weight


def _rms_norm_in_dtype(x, weight, eps):
    """The same computation done in the input dtype: the tolerance rule's baseline."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "no-weight"])
def test_forward_and_backward_match_reference(backend, dtype, with_weight):
    kernel, device, shapes = backend
    eps = 1e-6
    for rows, hidden in shapes:
        x, weight = _inputs(rows, hidden, dtype, device, with_weight)
        dy = torch.randn(rows, hidden, dtype=dtype, device=device)
        params = [x] + ([weight] if with_weight else [])
        for p in params:
            p.requires_grad_(True)
        y = kernel.rms_norm(x, weight, eps)
        grads = torch.autograd.grad(y, params, dy) if rows else [torch.zeros_like(p) for p in params]

        ref_params = [p.detach().double().requires_grad_(True) for p in params]
        ref_w = ref_params[1] if with_weight else None
        ref_y = kernel.rms_norm_reference(ref_params[0], ref_w, eps)
        low_params = [p.detach().clone().requires_grad_(True) for p in params]
        low_y = _rms_norm_in_dtype(low_params[0], low_params[1] if with_weight else None, eps)
        what = f"{device} {dtype} [{rows}, {hidden}]"
        assert_matches_reference(y.detach(), ref_y.detach(), low_y.detach(), f"y {what}")
        if not rows:
            continue
        ref_grads = torch.autograd.grad(ref_y, ref_params, dy.double())
        low_grads = torch.autograd.grad(low_y, low_params, dy)
        for name, g, rg, lg in zip(["dx", "dweight"], grads, ref_grads, low_grads):
            assert_matches_reference(g, rg, lg, f"{name} {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_residual_add(backend, dtype):
    kernel, device, shapes = backend
    rows, hidden = shapes[2]
    x, weight = _inputs(rows, hidden, dtype, device)
    residual = torch.randn(rows, hidden, dtype=dtype, device=device)
    leaves = [x.requires_grad_(True), residual.requires_grad_(True), weight.requires_grad_(True)]
    y, z = kernel.rms_norm_add(x, residual, weight, 1e-5)
    dy, dz = torch.randn_like(y), torch.randn_like(z)
    grads = torch.autograd.grad([y, z], leaves, [dy, dz])

    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    ref_z = ref_leaves[0] + ref_leaves[1]
    ref_y = kernel.rms_norm_reference(ref_z, ref_leaves[2], 1e-5)
    ref_grads = torch.autograd.grad([ref_y, ref_z], ref_leaves, [dy.double(), dz.double()])
    low_leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    low_z = low_leaves[0] + low_leaves[1]
    low_y = _rms_norm_in_dtype(low_z, low_leaves[2], 1e-5)
    low_grads = torch.autograd.grad([low_y, low_z], low_leaves, [dy, dz])

    expected_z = (x.detach().float() + residual.detach().float()).to(dtype)
    # Triton 3.8's interpreter truncates fp32 -> bf16 instead of rounding to nearest even:
    # one ulp there; every compiled backend rounds, bit for bit.
    ulp = 2.0**-7 if dtype == torch.bfloat16 and _interpreted(kernel, device) else 0.0
    torch.testing.assert_close(z.detach(), expected_z, rtol=ulp, atol=0, msg="residual_out")
    assert_matches_reference(y.detach(), ref_y.detach(), low_y.detach(), "y")
    for name, g, rg, lg in zip(["dx", "dresidual", "dweight"], grads, ref_grads, low_grads):
        assert_matches_reference(g, rg, lg, name)


def test_every_output_element_is_written(backend):
    """The out ops write every element: outputs start as NaN and must come back finite."""
    kernel, device, shapes = backend
    rows, hidden = shapes[3] if shapes[3][0] else shapes[2]
    x, weight = _inputs(rows, hidden, torch.bfloat16, device)
    y = torch.full_like(x, float("nan"))
    rstd = torch.full((rows,), float("nan"), device=device)
    kernel.ops.rms_norm_fwd_out(y, rstd, x, weight, 1e-6)
    assert torch.isfinite(y).all() and torch.isfinite(rstd).all()
    dx = torch.full_like(x, float("nan"))
    dweight = torch.full_like(weight, float("nan"))
    kernel.ops.rms_norm_bwd_out(dx, dweight, torch.randn_like(x), x, weight, rstd, None)
    assert torch.isfinite(dx).all() and torch.isfinite(dweight).all()


def test_leading_dims_and_non_contiguous_input(backend):
    kernel, device, shapes = backend
    hidden = shapes[2][1]
    base = torch.randn(2, 3, 2 * hidden, dtype=torch.float32, device=device)
    x = base[..., ::2]  # non-contiguous last dim
    weight = torch.randn(2 * hidden, device=device)[::2]
    y = kernel.rms_norm(x, weight, 1e-6)
    assert y.shape == x.shape
    ref = kernel.rms_norm_reference(x.double(), weight.double(), 1e-6)
    assert_matches_reference(y, ref, ref.float(), "non-contiguous")


def test_bad_inputs_raise_errors_naming_the_argument(backend):
    kernel, device, _ = backend
    x = torch.randn(4, 16, device=device)
    cases = [
        (lambda: kernel.rms_norm(x, torch.randn(15, device=device)), ValueError, "weight must have shape"),
        (lambda: kernel.rms_norm(x, torch.randn(16, device=device, dtype=torch.float16)), TypeError, "weight dtype"),
        (lambda: kernel.rms_norm(x.to(torch.int32)), TypeError, "x must be float32"),
        (lambda: kernel.rms_norm(torch.randn(4, 0, device=device)), ValueError, "hidden"),
        (lambda: kernel.rms_norm(x, None, -1.0), ValueError, "eps"),
        (lambda: kernel.rms_norm_add(x, torch.randn(4, 8, device=device)), ValueError, "residual must have"),
        (lambda: kernel.ops.rms_norm_fwd_out(torch.empty(4, 8, device=device), torch.empty(4, device=device), x, None, 1e-6), ValueError, "y must have shape"),
    ]
    if HAS_GPU:
        other = "cpu" if device == "cuda" else "cuda"
        cases.append((lambda: kernel.rms_norm(x, torch.randn(16, device=other)), ValueError, "weight is on"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
