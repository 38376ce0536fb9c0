"""GEGLU / SwiGLU and elementwise GELU on every backend this machine can run, against the fp32
(here fp64) references.

Backends: the C++ CPU kernels (CPU variant and the CPU path of the CUDA variant), Triton
(interpreter on CPU tensors without a GPU; real kernels on a GPU), CUDA (GPU only). Row widths
cover the 16-byte vector path (hidden a multiple of 8), the scalar path (odd hidden), a single
element and zero rows.
"""

import inspect
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from support import HAS_GPU, INTERPRETER, ROOT
from tolerance import assert_matches_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
ACTIVATIONS = ["gelu_tanh", "gelu", "silu"]
APPROXIMATIONS = {"tanh": "gelu_tanh", "none": "gelu"}
# (rows, hidden) of y; x is [rows, 2 * hidden].
NATIVE_SHAPES = [(3, 1), (5, 7), (4, 8), (2, 1001), (3, 4104), (0, 64), (16, 11008)]
INTERPRETER_SHAPES = [(3, 1), (2, 7), (3, 40), (0, 8), (2, 136)]

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


def _act_in_dtype(a, activation):
    if activation == "gelu_tanh":
        return F.gelu(a, approximate="tanh")
    return F.gelu(a) if activation == "gelu" else F.silu(a)


def _geglu_in_dtype(x, activation, swap_halves):
    """The same computation done in x's dtype: the tolerance rule's baseline."""
    a, b = x.chunk(2, dim=-1)
    if swap_halves:
        a, b = b, a
    return _act_in_dtype(a, activation) * b


def _check_grad_op(op, inputs, reference, in_dtype, what):
    """op(*inputs) forward and backward against reference (fp64) and in_dtype (baseline)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = op(*leaves)
    dy = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, dy) if out.numel() else [torch.zeros_like(leaves[0])]
    ref_leaves = [t.detach().double().requires_grad_(True) for t in inputs]
    ref = reference(*ref_leaves)
    low_leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    low = in_dtype(*low_leaves)
    assert_matches_reference(out.detach(), ref.detach(), low.detach(), f"y {what}")
    if not out.numel():
        return
    ref_grads = torch.autograd.grad(ref, ref_leaves, dy.double())
    low_grads = torch.autograd.grad(low, low_leaves, dy)
    for g, rg, lg in zip(grads, ref_grads, low_grads):
        assert_matches_reference(g, rg, lg, f"dx {what}")


@pytest.mark.parametrize("swap_halves", [False, True], ids=["a-first", "swapped"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_geglu_forward_and_backward_match_reference(backend, dtype, activation, swap_halves):
    kernel, device, shapes = backend
    for rows, hidden in shapes:
        x = torch.randn(rows, 2 * hidden, dtype=dtype, device=device)
        _check_grad_op(
            lambda t: kernel.ops.geglu(t, activation, swap_halves),
            [x],
            lambda t: kernel.geglu_reference(t, activation, swap_halves),
            lambda t: _geglu_in_dtype(t, activation, swap_halves),
            f"{device} {dtype} {activation} swap={swap_halves} [{rows}, {2 * hidden}]",
        )


# GELU-tanh is x * sigmoid(2u) = x / (1 + exp(-2u)): for x below about -10, exp(-2u) overflows to
# inf and the quotient is the intended 0. The Triton interpreter computes exp with numpy, which
# warns about that overflow; the values are checked as usual.
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("approximate", list(APPROXIMATIONS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gelu_forward_and_backward_match_reference(backend, dtype, approximate):
    kernel, device, shapes = backend
    # Flat sizes with and without a multiple of the vector width, leading dims, empty.
    for shape in [(rows, 2 * hidden + 1) for rows, hidden in shapes] + [(2, 3, 16), (0,)]:
        x = 3 * torch.randn(shape, dtype=dtype, device=device)
        _check_grad_op(
            lambda t: kernel.gelu(t, approximate),
            [x],
            lambda t: kernel.gelu_reference(t, approximate),
            lambda t: F.gelu(t, approximate=approximate),
            f"{device} {dtype} gelu {approximate} {list(shape)}",
        )


def test_public_functions_and_host_semantics(backend):
    """geglu / silu_and_mul / gelu pick the right op, and the halves are the ones each host uses:
    diffusers' GEGLU gates the second half, SwiGLU's silu_and_mul the first."""
    kernel, device, _ = backend
    x = torch.randn(4, 2, 2 * 24, device=device)
    first, second = x.chunk(2, dim=-1)
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kernel.geglu(x), F.gelu(first, approximate="tanh") * second, **close)
    torch.testing.assert_close(
        kernel.geglu(x, approximate="none", swap_halves=True), first * F.gelu(second), **close
    )
    torch.testing.assert_close(kernel.silu_and_mul(x), F.silu(first) * second, **close)
    torch.testing.assert_close(kernel.gelu(x), F.gelu(x, approximate="tanh"), **close)
    torch.testing.assert_close(kernel.gelu(x, "none"), F.gelu(x), **close)


def test_every_output_element_is_written(backend):
    """The out ops write every element: outputs start as NaN and must come back finite. One
    width on the vector path, one on the scalar path."""
    kernel, device, shapes = backend
    for rows, hidden in (shapes[4], shapes[1]):
        x = torch.randn(rows, 2 * hidden, dtype=torch.bfloat16, device=device)
        dy = torch.randn(rows, hidden, dtype=torch.bfloat16, device=device)
        for activation in ACTIVATIONS:
            y = torch.full_like(dy, float("nan"))
            kernel.ops.geglu_fwd_out(y, x, activation, True)
            dx = torch.full_like(x, float("nan"))
            kernel.ops.geglu_bwd_out(dx, dy, x, activation, True)
            assert torch.isfinite(y).all() and torch.isfinite(dx).all(), activation
        for approximate in APPROXIMATIONS:
            y = torch.full_like(x, float("nan"))
            kernel.ops.gelu_fwd_out(y, x, approximate)
            dx = torch.full_like(x, float("nan"))
            kernel.ops.gelu_bwd_out(dx, torch.randn_like(x), x, approximate)
            assert torch.isfinite(y).all() and torch.isfinite(dx).all(), approximate


def test_leading_dims_and_non_contiguous_input(backend):
    kernel, device, shapes = backend
    hidden = shapes[2][1]
    base = torch.randn(2, 3, 4 * hidden, device=device)
    x = base[..., ::2]  # [2, 3, 2 * hidden], non-contiguous
    for activation, swap in [("gelu_tanh", False), ("gelu", True), ("silu", False)]:
        _check_grad_op(
            lambda t: kernel.ops.geglu(t[..., ::2], activation, swap),
            [base],
            lambda t: kernel.geglu_reference(t[..., ::2], activation, swap),
            lambda t: _geglu_in_dtype(t[..., ::2], activation, swap),
            f"non-contiguous {activation}",
        )
    assert kernel.ops.geglu(x, "gelu", False).shape == (2, 3, hidden)
    xt = torch.randn(2 * hidden + 1, 3, device=device).t()  # transposed
    _check_grad_op(
        lambda t: kernel.gelu(t.t(), "tanh"),
        [xt.t()],
        lambda t: kernel.gelu_reference(t.t(), "tanh"),
        lambda t: F.gelu(t.t(), approximate="tanh"),
        "non-contiguous gelu",
    )


def test_bad_inputs_raise_errors_naming_the_argument(backend):
    kernel, device, _ = backend
    x = torch.randn(4, 16, device=device)
    y = torch.empty(4, 8, device=device)
    cases = [
        (lambda: kernel.geglu(x, approximate="exact"), ValueError, "approximate must be one of"),
        (lambda: kernel.gelu(x, approximate="erf"), ValueError, "approximate must be one of"),
        (lambda: kernel.ops.geglu(x, "relu", False), ValueError, "activation must be one of"),
        (lambda: kernel.ops.gelu(x, "fast"), ValueError, "approximate must be one of"),
        (lambda: kernel.geglu(torch.randn(4, 15, device=device)), ValueError, "x's last dim"),
        (lambda: kernel.silu_and_mul(torch.randn(4, 0, device=device)), ValueError, "x's last dim"),
        (lambda: kernel.geglu_reference(torch.randn(3, 5)), ValueError, "x's last dim"),
        (lambda: kernel.geglu(x.to(torch.int32)), TypeError, "x must be float32"),
        (lambda: kernel.gelu(x.to(torch.int64)), TypeError, "x must be float32"),
        (lambda: kernel.ops.geglu_backward(torch.randn(4, 7, device=device), x, "gelu", False),
         ValueError, "dy must have shape"),
        (lambda: kernel.ops.geglu_backward(y.half(), x, "gelu", False), TypeError, "dy dtype"),
        (lambda: kernel.ops.gelu_backward(x[:, :3], x, "tanh"), ValueError, "dy must have"),
        (lambda: kernel.ops.geglu_fwd_out(torch.empty(4, 16, device=device), x, "silu", False),
         ValueError, "y must have shape"),
        (lambda: kernel.ops.geglu_fwd_out(y.half(), x, "silu", False), TypeError, "y must be"),
        (lambda: kernel.ops.geglu_fwd_out(y, torch.randn(4, 15, device=device), "silu", False),
         ValueError, "x"),
        (lambda: kernel.ops.geglu_fwd_out(y, x, "tanh", False), ValueError, "activation"),
        (lambda: kernel.ops.geglu_bwd_out(torch.empty_like(x), y[:, :7], x, "gelu", False),
         ValueError, "dy must have shape"),
        (lambda: kernel.ops.gelu_fwd_out(y, x, "tanh"), ValueError, "y must have shape"),
        (lambda: kernel.ops.gelu_fwd_out(torch.empty_like(x.t()), x.t(), "none"),
         ValueError, "x must be contiguous"),
        (lambda: kernel.ops.gelu_bwd_out(torch.empty_like(x), x, x, "gelu"), ValueError,
         "approximate"),
    ]
    if HAS_GPU:
        other = "cpu" if device == "cuda" else "cuda"
        cases.append((lambda: kernel.ops.gelu_backward(x.to(other), x, "tanh"), ValueError,
                      "dy is on"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


# ---------------------------------------------------------------- torch.compile


def _block(kernel, x, z):
    # Only our ops (and views): inductor has nothing of its own to generate, so the compile is
    # quick on CPU.
    y = kernel.gelu(kernel.geglu(x, approximate="none", swap_halves=True))
    return y, kernel.silu_and_mul(z)


def test_compiled_forward_and_backward_equal_eager(variant_modules):
    name = "cuda" if HAS_GPU and "cuda" in variant_modules else "cpu"
    kernel = variant_modules[name]
    device = "cuda" if name == "cuda" and HAS_GPU else "cpu"
    torch._dynamo.reset()
    leaves = [torch.randn(3, 5, 2 * 40, device=device), torch.randn(7, 2 * 24, device=device)]
    grads = [torch.randn(3, 5, 40, device=device), torch.randn(7, 24, device=device)]

    def run(fn):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        outs = fn(kernel, *inputs)
        torch.autograd.backward(outs, grads)
        return [o.detach() for o in outs], [t.grad for t in inputs]

    compiled_outs, compiled_grads = run(torch.compile(_block, fullgraph=True))
    eager_outs, eager_grads = run(_block)
    for got, want in zip(compiled_outs + compiled_grads, eager_outs + eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- layers


class DiffusersStyleGEGLU(nn.Module):
    """The forward of diffusers.models.activations.GEGLU (CUDA/CPU branch)."""

    def __init__(self, dim_in, dim_out, dtype=torch.float32):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2, dtype=dtype)

    def forward(self, hidden_states, *args, **kwargs):
        hidden_states = self.proj(hidden_states)
        hidden_states, gate = hidden_states.chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class DiffusersStyleGELU(nn.Module):
    """The forward of diffusers.models.activations.GELU (LTX-Video: approximate="tanh")."""

    def __init__(self, dim_in, dim_out, approximate="none", dtype=torch.float32):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, dtype=dtype)
        self.approximate = approximate

    def forward(self, hidden_states):
        return F.gelu(self.proj(hidden_states), approximate=self.approximate)


class VllmStyleSiluAndMul(nn.Module):
    """The forward (forward_native) of vLLM's SiluAndMul."""

    def forward(self, x):
        d = x.shape[-1] // 2
        return F.silu(x[..., :d]) * x[..., d:]


def _kernelized(host: nn.Module, layer_cls) -> nn.Module:
    host.forward = types.MethodType(layer_cls.forward, host)
    return host


def _validate(layer, host_cls):
    sys.path.insert(0, str(ROOT / "loader"))
    from kernel_hub.layer.validate import validate_layer

    validate_layer(layer, host_cls)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_layers_match_their_hosts(variant_modules, dtype):
    layers = variant_modules["cpu"].layers
    x = torch.randn(2, 5, 32, dtype=dtype)
    hosts = [
        (DiffusersStyleGEGLU(32, 48, dtype=dtype), layers.GEGLU),
        (DiffusersStyleGELU(32, 48, approximate="tanh", dtype=dtype), layers.GELU),
        (DiffusersStyleGELU(32, 48, approximate="none", dtype=dtype), layers.GELU),
        (VllmStyleSiluAndMul(), layers.SiluAndMul),
    ]
    for host, layer in hosts:
        _validate(layer, type(host))
        inputs = x if layer is not layers.SiluAndMul else x.repeat(1, 1, 2)
        with torch.no_grad():
            expected = host(inputs)
            exact = type(host).forward(host.double(), inputs.double())
            host.to(dtype)
            got = _kernelized(host, layer)(inputs)
        assert got.dtype == expected.dtype
        assert_matches_reference(got, exact, expected, layer.__name__)
        assert "__init__" not in vars(layer)
    params = list(inspect.signature(layers.GEGLU.forward).parameters)
    assert params == ["self", "hidden_states", "args", "kwargs"]


# ---------------------------------------------------------------- benchmark accounting


def test_benchmark_bytes_count_each_input_and_output_once():
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_geglu, harness

    rows, hidden = 8192, 11008
    n = rows * hidden
    shape = (rows, 2 * hidden)
    assert bench_geglu.gated_bytes(shape, torch.bfloat16, "fwd") == 2 * (2 * n + n)
    assert bench_geglu.gated_bytes(shape, torch.bfloat16, "bwd") == 2 * (n + 2 * n + 2 * n)
    assert bench_geglu.gelu_bytes((8192, 11008), torch.float16, "fwd") == 2 * 2 * n
    assert bench_geglu.gelu_bytes((8192, 11008), torch.float16, "bwd") == 2 * 3 * n
    args = harness.parse_args(bench_geglu.BENCH, ["--quick"])
    assert args.shapes_list == bench_geglu.QUICK_SHAPES and args.dtypes == [torch.bfloat16]
