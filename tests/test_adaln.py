"""AdaLN on every backend this machine can run, against the fp32 reference.

Backends: the C++ CPU kernels (CPU variant and the CPU path of the CUDA variant), Triton
(interpreter on CPU tensors without a GPU; real kernels on a GPU), CUDA (GPU only).
"""

import copy
import importlib
import inspect
import types

import pytest
import torch
from torch import nn

from support import HAS_GPU, INTERPRETER
from tolerance import assert_matches_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NORMS = ["rms", "layer"]
# (batch, seq, hidden): vector-width tails (1, 7, 33, 4095, 5123), zero samples or tokens, runs
# of tokens long enough to be cut into several chunks (seq 20: three on the CPU), and on a GPU
# rows that the resident CUDA kernels take (2048, 3072) and a backward too long for them (8192).
# The fused CUDA backward (per-sample scale) sums its partial rows in column slices: several per
# block at (2, 9, 2048) and (1, 7, 3072), none for some blocks at (3, 300, 1024); (2500, 1, 64)
# has more samples than its grid may hold at once (16 blocks per SM of up to 132 SMs), which takes
# the two-pass sums.
CPU_SHAPES = [(2, 3, 1), (2, 5, 7), (1, 3, 515), (0, 4, 64), (2, 0, 64), (2, 20, 96)]
GPU_SHAPES = [(2, 3, 1), (2, 5, 7), (2, 3, 4095), (1, 2, 5123), (0, 4, 64), (2, 0, 64),
              (2, 9, 2048), (1, 7, 3072), (3, 300, 1024), (2500, 1, 64), (2, 5, 8192)]
INTERPRETER_SHAPES = [(2, 3, 1), (2, 3, 7), (1, 5, 33), (0, 2, 16), (2, 0, 16), (2, 4, 64)]

# Modulation layouts: per sample [B, D], per sample [B, 1, D], per token [B, S, D].
SAMPLE, SAMPLE3, TOKEN = "sample", "sample3", "token"
# (gated, weight, scale, shift, gate): every layout appears for every tensor.
CASES = {
    "plain-sample-weight": (False, True, SAMPLE, SAMPLE, None),
    "plain-token": (False, False, TOKEN, TOKEN, None),
    "gated-sample": (True, False, SAMPLE3, SAMPLE, SAMPLE),
    "gated-token-weight": (True, True, TOKEN, SAMPLE3, TOKEN),
    "gated-mixed-weight": (True, True, SAMPLE, TOKEN, SAMPLE3),
}

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
    if device == "cuda":
        shapes = GPU_SHAPES
    else:
        shapes = INTERPRETER_SHAPES if variant == "triton" else CPU_SHAPES
    return variant_modules[variant], device, shapes


def _interpreted(kernel, device) -> bool:
    return kernel.BACKEND == "triton" and device == "cpu"


def _modulation(layout, batch, seq, hidden, dtype, device, magnitude=0.5):
    shape = {SAMPLE: (batch, hidden), SAMPLE3: (batch, 1, hidden), TOKEN: (batch, seq, hidden)}
    return magnitude * torch.randn(shape[layout], dtype=dtype, device=device)


def _broadcast(t):
    return t.unsqueeze(1) if t.dim() == 2 else t


def _adaln_in_dtype(x, scale, shift, weight, eps, norm, branch=None, gate=None):
    """The same computation done in the input dtype: the tolerance rule's baseline."""
    z = x if branch is None else x + _broadcast(gate) * branch
    centered = z - z.mean(-1, keepdim=True) if norm == "layer" else z
    n = centered * torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        n = n * weight
    return n * (1 + _broadcast(scale)) + _broadcast(shift), z


def _case_inputs(case, shape, dtype, device):
    """{name: leaf tensor} in the argument order of adaln / adaln_gated."""
    gated, with_weight, scale_layout, shift_layout, gate_layout = CASES[case]
    batch, seq, hidden = shape
    inputs = {"x": torch.randn(shape, dtype=dtype, device=device)}
    if gated:
        inputs["branch"] = torch.randn(shape, dtype=dtype, device=device)
        inputs["gate"] = _modulation(gate_layout, batch, seq, hidden, dtype, device, 1.0)
    inputs["scale"] = _modulation(scale_layout, batch, seq, hidden, dtype, device)
    inputs["shift"] = _modulation(shift_layout, batch, seq, hidden, dtype, device)
    if with_weight:
        inputs["weight"] = 1 + 0.5 * torch.randn(hidden, dtype=dtype, device=device)
    return inputs


def _call(fn, inputs, eps, norm):
    args = dict(inputs)
    weight = args.pop("weight", None)
    out = fn(*args.values(), weight, eps, norm)
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_and_backward_match_reference(backend, dtype, norm, case):
    kernel, device, shapes = backend
    gated = CASES[case][0]
    eps = 1e-5
    fn = kernel.adaln_gated if gated else kernel.adaln
    ref_fn = kernel.adaln_gated_reference if gated else kernel.adaln_reference
    for shape in shapes:
        if norm == "layer" and shape[2] == 1:
            # LayerNorm of one element is exactly 0 with rstd = 1 / sqrt(eps): its gradient is
            # rounding noise times 316 (fp16's baseline overflows to NaN; compiled Triton's
            # fp32 noise, from where it contracts multiply-adds, measured 1.2e-5 to 3e-5 on an
            # H200), so there is nothing to compare. RMSNorm keeps the one-element rows.
            continue
        inputs = _case_inputs(case, shape, dtype, device)
        leaves = [t.requires_grad_(True) for t in inputs.values()]
        outs = _call(fn, inputs, eps, norm)
        cotangents = [torch.randn_like(o) for o in outs]
        grads = torch.autograd.grad(outs, leaves, cotangents, allow_unused=False)

        ref_inputs = {k: t.detach().double().requires_grad_(True) for k, t in inputs.items()}
        ref_outs = _call(ref_fn, ref_inputs, eps, norm)
        low_inputs = {k: t.detach().clone().requires_grad_(True) for k, t in inputs.items()}
        low_args = dict(low_inputs)
        low_weight = low_args.pop("weight", None)
        low_y, low_z = _adaln_in_dtype(low_args["x"], low_args["scale"], low_args["shift"],
                                       low_weight, eps, norm, low_args.get("branch"),
                                       low_args.get("gate"))
        low_outs = [low_y, low_z] if gated else [low_y]
        what = f"{case} {norm} {device} {dtype} {list(shape)}"

        assert_matches_reference(outs[0].detach(), ref_outs[0].detach(), low_y.detach(),
                                 f"y {what}")
        if gated:
            _assert_z_rounded(kernel, device, outs[1], inputs)
        ref_grads = torch.autograd.grad(ref_outs, list(ref_inputs.values()),
                                        [c.double() for c in cotangents])
        low_grads = torch.autograd.grad(low_outs, list(low_inputs.values()), cotangents)
        for name, g, rg, lg in zip(inputs, grads, ref_grads, low_grads):
            assert g.shape == inputs[name].shape, f"d{name} {what}: shape {g.shape}"
            assert_matches_reference(g, rg, lg, f"d{name} {what}")


def _assert_z_rounded(kernel, device, z, inputs):
    """z is x + gate * branch computed in fp32 and rounded once to the dtype."""
    x, branch, gate = inputs["x"], inputs["branch"], inputs["gate"]
    expected = (x.detach().float() + _broadcast(gate.detach()).float() * branch.detach().float())
    expected = expected.to(x.dtype)
    if kernel.BACKEND != "triton":  # C++ and CUDA round the product and the sum separately
        torch.testing.assert_close(z.detach(), expected, rtol=0, atol=0, msg="z")
        return
    # Compiled Triton contracts x + gate * branch into one fused multiply-add (fp32 too, seen on
    # an H200), and Triton 3.8's interpreter truncates fp32 -> bf16: the difference is at most
    # one rounding of the product plus one of the sum.
    product = (_broadcast(gate.detach()).double() * branch.detach().double()).abs()
    eps = torch.finfo(x.dtype).eps
    bound = eps * (product + expected.double().abs())
    assert ((z.detach().double() - expected.double()).abs() <= bound).all(), "z"


def test_triton_looped_kernels(backend, monkeypatch):
    """Rows longer than the fused Triton kernels hold (limits lowered so a short row is one):
    the looped forward and backward over several column blocks."""
    kernel, device, _ = backend
    if kernel.BACKEND != "triton":
        pytest.skip("Triton variant only")
    triton_module = importlib.import_module(f"{kernel.__name__}.adaln_triton")
    monkeypatch.setattr(triton_module, "MAX_FUSED_FWD_COLS", 16)
    monkeypatch.setattr(triton_module, "MAX_FUSED_BWD_COLS", 16)
    monkeypatch.setattr(triton_module, "LOOPED_BLOCK", 16)
    shape = (2, 3, 40)
    for case, norm in (("gated-mixed-weight", "layer"), ("plain-token", "rms")):
        inputs = _case_inputs(case, shape, torch.float32, device)
        leaves = [t.requires_grad_(True) for t in inputs.values()]
        fn, ref_fn = ((kernel.adaln_gated, kernel.adaln_gated_reference) if CASES[case][0]
                      else (kernel.adaln, kernel.adaln_reference))
        outs = _call(fn, inputs, 1e-6, norm)
        ref_outs = _call(ref_fn, inputs, 1e-6, norm)
        cotangents = [torch.randn_like(o) for o in outs]
        grads = torch.autograd.grad(outs, leaves, cotangents)
        ref_grads = torch.autograd.grad(ref_outs, leaves, cotangents)
        for got, want in zip(outs + list(grads), ref_outs + list(ref_grads)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_every_output_element_is_written(backend):
    """The out ops write every element: outputs start as NaN and must come back finite. The last
    two shapes: on a GPU a resident and a looped CUDA backward; on the CPU, seq 0 too (per-sample
    gradients are empty sums, zeros)."""
    kernel, device, shapes = backend
    dtype = torch.bfloat16
    for batch, seq, hidden in shapes[-2:]:
        def t(*shape, dt=dtype):
            return torch.randn(*shape, dtype=dt, device=device)

        def nan(*shape, dt=dtype):
            return torch.full(shape, float("nan"), dtype=dt, device=device)

        x, branch, dy, dz = (t(batch, seq, hidden) for _ in range(4))
        w = t(hidden)
        for norm in NORMS:
            for per_token in (False, True):
                what = f"{norm} per_token={per_token} {[batch, seq, hidden]}"
                mod_shape = (batch, seq, hidden) if per_token else (batch, hidden)
                scale, shift, gate = (0.5 * t(*mod_shape) for _ in range(3))
                y, z = nan(batch, seq, hidden), nan(batch, seq, hidden)
                mean, rstd = nan(batch, seq, dt=torch.float32), nan(batch, seq, dt=torch.float32)
                kernel.ops.adaln_fwd_out(y, z, mean, rstd, x, branch, gate, scale, shift, w,
                                         1e-6, norm)
                for out in (y, z, mean, rstd):
                    assert torch.isfinite(out).all(), f"forward {what}"
                grads = [nan(batch, seq, hidden), nan(*mod_shape), nan(*mod_shape), nan(hidden),
                         nan(batch, seq, hidden), nan(*mod_shape)]
                kernel.ops.adaln_bwd_out(*grads, dy, dz, z, branch, gate, scale, w, mean, rstd,
                                         norm)
                names = ["dx", "dscale", "dshift", "dweight", "dbranch", "dgate"]
                for name, g in zip(names, grads):
                    assert torch.isfinite(g).all(), f"{name} {what}"


def test_per_token_shift_gradient_is_dy(backend):
    """A per-token shift's gradient is dy itself: the backward op returns dshift empty (no copy),
    the out op leaves an empty dshift alone and still fills a [B, S, D] one, and autograd hands
    dy on as shift's gradient."""
    kernel, device, shapes = backend
    batch, seq, hidden = shapes[-1]
    dtype = torch.bfloat16
    x, branch, dy, dz = (torch.randn(batch, seq, hidden, dtype=dtype, device=device)
                         for _ in range(4))
    scale, shift, gate = (0.5 * torch.randn(batch, seq, hidden, dtype=dtype, device=device)
                          for _ in range(3))
    _, mean, rstd = kernel.ops.adaln(x, scale, shift, None, 1e-6, "rms")
    grads = kernel.ops.adaln_backward(dy, None, x, None, None, scale, True, None, mean, rstd,
                                      "rms", False)
    assert grads[2].shape == (0,)
    full = [torch.full_like(x, float("nan")) for _ in range(3)]
    empty_dshift = x.new_empty(0)
    kernel.ops.adaln_bwd_out(full[0], full[1], empty_dshift, None, None, None, dy, None, x, None,
                             None, scale, None, mean, rstd, "rms")
    kernel.ops.adaln_bwd_out(full[2], torch.empty_like(x), dshift := torch.empty_like(x), None,
                             None, None, dy, None, x, None, None, scale, None, mean, rstd, "rms")
    assert torch.isfinite(full[0]).all() and torch.isfinite(full[1]).all()
    torch.testing.assert_close(full[0], full[2], rtol=0, atol=0)
    assert torch.equal(dshift, dy)

    leaves = [t.clone().requires_grad_(True) for t in (x, branch, gate, scale, shift)]
    y = kernel.adaln(leaves[0], leaves[3], leaves[4], norm="layer")
    (shift_grad,) = torch.autograd.grad(y, [leaves[4]], dy)
    assert torch.equal(shift_grad, dy)
    y, z = kernel.adaln_gated(*leaves, norm="rms")
    shift_grad, x_grad = torch.autograd.grad([y, z], [leaves[4], leaves[0]], [dy, dz])
    assert torch.equal(shift_grad, dy) and torch.isfinite(x_grad).all()


def test_per_sample_sums_are_deterministic(backend):
    """Two backward runs give the same bits (no atomics in the per-sample and weight sums); on a
    GPU also for rows of the fused backward."""
    kernel, device, shapes = backend
    for batch, seq, hidden in [shapes[-1]] + ([(1, 7, 3072)] if device == "cuda" else []):
        inputs = _case_inputs("gated-mixed-weight", (batch, 4 * seq, hidden), torch.float32,
                              device)
        leaves = [t.requires_grad_(True) for t in inputs.values()]

        def run():
            y, z = _call(kernel.adaln_gated, inputs, 1e-6, "layer")
            return torch.autograd.grad([y, z], leaves, [torch.ones_like(y), torch.ones_like(z)])

        for first, second in zip(run(), run()):
            assert torch.equal(first, second)


def test_non_contiguous_inputs(backend):
    """x a strided view, scale and shift chunks of one [B, 2D] embedding (as DiT blocks make)."""
    kernel, device, shapes = backend
    _, seq, hidden = shapes[-1]
    base = torch.randn(2, seq, 2 * hidden, device=device)
    x = base[..., ::2]
    emb = torch.randn(2, 2 * hidden, device=device)
    scale, shift = emb.chunk(2, dim=1)
    weight = torch.randn(2 * hidden, device=device)[::2]
    y = kernel.adaln(x, scale, shift, weight, 1e-6, "layer")
    assert y.shape == x.shape
    ref = kernel.adaln_reference(x.double(), scale.double(), shift.double(), weight.double(),
                                 1e-6, "layer")
    assert_matches_reference(y, ref, ref.float(), "non-contiguous")


def test_bad_inputs_raise_errors_naming_the_argument(backend):
    kernel, device, _ = backend
    x = torch.randn(2, 3, 16, device=device)
    s = torch.randn(2, 16, device=device)

    def r(*shape, dtype=torch.float32, dev=device):
        return torch.randn(*shape, dtype=dtype, device=dev)

    cases = [
        (lambda: kernel.adaln(x, s, s, norm="group"), ValueError, "norm must be 'rms' or 'layer'"),
        (lambda: kernel.adaln(x, s, s, norm=1), TypeError, "norm must be a str"),
        (lambda: kernel.adaln(x, s, s, eps=-1.0), ValueError, "eps"),
        (lambda: kernel.adaln(x, r(2, 15), s), ValueError, "scale must have shape"),
        (lambda: kernel.adaln(x, s, r(3, 16)), ValueError, "shift must have shape"),
        (lambda: kernel.adaln(x, r(2, 2, 16), s), ValueError, "scale must have shape"),
        (lambda: kernel.adaln(x, s, s, r(15)), ValueError, "weight must have shape"),
        (lambda: kernel.adaln(x, r(2, 16, dtype=torch.float16), s), TypeError, "scale dtype"),
        (lambda: kernel.adaln(x, s, s, r(16, dtype=torch.bfloat16)), TypeError, "weight dtype"),
        (lambda: kernel.adaln(x.to(torch.int32), s, s), TypeError, "x must be"),
        (lambda: kernel.adaln(r(3, 16), s, s), ValueError, "x must be 3-D"),
        (lambda: kernel.adaln(x, "scale", s), TypeError, "scale must be a torch.Tensor"),
        (lambda: kernel.adaln_gated(x, r(2, 3, 8), s, s, s), ValueError, "branch must have"),
        (lambda: kernel.adaln_gated(x, x, r(1, 16), s, s), ValueError, "gate must have shape"),
        (lambda: kernel.ops.adaln_fwd_out(torch.empty(2, 3, 8, device=device), None,
                                          torch.empty(2, 3, device=device),
                                          torch.empty(2, 3, device=device), x, None, None, s, s,
                                          None, 1e-6, "rms"),
         ValueError, "y must have shape"),
        (lambda: kernel.ops.adaln_fwd_out(torch.empty_like(x), None,
                                          torch.empty(2, 3, device=device),
                                          torch.empty(2, 3, device=device), x, None, None,
                                          r(2, 1, 16), s, None, 1e-6, "rms"),
         ValueError, "scale must have shape"),
    ]
    if HAS_GPU:
        other = "cpu" if device == "cuda" else "cuda"
        cases.append((lambda: kernel.adaln(x, r(2, 16, dev=other), s), ValueError, "scale is on"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_compiled_forward_and_backward_equal_eager(variant_modules):
    name = "cuda" if HAS_GPU and "cuda" in variant_modules else "cpu"
    kernel = variant_modules[name]
    device = "cuda" if name == "cuda" and HAS_GPU else "cpu"
    torch._dynamo.reset()

    def block(x, branch, gate, scale, shift, weight):
        y, z = kernel.adaln_gated(x, branch, gate, scale, shift, weight, 1e-6, "layer")
        return (kernel.adaln(y * 2.0, scale, shift, None, 1e-5, "rms") * z).sum()

    leaves = [torch.randn(2, 5, 32, device=device) for _ in range(2)] + [
        torch.randn(2, 32, device=device) for _ in range(3)] + [torch.randn(32, device=device)]

    def run(fn):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        out = fn(*inputs)
        out.backward()
        return out.detach(), [t.grad for t in inputs]

    compiled_out, compiled_grads = run(torch.compile(block, fullgraph=True))
    eager_out, eager_grads = run(block)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- layers


class HostAdaLayerNormZero(nn.Module):
    """diffusers' AdaLayerNormZero (norm_type "layer_norm", num_embeddings None): its forward."""

    def __init__(self, dim, dtype):
        super().__init__()
        self.emb = None
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 6 * dim, dtype=dtype)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, dtype=dtype)

    def forward(self, x, timestep=None, class_labels=None, hidden_dtype=None, emb=None):
        if self.emb is not None:
            emb = self.emb(timestep, class_labels, hidden_dtype=hidden_dtype)
        emb = self.linear(self.silu(emb))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = emb.chunk(6, dim=1)
        x = self.norm(x) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        return x, gate_msa, shift_mlp, scale_mlp, gate_mlp


class HostAdaLayerNormZeroSingle(nn.Module):
    """diffusers' AdaLayerNormZeroSingle: its forward."""

    def __init__(self, dim, dtype):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 3 * dim, dtype=dtype)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, dtype=dtype)

    def forward(self, x, emb=None):
        emb = self.linear(self.silu(emb))
        shift_msa, scale_msa, gate_msa = emb.chunk(3, dim=1)
        x = self.norm(x) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        return x, gate_msa


class DiffusersRMSNorm(nn.Module):
    """diffusers' RMSNorm (non-NPU path), with weight and optional bias."""

    def __init__(self, dim, eps, dtype, bias=False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim, dtype=dtype))
        self.bias = nn.Parameter(0.1 * torch.randn(dim, dtype=dtype)) if bias else None

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
        if self.weight is not None:
            if self.weight.dtype in [torch.float16, torch.bfloat16]:
                hidden_states = hidden_states.to(self.weight.dtype)
            hidden_states = hidden_states * self.weight
            if self.bias is not None:
                hidden_states = hidden_states + self.bias
        else:
            hidden_states = hidden_states.to(input_dtype)
        return hidden_states


class HostAdaLayerNormContinuous(nn.Module):
    """diffusers' AdaLayerNormContinuous: its forward (scale, then shift)."""

    def __init__(self, dim, cond_dim, norm_type, dtype, bias=True):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(cond_dim, 2 * dim, dtype=dtype)
        if norm_type == "layer_norm":
            self.norm = nn.LayerNorm(dim, 1e-5, True, bias, dtype=dtype)
            with torch.no_grad():
                self.norm.weight.add_(0.1 * torch.randn(dim, dtype=dtype))
                if bias:
                    self.norm.bias.add_(0.1 * torch.randn(dim, dtype=dtype))
        else:
            self.norm = DiffusersRMSNorm(dim, 1e-5, dtype, bias=bias)

    def forward(self, x, conditioning_embedding):
        emb = self.linear(self.silu(conditioning_embedding).to(x.dtype))
        scale, shift = torch.chunk(emb, 2, dim=1)
        x = self.norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]
        return x


@pytest.fixture
def layers(variant_modules):
    return variant_modules["cpu"].layers


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _layer_vs_host(layer_cls, make_host, call, input_shapes, dtype):
    """The host's forward rebound to layer_cls.forward (as kernelize binds it) against the
    host: every output, and the gradients of the first one with respect to the inputs, within
    the tolerance rule (the host in fp64 the exact result, the host in dtype the baseline)."""
    torch.manual_seed(0)
    host = make_host(dtype)
    exact = copy.deepcopy(host).double()
    layer = _kernelized(copy.deepcopy(host), layer_cls)
    inputs = [torch.randn(shape, dtype=dtype) for shape in input_shapes]

    def run(module, cast):
        leaves = [cast(t).requires_grad_(True) for t in inputs]
        outs = _as_tuple(call(module, *leaves))
        cotangent = torch.randn(outs[0].shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(outs[0], leaves, cotangent.to(outs[0].dtype))
        return [o.detach() for o in outs], grads

    expected, expected_grads = run(host, lambda t: t.clone())
    exact_outs, exact_grads = run(exact, lambda t: t.double())
    got, got_grads = run(layer, lambda t: t.clone())
    assert len(got) == len(expected)
    for i, (g, e, ex) in enumerate(zip(got, expected, exact_outs)):
        assert g.dtype == e.dtype and g.shape == e.shape, f"output {i}"
        assert_matches_reference(g, ex, e, f"{layer_cls.__name__} output {i}")
    for i, (g, e, ex) in enumerate(zip(got_grads, expected_grads, exact_grads)):
        assert_matches_reference(g, ex, e, f"{layer_cls.__name__} grad of input {i}")


def _kernelized(host: nn.Module, layer_cls) -> nn.Module:
    host.forward = types.MethodType(layer_cls.forward, host)
    return host


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_ada_layer_norm_zero_matches_host(layers, dtype):
    dim = 48
    _layer_vs_host(layers.AdaLayerNormZero, lambda dt: HostAdaLayerNormZero(dim, dt),
                   lambda m, x, emb: m(x, emb=emb), [(2, 5, dim), (2, dim)], dtype)


def test_ada_layer_norm_zero_single_matches_host(layers):
    dim = 40
    _layer_vs_host(layers.AdaLayerNormZeroSingle, lambda dt: HostAdaLayerNormZeroSingle(dim, dt),
                   lambda m, x, emb: m(x, emb=emb), [(3, 4, dim), (3, dim)], torch.bfloat16)


@pytest.mark.parametrize("norm_type", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_ada_layer_norm_continuous_matches_host(layers, norm_type, bias, dtype):
    dim, cond = 32, 24
    _layer_vs_host(layers.AdaLayerNormContinuous,
                   lambda dt: HostAdaLayerNormContinuous(dim, cond, norm_type, dt, bias),
                   lambda m, x, c: m(x, c), [(2, 6, dim), (2, cond)], dtype)


def test_ada_layer_norm_continuous_keeps_host_promotion(layers):
    """An fp32 RMSNorm weight in a bf16 block: the host's output is fp32, and so is ours."""
    torch.manual_seed(0)
    host = HostAdaLayerNormContinuous(32, 16, "rms_norm", torch.bfloat16, bias=False)
    host.norm.float()
    x, c = torch.randn(2, 3, 32, dtype=torch.bfloat16), torch.randn(2, 16, dtype=torch.bfloat16)
    expected = host(x, c)
    got = _kernelized(copy.deepcopy(host), layers.AdaLayerNormContinuous)(x, c)
    assert expected.dtype == got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)


def test_unknown_norm_takes_the_host_math(layers):
    """A norm the kernel does not model (here GroupNorm-like) gives exactly the host's result."""

    class OddNorm(nn.Module):
        def forward(self, x):
            return x - x.amax(-1, keepdim=True)

    torch.manual_seed(0)
    host = HostAdaLayerNormZeroSingle(16, torch.float32)
    host.norm = OddNorm()
    x, emb = torch.randn(2, 3, 16), torch.randn(2, 16)
    expected = host(x, emb=emb)
    got = _kernelized(copy.deepcopy(host), layers.AdaLayerNormZeroSingle)(x, emb=emb)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("name", ["AdaLayerNormZero", "AdaLayerNormZeroSingle",
                                  "AdaLayerNormContinuous"])
def test_layers_follow_kernelize_rules(layers, name):
    """No __init__ of their own, the host's forward signature, compile and backward flags."""
    layer_cls = getattr(layers, name)
    host_cls = globals()[f"Host{name}"]
    assert "__init__" not in vars(layer_cls)
    assert layer_cls.can_torch_compile and layer_cls.has_backward
    assert (list(inspect.signature(layer_cls.forward).parameters)
            == list(inspect.signature(host_cls.forward).parameters))


# ---------------------------------------------------------------- benchmark accounting


def test_benchmark_bytes_count_each_input_and_output_once():
    bench = importlib.import_module("benchmarks.bench_adaln")
    b, s, d = 2, 4096, 3072
    n, bd = b * s * d, b * d
    bf16 = torch.bfloat16
    # plain, per sample: x, scale, shift -> y; backward dy, x, scale -> dx, dscale, dshift.
    assert bench.adaln_bytes((b, s, d), bf16, "fwd", gated=False, per_token=False) == 2 * (2 * n + 2 * bd)
    assert bench.adaln_bytes((b, s, d), bf16, "bwd", gated=False, per_token=False) == 2 * (3 * n + 3 * bd)
    # gated, per token: x, branch, gate, scale, shift -> y, z; backward dy, dz, z, branch,
    # gate, scale -> dx (= the gradient of x), dbranch, dgate, dscale (dshift is dy itself).
    assert bench.adaln_bytes((b, s, d), bf16, "fwd", gated=True, per_token=True) == 2 * 7 * n
    assert bench.adaln_bytes((b, s, d), bf16, "bwd", gated=True, per_token=True) == 2 * 10 * n
    assert bench.adaln_bytes((b, s, d), bf16, "bwd", gated=False, per_token=True) == 2 * 5 * n
