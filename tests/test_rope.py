"""RoPE 1D on every backend this machine can run, against the fp32 reference.

Backends: the C++ CPU kernels (CPU variant and the CPU path of the CUDA variant), Triton
(interpreter on CPU tensors without a GPU; real kernels on a GPU), CUDA (GPU only).
"""

import inspect
import sys
import types

import pytest
import torch
from torch import nn

from support import HAS_GPU, INTERPRETER, ROOT
from tolerance import assert_matches_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["bshd", "bhsd"]
# (batch, seq, q heads, k heads or None, head_dim, rotated dims R): full 16-byte vectors, a
# rotated half of 36 (8-byte accesses), partial rotary (dims R..D copied), odd sizes (scalar
# accesses), GQA, no k, an empty batch and an empty sequence.
NATIVE_SHAPES = [
    (2, 7, 4, 2, 64, 64),
    (1, 5, 3, 1, 72, 72),
    (2, 3, 5, 5, 128, 96),
    (1, 4, 3, None, 10, 6),
    (3, 9, 8, 2, 256, 256),
    (0, 4, 2, 2, 8, 8),
    (2, 0, 2, 1, 8, 8),
]
INTERPRETER_SHAPES = [(2, 3, 2, 1, 16, 16), (1, 2, 3, None, 10, 6), (0, 2, 1, 1, 8, 8)]

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


# ---------------------------------------------------------------- inputs and the in-dtype math


def _data_shape(layout, batch, seq, heads, head_dim):
    return (batch, seq, heads, head_dim) if layout == "bshd" else (batch, heads, seq, head_dim)


def _tables(rows, half, dtype=torch.float32, device="cpu", theta=10000.0):
    """cos, sin [rows, half] of angles row * theta^(-i / half), as a rotary embedding builds."""
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(rows, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype).to(device), angles.sin().to(dtype).to(device)


def _inputs(shape, layout, dtype, device, table_dtype=torch.float32):
    batch, seq, hq, hk, head_dim, rot = shape
    q = torch.randn(_data_shape(layout, batch, seq, hq, head_dim), dtype=dtype, device=device)
    k = None
    if hk is not None:
        k = torch.randn(_data_shape(layout, batch, seq, hk, head_dim), dtype=dtype, device=device)
    cos, sin = _tables(seq, rot // 2, table_dtype, device)
    return q, k, cos, sin


def _broadcast(table, layout):
    """[S, R/2] or [B, S, R/2] -> broadcastable against [B, S, H, *] or [B, H, S, *]."""
    if table.dim() == 2:
        table = table.unsqueeze(0)
    return table.unsqueeze(2) if layout == "bshd" else table.unsqueeze(1)


def _rope_in_dtype(x, cos, sin, layout, interleaved, positions=None, conjugate=False):
    """The same rotation written as models write it (transformers' rotate_half form, or the
    interleaved pairs), every intermediate in x's dtype: the tolerance rule's baseline."""
    if positions is not None:
        cos, sin = cos[positions.long()], sin[positions.long()]
    c = _broadcast(cos.to(x.dtype), layout)
    s = _broadcast(sin.to(x.dtype), layout)
    if conjugate:
        s = -s
    rot = 2 * cos.shape[-1]
    xr, rest = x[..., :rot], x[..., rot:]
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        y = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    else:
        half = rot // 2
        rotated = torch.cat((-xr[..., half:], xr[..., :half]), dim=-1)
        y = xr * torch.cat((c, c), dim=-1) + rotated * torch.cat((s, s), dim=-1)
    return torch.cat((y, rest), dim=-1)


def _check_rope(kernel, q, k, cos, sin, layout, interleaved, what, positions=None):
    """apply_rotary forward and backward against the fp64 reference, with the tolerance rule."""
    leaves = [t for t in (q, k) if t is not None]
    for t in leaves:
        t.requires_grad_(True)
    q_out, k_out = kernel.apply_rotary(q, k, cos, sin, positions=positions, layout=layout,
                                       interleaved=interleaved)
    assert (k_out is None) == (k is None)
    outs = [q_out] + ([k_out] if k is not None else [])

    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    ref_q, ref_k = kernel.rope_reference(ref_leaves[0], ref_leaves[1] if k is not None else None,
                                         cos.double(), sin.double(), positions, layout, interleaved)
    refs = [ref_q] + ([ref_k] if k is not None else [])
    low_leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    lows = [_rope_in_dtype(t, cos, sin, layout, interleaved, positions) for t in low_leaves]
    for name, o, r, lo in zip(["q_out", "k_out"], outs, refs, lows):
        assert o.dtype == leaves[0].dtype and o.is_contiguous()
        assert_matches_reference(o.detach(), r.detach(), lo.detach(), f"{name} {what}")
    if not q.numel():
        return
    dys = [torch.randn_like(o) for o in outs]
    grads = torch.autograd.grad(outs, leaves, dys)
    ref_grads = torch.autograd.grad(refs, ref_leaves, [d.double() for d in dys])
    low_grads = torch.autograd.grad(lows, low_leaves, dys)
    for name, g, rg, lg in zip(["dq", "dk"], grads, ref_grads, low_grads):
        assert_matches_reference(g, rg, lg, f"{name} {what}")


# ---------------------------------------------------------------- forward and backward


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("interleaved", [False, True], ids=["rotate-half", "interleaved"])
def test_forward_and_backward_match_reference(backend, dtype, layout, interleaved):
    kernel, device, shapes = backend
    for shape in shapes:
        q, k, cos, sin = _inputs(shape, layout, dtype, device)
        _check_rope(kernel, q, k, cos, sin, layout, interleaved, f"{device} {dtype} {shape}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_tables_in_the_data_dtype_and_per_batch(backend, dtype):
    kernel, device, shapes = backend
    batch, seq, hq, hk, head_dim, rot = shapes[0]
    q, k, _, _ = _inputs(shapes[0], "bshd", dtype, device)
    cos, sin = _tables(seq, rot // 2, dtype, device)
    _check_rope(kernel, q, k, cos, sin, "bshd", False, "tables in dtype")
    # [B, S, R/2] tables (per-sample positions) and [1, S, R/2] (broadcast over the batch).
    shifts = torch.arange(batch, device=device)[:, None, None].float()
    cos3, sin3 = torch.cos(shifts + cos.float()), torch.sin(shifts + sin.float())
    for c, s in ((cos3, sin3), (cos3[:1], sin3[:1])):
        q, k, _, _ = _inputs(shapes[0], "bhsd", dtype, device)
        _check_rope(kernel, q, k, c.contiguous(), s.contiguous(), "bhsd", True, f"table {tuple(c.shape)}")


@pytest.mark.parametrize("positions_dtype", [torch.int32, torch.int64], ids=str)
def test_positions_index_the_table(backend, positions_dtype):
    kernel, device, shapes = backend
    batch, seq, hq, hk, head_dim, rot = shapes[0]
    cos, sin = _tables(50, rot // 2, torch.float32, device)
    per_batch = torch.randint(0, 50, (batch, seq), dtype=positions_dtype, device=device)
    shared = torch.randint(0, 50, (seq,), dtype=positions_dtype, device=device)
    for positions in (per_batch, shared, per_batch[:1]):
        for layout, interleaved in (("bshd", False), ("bhsd", True)):
            q, k, _, _ = _inputs(shapes[0], layout, torch.bfloat16, device)
            _check_rope(kernel, q, k, cos, sin, layout, interleaved,
                        f"positions {tuple(positions.shape)}", positions=positions)


def test_views_of_a_fused_qkv_projection(backend):
    """q and k sliced out of one [B, S, (Hq + 2 Hk) * D] projection, not contiguous; also shifted
    by one element (no 16-byte alignment: narrower accesses) and transposed ("bhsd" views)."""
    kernel, device, shapes = backend
    batch, seq, hq, hk, head_dim, rot = shapes[0]
    hk = hk or 1
    for shift in (0, 1):
        qkv = torch.randn(batch, seq, (hq + 2 * hk) * head_dim + shift, dtype=torch.bfloat16,
                          device=device)[..., shift:]
        heads = qkv.view(batch, seq, hq + 2 * hk, head_dim) if shift == 0 else \
            qkv.unflatten(-1, (hq + 2 * hk, head_dim))
        q, k = heads[:, :, :hq], heads[:, :, hq:hq + hk]
        assert not q.is_contiguous() or batch * seq <= 1
        cos, sin = _tables(seq, rot // 2, torch.float32, device)
        _check_rope(kernel, q, k, cos, sin, "bshd", False, f"qkv views shift {shift}")
        _check_rope(kernel, q.transpose(1, 2), k.transpose(1, 2), cos, sin, "bhsd", True,
                    f"transposed qkv views shift {shift}")


def test_last_dim_not_contiguous_is_copied(backend):
    kernel, device, shapes = backend
    batch, seq, hq, hk, head_dim, rot = shapes[0]
    q = torch.randn(batch, seq, hq, 2 * head_dim, device=device)[..., ::2]
    cos, sin = _tables(seq, rot // 2, torch.float32, device)
    cos_strided = torch.stack((cos, cos), dim=-1)[..., 0]
    q_out, _ = kernel.apply_rotary(q, None, cos_strided, sin)
    ref, _ = kernel.rope_reference(q, None, cos, sin)
    torch.testing.assert_close(q_out, ref)


def test_conjugate_undoes_the_rotation(backend):
    kernel, device, shapes = backend
    q, k, cos, sin = _inputs(shapes[0], "bshd", torch.float32, device)
    for interleaved in (False, True):
        q_out, k_out = kernel.apply_rotary(q, k, cos, sin, interleaved=interleaved)
        q_back, k_back = kernel.apply_rotary(q_out, k_out, cos, sin, interleaved=interleaved,
                                             conjugate=True)
        torch.testing.assert_close(q_back, q, rtol=1e-5, atol=1e-5)
        if k is not None:
            torch.testing.assert_close(k_back, k, rtol=1e-5, atol=1e-5)


def test_in_place_matches_out_of_place(backend):
    kernel, device, shapes = backend
    batch, seq, hq, hk, head_dim, rot = shapes[2 if len(shapes) > 3 else 0]
    hk = hk or 1
    qkv = torch.randn(batch, seq, hq + 2 * hk, head_dim, dtype=torch.float16, device=device)
    q, k = qkv[:, :, :hq], qkv[:, :, hq:hq + hk]
    cos, sin = _tables(seq, rot // 2, torch.float32, device)
    expected_q, expected_k = kernel.apply_rotary(q, k, cos, sin)
    v_before = qkv[:, :, hq + hk:].clone()
    q_out, k_out = kernel.apply_rotary(q, k, cos, sin, inplace=True)
    assert q_out is q and k_out is k
    torch.testing.assert_close(q, expected_q, rtol=0, atol=0)
    torch.testing.assert_close(k, expected_k, rtol=0, atol=0)
    torch.testing.assert_close(qkv[:, :, hq + hk:], v_before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="inplace=True is for inference"):
        kernel.apply_rotary(q.clone().requires_grad_(True), None, cos, sin, inplace=True)


def test_every_output_element_is_written(backend):
    """The out op writes every element, the copied dims R..D included: outputs start as NaN."""
    kernel, device, shapes = backend
    batch, seq, hq, hk, head_dim, rot = next(s for s in shapes if s[0] and s[4] > s[5])
    q, k, cos, sin = _inputs((batch, seq, hq, 2, head_dim, rot), "bhsd", torch.bfloat16, device)
    q_out, k_out = torch.full_like(q, float("nan")), torch.full_like(k, float("nan"))
    kernel.ops.rope_fwd_out(q_out, k_out, q, k, cos, sin, None, "bhsd", False, False)
    assert torch.isfinite(q_out).all() and torch.isfinite(k_out).all()
    torch.testing.assert_close(q_out[..., rot:], q[..., rot:], rtol=0, atol=0)


def test_out_of_range_positions(backend):
    kernel, device, shapes = backend
    q, k, cos, sin = _inputs(shapes[0], "bshd", torch.float32, device)
    seq = q.shape[1]
    positions = torch.zeros(seq, dtype=torch.int64, device=device)
    positions[-1] = cos.shape[0]
    if device == "cpu":
        with pytest.raises(ValueError, match="positions must be in"):
            kernel.apply_rotary(q, k, cos, sin, positions=positions)
    else:
        # The caller's contract on CUDA: that token comes out NaN, the others are right.
        q_out, _ = kernel.apply_rotary(q, k, cos, sin, positions=positions)
        assert torch.isnan(q_out[:, -1]).all() and torch.isfinite(q_out[:, :-1]).all()


def test_bad_inputs_raise_errors_naming_the_argument(backend):
    kernel, device, _ = backend
    q = torch.randn(2, 4, 3, 16, device=device)
    k = torch.randn(2, 4, 1, 16, device=device)
    cos, sin = _tables(4, 8, torch.float32, device)
    rotary = kernel.apply_rotary
    cases = [
        (lambda: rotary(q, k, cos, sin, layout="bsdh"), ValueError, "layout must be"),
        (lambda: rotary(q, k, cos.repeat(1, 2), sin.repeat(1, 2)), ValueError, "cos must have 1 to"),
        (lambda: rotary(q, k, cos.half(), sin.half()), TypeError, "cos must be float32 or q's dtype"),
        (lambda: rotary(q, k, cos, sin.double()), TypeError, "sin must be float32"),
        (lambda: rotary(q, k, cos, sin[:, :4]), ValueError, "sin must have cos's shape"),
        (lambda: rotary(q, k[:, :3], cos, sin), ValueError, "k must be 4-D with q's batch"),
        (lambda: rotary(q, k.half(), cos, sin), TypeError, "k dtype"),
        (lambda: rotary(q[0], None, cos, sin), ValueError, "q must be 4-D"),
        (lambda: rotary(q.int(), None, cos, sin), TypeError, "q must be float32"),
        (lambda: rotary(q, None, cos[:3], sin[:3]), ValueError, "without positions, cos and sin"),
        (lambda: rotary(q, None, cos, sin, positions=torch.zeros(4, device=device)), TypeError,
         "positions must be int32 or int64"),
        (lambda: rotary(q, None, cos, sin, positions=torch.zeros(5, dtype=torch.long, device=device)),
         ValueError, "positions must be \\[S\\] or \\[B, S\\]"),
        (lambda: rotary(q, None, cos.unsqueeze(0), sin.unsqueeze(0),
                        positions=torch.zeros(4, dtype=torch.long, device=device)),
         ValueError, "with positions, cos and sin must be tables"),
        (lambda: rotary(q, None, None, sin), TypeError, "cos must be a torch.Tensor"),
        (lambda: rotary(q, None, cos, sin, interleaved=1), TypeError, "interleaved must be a bool"),
        (lambda: rotary(q.requires_grad_(True), None, cos.clone().requires_grad_(True), sin),
         ValueError, "cos and sin get no gradient"),
        (lambda: kernel.ops.rope_fwd_out(torch.empty(2, 4, 3, 8, device=device), None, q, None, cos,
                                         sin, None, "bshd", False, False), ValueError,
         "q_out must have shape"),
        (lambda: kernel.ops.rope_fwd_out(torch.empty_like(q), None, q, k, cos, sin, None, "bshd",
                                         False, False), ValueError, "k_out must be given exactly"),
        (lambda: kernel.ops.rope_fwd_out(torch.empty(2, 4, 3, 32, device=device)[..., ::2], None, q,
                                         None, cos, sin, None, "bshd", False, False), ValueError,
         "q_out must have a last dim of stride 1"),
        (lambda: kernel.ops.rope_inplace(torch.randn(2, 4, 3, 32, device=device)[..., ::2], None,
                                         cos, sin, None, "bshd", False, False), ValueError,
         "q must have a last dim of stride 1"),
    ]
    if HAS_GPU:
        other = "cpu" if device == "cuda" else "cuda"
        cases.append((lambda: rotary(q, k, cos.to(other), sin.to(other)), ValueError, "cos is on"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
        q.requires_grad_(False)


# ---------------------------------------------------------------- torch.compile


def test_compiled_forward_and_backward_equal_eager(variant_modules):
    name = "cuda" if HAS_GPU and "cuda" in variant_modules else "cpu"
    kernel = variant_modules[name]
    device = "cuda" if name == "cuda" and HAS_GPU else "cpu"
    torch._dynamo.reset()
    cos, sin = _tables(6, 8, torch.float32, device)
    leaves = [torch.randn(2, 6, 4, 16, device=device), torch.randn(2, 6, 2, 16, device=device)]

    def block(q, k):
        # One graph for both ops (1D and the 3D of test_rope3d.py): each compiled graph costs
        # seconds of inductor time on CPU.
        q_rot, k_rot = kernel.apply_rotary(q * 2.0, k, cos, sin)
        k_3d = kernel.apply_rope3d(k_rot, (1, 2, 3), (4, 6, 6))
        return (q_rot.sum(2, keepdim=True) * k_3d).sum()

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


# ---------------------------------------------------------------- transformers' function and layer


def _rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def transformers_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    """transformers' modeling_llama.apply_rotary_pos_emb (the version decorated with
    @use_kernel_func_from_hub("rotary_pos_emb")), copied."""
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (_rotate_half(q) * sin)
    k_embed = (k * cos) + (_rotate_half(k) * sin)
    return q_embed, k_embed


class TransformersRotaryHost(nn.Module):
    """What @use_kernel_func_from_hub makes of the function: a module whose forward calls it and
    shows its parameters."""

    kernel_layer_name = "rotary_pos_emb"

    def forward(self, q, k, cos, sin, unsqueeze_dim=1):
        return transformers_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)


def _llama_cos_sin(batch, seq, head_dim, dtype):
    """LlamaRotaryEmbedding's output: [B, S, D] = cat(freqs, freqs), in the model dtype."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    positions = torch.arange(seq, dtype=torch.float32)[None].expand(batch, seq) + \
        torch.arange(batch, dtype=torch.float32)[:, None]
    freqs = positions[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_apply_rotary_pos_emb_matches_transformers(variant_modules, dtype, unsqueeze_dim):
    kernel = variant_modules["cpu"]
    batch, seq, hq, hk, head_dim = 2, 5, 4, 2, 32
    shape = (lambda h: (batch, h, seq, head_dim)) if unsqueeze_dim == 1 else \
        (lambda h: (batch, seq, h, head_dim))
    q, k = torch.randn(shape(hq), dtype=dtype), torch.randn(shape(hk), dtype=dtype)
    cos, sin = _llama_cos_sin(batch, seq, head_dim, dtype)
    expected = transformers_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)
    exact = transformers_apply_rotary_pos_emb(q.double(), k.double(), cos.double(), sin.double(),
                                              unsqueeze_dim)
    got = kernel.apply_rotary_pos_emb(q, k, cos, sin, None, unsqueeze_dim)
    host = TransformersRotaryHost()
    host.forward = types.MethodType(kernel.layers.ApplyRotaryPosEmb.forward, host)
    from_layer = host(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)
    for name, g, layer_g, e, x in zip(["q", "k"], got, from_layer, expected, exact):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert_matches_reference(g, x, e, f"{name} apply_rotary_pos_emb")
        torch.testing.assert_close(layer_g, g, rtol=0, atol=0)


def test_rotary_layer_follows_kernelize_rules(variant_modules):
    layers = variant_modules["cpu"].layers
    assert "__init__" not in vars(layers.ApplyRotaryPosEmb)
    assert layers.ApplyRotaryPosEmb.can_torch_compile is True
    params = list(inspect.signature(layers.ApplyRotaryPosEmb.forward).parameters)
    assert params == list(inspect.signature(TransformersRotaryHost.forward).parameters)
    from kernel_hub.layer.validate import validate_layer

    validate_layer(layers.ApplyRotaryPosEmb, TransformersRotaryHost)
    fn_params = list(inspect.signature(variant_modules["cpu"].apply_rotary_pos_emb).parameters)
    assert fn_params == ["q", "k", "cos", "sin", "position_ids", "unsqueeze_dim"]


def test_rotary_layer_on_real_transformers_function(variant_modules):
    modeling = pytest.importorskip("transformers.models.llama.modeling_llama")
    kernel = variant_modules["cpu"]
    q, k = torch.randn(1, 4, 6, 64), torch.randn(1, 2, 6, 64)
    cos, sin = _llama_cos_sin(1, 6, 64, torch.float32)
    expected = modeling.apply_rotary_pos_emb(q, k, cos, sin)
    got = kernel.apply_rotary_pos_emb(q, k, cos, sin)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- benchmark accounting


def test_benchmark_bytes_and_peers_on_cpu(variant_modules):
    """bench_rope's byte counts, and its eager peer and ours pass the harness's check on CPU."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # benchmarks/ is a folder of the checkout, not a package
    from benchmarks import bench_rope, harness

    n = 8 * 4096 * (32 + 8) * 128
    assert bench_rope.rope_bytes((8, 4096, 32, 128), torch.bfloat16) == 2 * 2 * n + 4 * 2 * 4096 * 64
    assert harness.parse_args(bench_rope.BENCH, []).shapes_list == [
        s for shapes in bench_rope.SHAPES.values() for s in shapes]
    m = 2 * 8 * 32 * 48 * 32 * 64
    assert bench_rope.rope3d_bytes((2, 8, 32, 48, 32, 64), torch.bfloat16) == 2 * 2 * m
    assert bench_rope.wan_split(64) == (24, 20, 20) and bench_rope.wan_split(128) == (44, 42, 42)
    torch.manual_seed(0)
    for shape in [(2, 6, 8, 32), (1, 2, 3, 4, 2, 64)]:
        [case] = bench_rope.build_cases(variant_modules["cpu"], shape, torch.bfloat16)
        inputs = case.make_inputs("cpu")
        for name in case.grad_inputs:
            inputs[name].requires_grad_(True)
        truth = harness.Truth(case, inputs, ["fwd", "bwd"])
        peers = {p.name: p for p in case.peers}
        for name in ("eager", "ours"):
            for direction in ("fwd", "bwd"):
                check = truth.check(peers[name], inputs, direction)
                assert check.passed, (shape, name, direction, check)
