"""FlashAttention on every backend this machine can run, against the fp32/fp64 reference.

Backends: the C++ CPU kernels (CPU variant and the CPU path of the CUDA variant), the CUDA
variant's sm_80 kernels (on a GPU; and on the CPU through a host emulator of the few CUDA
instructions they use), Triton (interpreter on CPU tensors without a GPU; real kernels on a
GPU). Without a GPU the shapes are tiny (the interpreter and the emulator are slow); the full
matrix (sequence lengths up to 4097, every head dim) runs on a GPU.
"""

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from support import HAS_GPU, INTERPRETER, ROOT
from tolerance import assert_matches_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench_flash_attn, tune_flash_attn_triton  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
GPU_DTYPES = [torch.float16, torch.bfloat16]

# (batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window)
CPU_CASES = [
    (1, 1, 1, 2, 2, 64, False, (-1, -1)),
    (2, 17, 17, 4, 1, 64, True, (-1, -1)),
    (1, 128, 128, 8, 1, 128, False, (-1, -1)),
    (2, 17, 40, 4, 4, 96, True, (-1, -1)),
    (1, 40, 17, 2, 2, 192, True, (-1, -1)),
    (1, 33, 33, 2, 1, 256, False, (8, 4)),
    (1, 128, 128, 2, 2, 64, True, (16, -1)),
    (1, 1, 37, 4, 1, 128, True, (-1, -1)),
    # 8 (sequence, key head) pairs: the backward's one-task-per-key-head form, GQA 2, Sq > Sk.
    (2, 100, 90, 8, 4, 128, True, (-1, -1)),
]
INTERPRETER_CASES = [
    (1, 1, 1, 2, 2, 64, False, (-1, -1)),
    (2, 17, 17, 4, 1, 64, True, (-1, -1)),
    (1, 17, 40, 8, 1, 64, True, (-1, -1)),
    (1, 40, 17, 2, 2, 96, True, (-1, -1)),
    (1, 33, 33, 2, 1, 64, False, (8, 4)),
]
GPU_CASES = [
    (batch, seqlen, seqlen, heads_q, heads_k, head_dim, causal, (-1, -1))
    for batch, seqlen in ((2, 1), (2, 17), (2, 128), (1, 1000), (1, 4097))
    for heads_q, heads_k, head_dim in ((2, 2, 64), (4, 1, 96), (8, 1, 128), (4, 2, 192), (2, 2, 256))
    for causal in (False, True)
] + [
    (2, 1000, 1537, 8, 2, 128, True, (-1, -1)),
    (2, 1537, 1000, 8, 2, 128, True, (-1, -1)),
    (1, 4097, 4097, 4, 1, 64, True, (256, -1)),
    (2, 1000, 1000, 4, 4, 128, False, (100, 50)),
    (1, 300, 700, 4, 4, 256, False, (0, 0)),
    (2, 1537, 1000, 8, 2, 256, True, (-1, -1)),
]

BACKENDS = [
    pytest.param(("cpu", "cpu"), id="cpu"),
    pytest.param(("cuda", "cpu"), id="cuda-variant-on-cpu-tensors"),
    pytest.param(
        ("triton", "cpu"),
        id="triton-interpreter",
        marks=pytest.mark.skipif(not INTERPRETER, reason="Triton interpreter off (GPU present)"),
    ),
    pytest.param(
        ("cuda", "cuda"),
        id="cuda-kernels",
        marks=pytest.mark.skipif(not HAS_GPU, reason="needs a GPU"),
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
    return variant_modules[variant], device


def _cases(device, kernel):
    if device == "cuda":
        return GPU_CASES
    return INTERPRETER_CASES if kernel.BACKEND == "triton" else CPU_CASES


def _dtypes(device, kernel=None, index=0):
    """Every dtype, except under the interpreter (slow): bf16 and, in turn, fp32 or fp16."""
    if device == "cuda":
        return GPU_DTYPES
    if kernel is not None and kernel.BACKEND == "triton":
        return [torch.bfloat16, (torch.float32, torch.float16)[index % 2]]
    return DTYPES


def _qkv(batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, dtype, device):
    q = torch.randn(batch, seqlen_q, heads_q, head_dim, dtype=dtype, device=device)
    k = torch.randn(batch, seqlen_k, heads_k, head_dim, dtype=dtype, device=device)
    v = torch.randn(batch, seqlen_k, heads_k, head_dim, dtype=dtype, device=device)
    return q, k, v


def _reference_grads(kernel, leaves, dout, reference_dtype, **kwargs):
    """(out, lse, grads) of attention_reference on copies of `leaves` in reference_dtype
    (computed in that dtype too)."""
    copies = [t.detach().to(reference_dtype).requires_grad_(True) for t in leaves]
    out, lse = kernel.attention_reference(*copies, return_lse=True, compute_dtype=reference_dtype,
                                          **kwargs)
    grads = torch.autograd.grad(out, copies, dout.to(reference_dtype)) if out.numel() else copies
    return out.detach(), lse.detach(), grads


def _check_against_reference(kernel, leaves, out, lse, grads, dout, what, **kwargs):
    """out, lse and the gradients against the fp64 reference (fp32 on a GPU, where fp64 is
    slow), with the tolerance rule's baseline from the same math in the input dtype."""
    dtype = leaves[0].dtype
    high = torch.float32 if leaves[0].is_cuda else torch.float64
    ref_out, ref_lse, ref_grads = _reference_grads(kernel, leaves, dout, high, **kwargs)
    low_out, _, low_grads = _reference_grads(kernel, leaves, dout, dtype, **kwargs)
    assert_matches_reference(out.detach(), ref_out, low_out, f"out {what}")
    # lse is fp32 whatever the input dtype; rows without keys are -inf in both.
    torch.testing.assert_close(lse.detach().double().cpu(), ref_lse.double().cpu(), rtol=1e-5,
                               atol=1e-4, msg=lambda m: f"lse {what}: {m}")
    for name, g, rg, lg in zip(("dq", "dk", "dv"), grads, ref_grads, low_grads):
        assert_matches_reference(g, rg, lg, f"{name} {what}")


def _run(kernel, leaves, causal, window, varlen=None):
    leaves = [t.requires_grad_(True) for t in leaves]
    if varlen is None:
        out, lse = kernel.flash_attn(*leaves, causal=causal, window=window, return_lse=True)
    else:
        out, lse = kernel.flash_attn_varlen(*leaves, *varlen, causal=causal, window=window,
                                            return_lse=True)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, dout)
    return out, lse, grads, dout


def test_forward_and_backward_match_reference(backend):
    kernel, device = backend
    for index, case in enumerate(_cases(device, kernel)):
        batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window = case
        for dtype in _dtypes(device, kernel, index):
            leaves = _qkv(batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, dtype, device)
            out, lse, grads, dout = _run(kernel, leaves, causal, window)
            _check_against_reference(kernel, leaves, out, lse, grads, dout,
                                     f"{device} {dtype} {case}", causal=causal, window=window)


# The GPU tile tables (BLOCK_M up to 128, BLOCK_N up to 128) under the interpreter, whose own
# 16 x 16 tiles the other Triton cases use: sequences that end inside a tile, causal, a window.
GPU_TILE_CASES = [
    (1, 150, 200, 2, 1, 64, False, (-1, -1)),
    (1, 150, 150, 2, 1, 128, True, (-1, -1)),
    (1, 200, 150, 1, 1, 256, False, (40, 20)),
    (1, 150, 150, 2, 2, 96, True, (-1, -1)),
]


@pytest.mark.skipif(not INTERPRETER, reason="Triton interpreter off (GPU present)")
def test_triton_gpu_tiles_under_interpreter(variant_modules, monkeypatch):
    """The Triton kernels with each head dim's GPU tile configuration (FWD, DKDV, DQ tables),
    run by the interpreter on CPU tensors."""
    if "triton" not in variant_modules:
        pytest.skip("no triton variant was built in this environment")
    kernel = variant_modules["triton"]
    triton_module = importlib.import_module(kernel.__name__ + ".flash_attn_triton")
    gpu_tiles = lambda table, head_dim, device: table[  # noqa: E731
        max(64, triton_module._padded_head_dim(head_dim))]
    monkeypatch.setattr(triton_module, "_config", gpu_tiles)
    for case in GPU_TILE_CASES:
        batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window = case
        leaves = _qkv(batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, torch.bfloat16, "cpu")
        out, lse, grads, dout = _run(kernel, leaves, causal, window)
        _check_against_reference(kernel, leaves, out, lse, grads, dout, f"gpu tiles {case}",
                                 causal=causal, window=window)


def test_rows_without_keys_give_zero_and_minus_inf(backend):
    """Causal with Sq > Sk (bottom-right aligned): the first Sq - Sk queries see no key."""
    kernel, device = backend
    dtype = torch.bfloat16
    q, k, v = _qkv(2, 21, 6, 2, 1, 64, dtype, device)
    out, lse, (dq, dk, dv), _ = _run(kernel, [q, k, v], True, (-1, -1))
    assert (out[:, :15] == 0).all() and (dq[:, :15] == 0).all()
    assert torch.isneginf(lse[..., :15]).all() and torch.isfinite(lse[..., 15:]).all()
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in (dq, dk, dv))
    # A window of (0, 0) with Sq < Sk: every query sees exactly one key.
    q, k, v = _qkv(1, 5, 9, 2, 2, 64, dtype, device)
    out = kernel.flash_attn(q, k, v, window=(0, 0))
    torch.testing.assert_close(out, v[:, 4:], rtol=0, atol=0)


def test_empty_inputs(backend):
    """No keys: out 0, lse -inf, zero gradients; no queries or no batch: empty results."""
    kernel, device = backend
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    for sizes in ((2, 3, 0, 2, 1, 64), (2, 0, 5, 2, 1, 64), (0, 3, 5, 2, 2, 64)):
        q, k, v = _qkv(*sizes, dtype, device)
        out, lse, grads, _ = _run(kernel, [q, k, v], False, (-1, -1))
        assert out.shape == q.shape and lse.shape == (sizes[0], sizes[3], sizes[1])
        assert (out == 0).all() and torch.isneginf(lse).all()
        assert all((g == 0).all() and g.shape == t.shape for g, t in zip(grads, (q, k, v)))


def _packed(lengths, heads, head_dim, dtype, device):
    total = sum(lengths)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32, device=device)
    return torch.randn(total, heads, head_dim, dtype=dtype, device=device), cu


# The last element: the one dtype the (slow) interpreter runs for that mask.
@pytest.mark.parametrize("causal,window,interpreter_dtype", [
    (False, (-1, -1), torch.float32), (True, (-1, -1), torch.bfloat16),
    (False, (3, 2), torch.float16)], ids=["full", "causal", "window"])
def test_varlen_matches_reference(backend, causal, window, interpreter_dtype):
    kernel, device = backend
    if device == "cuda":
        lengths_q, lengths_k = [1, 700, 0, 33, 2049], [9, 700, 5, 0, 1500]
        dtypes = GPU_DTYPES
    else:
        lengths_q, lengths_k = [1, 37, 0, 3, 20], [9, 37, 5, 0, 6]
        dtypes = DTYPES if kernel.BACKEND != "triton" else [interpreter_dtype]
    for dtype in dtypes:
        q, cu_q = _packed(lengths_q, 4, 64, dtype, device)
        k, cu_k = _packed(lengths_k, 2, 64, dtype, device)
        v = torch.randn_like(k)
        varlen = (cu_q, cu_k, max(lengths_q), max(lengths_k))
        out, lse, grads, dout = _run(kernel, [q, k, v], causal, window, varlen)
        assert lse.shape == (4, sum(lengths_q))
        _check_against_reference(kernel, [q, k, v], out, lse, grads, dout,
                                 f"varlen {device} {dtype}", causal=causal, window=window,
                                 cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
        # Keys no query sees (a sequence with no queries) get zero gradients.
        assert (grads[1][sum(lengths_k[:2]):sum(lengths_k[:3])] == 0).all()


def test_every_output_element_is_written(backend):
    """The out ops write every element: outputs start as NaN and must come back finite."""
    kernel, device = backend
    dtype = torch.bfloat16
    q, k, v = _qkv(2, 19, 23, 4, 2, 96, dtype, device)
    scale = 96**-0.5
    out = torch.full_like(q, float("nan"))
    lse = torch.full((2, 4, 19), float("nan"), device=device)
    kernel.ops.flash_attn_fwd_out(out, lse, q, k, v, None, None, 0, 0, scale, True, -1, -1)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    for deterministic in (False, True):
        dq, dk, dv = (torch.full_like(t, float("nan")) for t in (q, k, v))
        kernel.ops.flash_attn_bwd_out(dq, dk, dv, torch.randn_like(q), q, k, v, out, lse, None,
                                      None, 0, 0, scale, True, -1, -1, deterministic)
        assert all(torch.isfinite(t).all() for t in (dq, dk, dv))


def test_strided_inputs(backend):
    """q, k, v unbound from a fused qkv projection, or transposed from [B, H, S, D], run without
    a copy; a strided last dimension is copied by the functional op."""
    kernel, device = backend
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    qkv = torch.randn(2, 19, 3, 2, 64, dtype=dtype, device=device)
    q, k, v = qkv.unbind(2)
    assert not q.is_contiguous()
    out, lse, grads, dout = _run(kernel, [q, k, v], True, (-1, -1))
    _check_against_reference(kernel, [q, k, v], out, lse, grads, dout, "unbound qkv", causal=True,
                             window=(-1, -1))
    bhsd = [torch.randn(2, 2, 19, 64, dtype=dtype, device=device).transpose(1, 2) for _ in range(3)]
    wide = torch.randn(2, 19, 2, 128, dtype=dtype, device=device)[..., ::2]
    # One element past a 16-byte boundary: the CUDA kernels' cp.async rows need a copy.
    shifted = [torch.randn(2 * 19 * 2 * 64 + 1, dtype=dtype, device=device)[1:].view(2, 19, 2, 64)
               for _ in range(3)]
    for leaves in (bhsd, [wide, wide.clone(), wide.clone()], shifted):
        out, lse, grads, dout = _run(kernel, leaves, False, (-1, -1))
        _check_against_reference(kernel, leaves, out, lse, grads, dout, "strided", causal=False,
                                 window=(-1, -1))
    if device == "cpu":
        # K broadcast over its heads (head stride 0) beside a V that is not: each key head's own
        # V, though every head's K rows sit at one address.
        shared_k = torch.randn(2, 19, 1, 64, dtype=dtype).expand(2, 19, 2, 64)
        leaves = [torch.randn(2, 19, 4, 64, dtype=dtype), shared_k,
                  torch.randn(2, 19, 2, 64, dtype=dtype)]
        out, lse, grads, dout = _run(kernel, leaves, False, (-1, -1))
        _check_against_reference(kernel, leaves, out, lse, grads, dout, "broadcast k",
                                 causal=False, window=(-1, -1))
    with pytest.raises(ValueError, match="q must have a contiguous last dimension"):
        kernel.ops.flash_attn_fwd_out(torch.empty_like(wide), torch.empty(2, 2, 19, device=device),
                                      wide, wide, wide, None, None, 0, 0, 0.1, False, -1, -1)


# Unmasked shapes whose sm_90a forward splits query blocks on a GPU of up to 155
# multiprocessors (132 on an H100 or H200): 160, 154, 168 and 156 query blocks of 12 to 24 key
# tiles, no multiple of the grid (fwd_split_plan).
SPLIT_GPU_CASES = [
    (2, 2000, 2000, 5, 5, 128, torch.bfloat16),
    (2, 2000, 2000, 7, 1, 64, torch.float16),
    (1, 1500, 1500, 14, 7, 256, torch.bfloat16),
    (1, 1500, 1500, 13, 13, 192, torch.float16),
]


@pytest.mark.parametrize("case", SPLIT_GPU_CASES, ids=lambda c: f"hdim{c[-2]}")
def test_split_query_blocks_match_reference_and_repeat_bitwise(backend, case):
    """Either half of a split query block may finish first on the GPU; the merge is the same
    arithmetic whichever does, so two runs agree bitwise."""
    kernel, device = backend
    if device != "cuda":
        pytest.skip("GPU-sized shapes (the emulated cases split query blocks on the CPU)")
    leaves = _qkv(*case, device)
    out, lse, grads, dout = _run(kernel, leaves, False, (-1, -1))
    _check_against_reference(kernel, leaves, out, lse, grads, dout, f"split {case}",
                             causal=False, window=(-1, -1))
    for _ in range(3):
        again, again_lse = kernel.flash_attn(*leaves, return_lse=True)
        assert torch.equal(again, out) and torch.equal(again_lse, lse)


# On sm_90 deterministic runs the dk/dv and dq kernels at head dims 64 and 128 (otherwise one
# kernel sums dQ across key blocks); at 256 both run the wide form's two kernels.
@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_deterministic_backward_is_bitwise_reproducible(backend, head_dim):
    kernel, device = backend
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    shape = (1, 20, 20, 2, 1, head_dim) if device == "cpu" else (2, 1000, 1000, 8, 2, head_dim)
    q, k, v = _qkv(*shape, dtype, device)
    out, lse = kernel.flash_attn(q, k, v, causal=True, return_lse=True)
    dout = torch.randn_like(out)
    scale = shape[-1] ** -0.5

    def grads(deterministic):
        return kernel.ops.flash_attn_backward(dout, q, k, v, out, lse, None, None, 0, 0, scale,
                                              True, -1, -1, deterministic)

    first, second = grads(True), grads(True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # Both paths against the reference: the default one and the deterministic one.
    for deterministic, result in ((False, grads(False)), (True, first)):
        _check_against_reference(kernel, [q, k, v], out, lse, result, dout,
                                 f"deterministic={deterministic}", causal=True, window=(-1, -1))

    # Through autograd, under torch.use_deterministic_algorithms(True).
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
            runs.append(torch.autograd.grad(kernel.flash_attn(*leaves, causal=True), leaves, dout))
    finally:
        torch.use_deterministic_algorithms(previous)
    for a, b, expected in zip(*runs, first):
        assert torch.equal(a, b) and torch.equal(a, expected)


@pytest.mark.parametrize("name", ["cpu", "cuda", "triton"])
def test_compiled_forward_and_backward_equal_eager(variant_modules, name):
    """torch.compile(fullgraph=True) of a block using flash_attn: called forward and backward
    (the CPU variant on CPU tensors without a GPU; the CUDA and Triton variants on a GPU)."""
    if (name == "cpu") == HAS_GPU:
        pytest.skip("cpu without a GPU; cuda and triton on a GPU")
    if name not in variant_modules:
        pytest.skip(f"no {name} variant")
    kernel = variant_modules[name]
    device = "cuda" if HAS_GPU else "cpu"
    dtype = torch.bfloat16 if HAS_GPU else torch.float32
    torch._dynamo.reset()

    def block(q, k, v):
        out = kernel.flash_attn(q * 2.0, k, v, causal=True)
        return (out * out).sum()

    leaves = _qkv(2, 9, 9, 4, 2, 64, dtype, device)

    def run(fn):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        loss = fn(*inputs)
        loss.backward()
        return loss.detach(), [t.grad for t in inputs]

    compiled_loss, compiled_grads = run(torch.compile(block, fullgraph=True))
    eager_loss, eager_grads = run(block)
    torch.testing.assert_close(compiled_loss, eager_loss)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(compiled_grad, eager_grad)


def test_bad_inputs_raise_errors_naming_the_argument(backend):
    kernel, device = backend
    q, k, v = _qkv(1, 4, 4, 4, 2, 64, torch.float32 if device == "cpu" else torch.bfloat16,
                   device)
    other_device = "meta" if not HAS_GPU else ("cpu" if device == "cuda" else "cuda")
    cu = torch.tensor([0, 4], dtype=torch.int32, device=device)
    flat = q[0], k[0], v[0]
    cases = [
        (lambda: kernel.flash_attn(torch.randn(1, 4, 4, 80, dtype=q.dtype, device=device), k, v),
         ValueError, "head_dim 80"),
        (lambda: kernel.flash_attn(q.to(torch.int32), k, v), TypeError, "q must be float32"),
        (lambda: kernel.flash_attn(q, k.half(), v), TypeError, "k dtype"),
        (lambda: kernel.flash_attn(q, q[:, :, :3], q[:, :, :3]), ValueError,
         "multiple of the key/value heads"),
        (lambda: kernel.flash_attn(q, k.to(other_device), v), ValueError, "k is on"),
        (lambda: kernel.flash_attn(q, k, v[:, :3]), ValueError, "v must have k's shape"),
        (lambda: kernel.flash_attn(q[0], k, v), ValueError, "q must be 4-D"),
        (lambda: kernel.flash_attn(q, k, v, window=(-2, 0)), ValueError, "window"),
        (lambda: kernel.flash_attn(q, k, v, window=5), TypeError, "window"),
        (lambda: kernel.flash_attn(q, k, v, softmax_scale=float("nan")), ValueError,
         "softmax_scale"),
        (lambda: kernel.flash_attn_varlen(*flat, cu.long(), cu, 4, 4), TypeError,
         "cu_seqlens_q must be int32"),
        (lambda: kernel.flash_attn_varlen(*flat, cu, torch.tensor([0, 2, 4], dtype=torch.int32,
                                                                  device=device), 4, 4),
         ValueError, "same length"),
        (lambda: kernel.flash_attn_varlen(*flat, cu, cu[None], 4, 4), ValueError,
         "cu_seqlens_k must be 1-D"),
        (lambda: kernel.ops.flash_attn_fwd_out(torch.empty_like(q), torch.empty(1, 4, 3, device=device),
                                               q, k, v, None, None, 0, 0, 0.1, False, -1, -1),
         ValueError, "lse must have shape"),
    ]
    if device == "cpu":
        cases += [
            (lambda: kernel.flash_attn_varlen(*flat, cu + 1, cu, 4, 4), ValueError,
             "cu_seqlens_q must start at 0"),
            (lambda: kernel.flash_attn_varlen(*flat, cu, cu, 3, 4), ValueError,
             "max_seqlen_q is smaller"),
        ]
    else:
        cases.append((lambda: kernel.flash_attn(q.float(), k.float(), v.float()), TypeError,
                      "float16 or bfloat16 on a GPU"))
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


# ---------------------------------------------------------------- CUDA kernels, emulated on the CPU

# The CUDA kernels' own source, compiled by g++ against tests/flash_attn_emulation (host
# stand-ins for threadIdx, barriers, shuffles, ldmatrix, mma.sync, mbarriers, TMA and wgmma),
# called through fwd_cuda and bwd_cuda on an emulated sm_80 or sm_90 GPU, so each picks the
# kernels that GPU runs: index, mask and pipeline errors show up here without a GPU. Tiny
# shapes: every CUDA thread is an OS thread.
EMULATION = ROOT / "tests" / "flash_attn_emulation"
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
# (batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window, dtype): every head
# dim, both dtypes, two query blocks, Sq > Sk (rows without keys) and Sq < Sk, GQA, a window.
EMULATED_CASES = [
    (1, 70, 70, 8, 1, 64, False, (-1, -1), torch.bfloat16),
    (2, 17, 40, 4, 1, 96, True, (-1, -1), torch.float16),
    (1, 33, 33, 2, 2, 128, False, (8, 4), torch.bfloat16),
    (1, 40, 17, 2, 2, 192, True, (-1, -1), torch.float16),
    (1, 19, 23, 4, 2, 256, True, (-1, -1), torch.bfloat16),
]
# The sm_90a forward's split query blocks (fwd_split_plan): an odd number of unmasked query blocks
# over the two emulated multiprocessors. Head dim 128: 3 query blocks of 4 key tiles (600 = 3 x
# 176 + 72, the last 128 wide), 6 steps per block: block 0 takes query block 0 and the first
# half of 1, block 1 the second half and 2. Head dim 64: 5 query blocks, 0 and 1 whole, then
# 2 to 4 shared (5 tiles each: block 0 takes 7 steps, block 1 8). Head dims 256 and 192: 64-key
# tiles, 3 query blocks of 5.
EMULATED_SPLIT_CASES = [
    (1, 100, 600, 3, 1, 128, False, (-1, -1), torch.bfloat16),
    (1, 150, 520, 5, 5, 64, False, (-1, -1), torch.float16),
    (1, 70, 300, 3, 1, 256, False, (-1, -1), torch.bfloat16),
    (1, 60, 270, 3, 3, 192, False, (-1, -1), torch.float16),
]
# sm_90: head dims 64 (three consumer warpgroups), 128 (two query and key blocks, a window;
# unmasked: wide key tiles) and 256 (the wide backward's two kernels: three query and key
# blocks, GQA 4, causal, a window); Sq < Sk and Sq > Sk; GQA. Up to head dim 128 the backward
# sums dQ across key blocks with bulk reductions unless deterministic (then: the dk/dv kernel,
# then the dq kernel).
EMULATED_SM90_CASES = [
    (1, 70, 70, 4, 1, 64, True, (-1, -1), torch.bfloat16),
    # A persistent forward grid, one block per (emulated: two) multiprocessor, here with three
    # query blocks (block 0 takes two, its second starting on a later key stage).
    (3, 50, 90, 1, 1, 64, False, (-1, -1), torch.bfloat16),
    # No mask at head dim 128: the 176-key tiles, the last one computed 64 keys wide (390 =
    # 2 x 176 + 38); four items. Then 128 keys wide (450 = 2 x 176 + 98).
    (1, 130, 390, 2, 1, 128, False, (-1, -1), torch.bfloat16),
    (1, 64, 450, 1, 1, 128, False, (-1, -1), torch.float16),
    # Causal, three row tiles per head: units pair row tiles 2 and 0, and 1 is alone (its pair
    # skipped); four units over two blocks.
    (1, 300, 300, 2, 1, 128, True, (-1, -1), torch.bfloat16),
    (1, 200, 150, 2, 2, 128, False, (8, 4), torch.float16),
    (2, 17, 40, 2, 1, 128, True, (-1, -1), torch.bfloat16),
    (1, 40, 17, 2, 2, 256, True, (-1, -1), torch.float16),
    (1, 130, 150, 4, 1, 256, False, (-1, -1), torch.bfloat16),
    (2, 70, 70, 2, 2, 256, True, (-1, -1), torch.float16),
    (1, 100, 90, 2, 1, 256, False, (8, 4), torch.bfloat16),
    # The backward grids' block order (heaviest_first_block): 6 (sequence, head) pairs of 3
    # tiles each, in groups of 4 and 2 heads.
    (3, 130, 130, 2, 1, 256, True, (-1, -1), torch.float16),
    # Head dim 192: the sm_90a forward (64-key tiles) with the sm_80 backward.
    (1, 150, 130, 4, 2, 192, True, (-1, -1), torch.bfloat16),
    (2, 70, 200, 2, 1, 192, False, (-1, -1), torch.float16),
] + EMULATED_SPLIT_CASES
EMULATED_SM90_DETERMINISTIC_CASES = [
    (1, 70, 70, 4, 1, 64, True, (-1, -1), torch.bfloat16),
    (2, 17, 40, 2, 1, 128, True, (-1, -1), torch.float16),
    (1, 70, 130, 2, 1, 256, True, (-1, -1), torch.bfloat16),
    # Both kernels' grids: 6 (sequence, head) pairs in groups of 4 and 2, 2 tiles each.
    (3, 200, 200, 2, 2, 64, True, (-1, -1), torch.bfloat16),
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if HAS_GPU:
        pytest.skip("a GPU runs the kernels themselves (the cuda-kernels backend cases)")
    if shutil.which("g++") is None or not (CUDA_INCLUDE / "cuda_bf16.h").is_file():
        pytest.skip("needs g++ and the CUDA headers (CUDA_HOME)")
    build = tmp_path_factory.mktemp("flash_attn_emulation")
    kernel_src = ROOT / "kernel_src"
    sources = [(EMULATION / "emu_launch.cpp", []), (EMULATION / "emu_main.cpp", []),
               (kernel_src / "flash_attn" / "flash_attn_cuda.cu", ["-x", "c++"])]
    objects = []
    for source, language in sources:
        obj = build / f"{source.stem}.o"
        subprocess.run(["g++", "-std=c++20", "-O1", "-w", "-DTK_CUDA_SM_90A", f"-I{EMULATION}",
                        f"-I{kernel_src}",
                        f"-I{CUDA_INCLUDE}", *language, "-c", str(source), "-o", str(obj)],
                       check=True, capture_output=True)
        objects.append(str(obj))
    binary = build / "emulated_flash_attn"
    subprocess.run(["g++", *objects, "-pthread", "-o", str(binary)], check=True)
    return binary


def _run_emulated(binary, directory, leaves, dout, causal, window, varlen=None, sm=80,
                  deterministic=False, block_order="forward"):
    """(out, lse, (dq, dk, dv)) of fwd_cuda and bwd_cuda on the emulator (capability sm; blocks
    run in increasing blockIdx order, or with block_order "reverse" in decreasing order)."""
    q, k, v = leaves
    head_dim = q.shape[-1]
    if varlen is None:
        batch, seqlen_q, seqlen_k = q.shape[0], q.shape[1], k.shape[1]
        max_q, max_k = seqlen_q, seqlen_k
    else:
        cu_q, cu_k, max_q, max_k = varlen
        batch, seqlen_q, seqlen_k = cu_q.numel() - 1, q.shape[0], k.shape[0]
        cu_q.numpy().tofile(directory / "cu_seqlens_q.bin")
        cu_k.numpy().tofile(directory / "cu_seqlens_k.bin")
    dtype_code = 1 if q.dtype == torch.float16 else 2
    fields = [dtype_code, head_dim, batch, seqlen_q, seqlen_k, max_q, max_k, q.shape[-2],
              k.shape[-2], int(causal), window[0], window[1], repr(head_dim**-0.5),
              int(varlen is not None), int(deterministic)]
    (directory / "problem.txt").write_text(" ".join(map(str, fields)))
    for name, t in zip(("q", "k", "v", "dout"), (q, k, v, dout)):
        t.contiguous().view(torch.int16).numpy().tofile(directory / f"{name}.bin")
    result = subprocess.run([str(binary), str(directory)], capture_output=True, text=True,
                            env={**os.environ, "TK_EMULATED_SM": str(sm),
                                 "TK_EMULATED_BLOCK_ORDER": block_order})
    assert result.returncode == 0, result.stderr

    def load(name, shape, dtype=q.dtype):
        fp32 = dtype == torch.float32
        raw = torch.from_numpy(np.fromfile(directory / f"{name}.bin",
                                           dtype=np.float32 if fp32 else np.int16))
        return (raw if fp32 else raw.view(dtype)).view(shape)

    lse_shape = (q.shape[1], q.shape[0]) if varlen is not None else (batch, q.shape[2], seqlen_q)
    return (load("out", q.shape), load("lse", lse_shape, torch.float32),
            tuple(load(n, t.shape) for n, t in zip(("dq", "dk", "dv"), (q, k, v))))


def _emulated_id(value):
    if isinstance(value, tuple):
        return f"hdim{value[5]}-{value[1]}x{value[2]}"
    if isinstance(value, bool):
        return "deterministic" if value else "summed"
    return f"sm{value}"


@pytest.mark.parametrize(
    ("sm", "deterministic", "case"),
    [(80, False, c) for c in EMULATED_CASES] + [(90, False, c) for c in EMULATED_SM90_CASES]
    + [(90, True, c) for c in EMULATED_SM90_DETERMINISTIC_CASES],
    ids=_emulated_id)
def test_emulated_cuda_kernels_match_reference(emulator, cpu_kernel, tmp_path, sm, deterministic,
                                               case):
    batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window, dtype = case
    leaves = _qkv(batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, dtype, "cpu")
    dout = torch.randn_like(leaves[0])
    out, lse, grads = _run_emulated(emulator, tmp_path, leaves, dout, causal, window, sm=sm,
                                    deterministic=deterministic)
    _check_against_reference(cpu_kernel, leaves, out, lse, grads, dout,
                             f"emulated sm_{sm} {case}", causal=causal, window=window)


# The persistent forward (several units per block, a second on a later key stage; causal pairs)
# and the deterministic backward's grids (heaviest_first_block), on sm_90 and sm_80.
BLOCK_ORDER_CASES = [
    (90, (3, 50, 90, 1, 1, 64, False, (-1, -1), torch.bfloat16)),
    (90, (1, 300, 300, 2, 1, 128, True, (-1, -1), torch.bfloat16)),
    (90, (3, 200, 200, 2, 2, 64, True, (-1, -1), torch.bfloat16)),
    (80, (2, 17, 40, 4, 1, 96, True, (-1, -1), torch.float16)),
]


@pytest.mark.parametrize(("sm", "case"), BLOCK_ORDER_CASES,
                         ids=lambda v: _emulated_id(v) if isinstance(v, tuple) else f"sm{v}")
def test_emulated_results_do_not_depend_on_block_order(emulator, tmp_path, sm, case):
    """The forward and the deterministic backward write every element from one block in a fixed
    order: running the blocks in the opposite order changes no bit."""
    batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window, dtype = case
    leaves = _qkv(batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, dtype, "cpu")
    dout = torch.randn_like(leaves[0])
    runs = []
    for order in ("forward", "reverse"):
        directory = tmp_path / order
        directory.mkdir()
        runs.append(_run_emulated(emulator, directory, leaves, dout, causal, window, sm=sm,
                                  deterministic=True, block_order=order))
    (out, lse, grads), (out_r, lse_r, grads_r) = runs
    assert torch.equal(out.view(torch.int16), out_r.view(torch.int16))
    assert torch.equal(lse, lse_r)
    for g, g_r in zip(grads, grads_r):
        assert torch.equal(g.view(torch.int16), g_r.view(torch.int16))


@pytest.mark.parametrize("case", EMULATED_SPLIT_CASES[:2], ids=_emulated_id)
def test_emulated_split_query_blocks_do_not_depend_on_block_order(emulator, cpu_kernel, tmp_path,
                                                                   case):
    """Either half of a split query block may finish first; the other merges, with the same
    arithmetic, so running the blocks in the opposite order changes no bit of out or lse."""
    batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, causal, window, dtype = case
    leaves = _qkv(batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim, dtype, "cpu")
    dout = torch.randn_like(leaves[0])
    runs = {}
    for order in ("forward", "reverse"):
        directory = tmp_path / order
        directory.mkdir()
        runs[order] = _run_emulated(emulator, directory, leaves, dout, causal, window, sm=90,
                                    block_order=order)
    out, lse, grads = runs["reverse"]
    _check_against_reference(cpu_kernel, leaves, out, lse, grads, dout,
                             f"emulated sm_90 {case}, blocks in reverse", causal=causal,
                             window=window)
    assert torch.equal(out.view(torch.int16), runs["forward"][0].view(torch.int16))
    assert torch.equal(lse, runs["forward"][1])


@pytest.mark.parametrize("sm", [80, 90], ids=lambda v: f"sm{v}")
def test_emulated_cuda_kernels_varlen(emulator, cpu_kernel, tmp_path, sm):
    lengths_q, lengths_k = [1, 37, 0, 3, 20], [9, 37, 5, 0, 6]
    q, cu_q = _packed(lengths_q, 4, 64, torch.bfloat16, "cpu")
    k, cu_k = _packed(lengths_k, 2, 64, torch.bfloat16, "cpu")
    v = torch.randn_like(k)
    dout = torch.randn_like(q)
    varlen = (cu_q, cu_k, max(lengths_q), max(lengths_k))
    out, lse, grads = _run_emulated(emulator, tmp_path, [q, k, v], dout, True, (-1, -1), varlen,
                                    sm=sm)
    _check_against_reference(cpu_kernel, [q, k, v], out, lse, grads, dout, "emulated varlen",
                             causal=True, window=(-1, -1), cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
    assert (grads[1][sum(lengths_k[:2]):sum(lengths_k[:3])] == 0).all()


@pytest.mark.parametrize(("sm", "deterministic"), [(80, False), (90, False), (90, True)],
                         ids=lambda v: _emulated_id(v))
@pytest.mark.parametrize("head_dim", [64, 128, 256], ids=lambda v: f"hdim{v}")
def test_emulated_varlen_keeps_neighbour_sequences_apart(emulator, cpu_kernel, tmp_path, sm,
                                                          deterministic, head_dim):
    """Key and query tiles of a packed sequence run past its end into the next sequence's rows.
    Non-finite values there (inf V, NaN dout) must not reach the first sequence's outputs or
    gradients: 0 * inf is NaN, so masking the scores alone does not keep them out."""
    lengths_q, lengths_k = [21, 9], [37, 30]
    q, cu_q = _packed(lengths_q, 2, head_dim, torch.bfloat16, "cpu")
    k, cu_k = _packed(lengths_k, 1, head_dim, torch.bfloat16, "cpu")
    v = torch.randn_like(k)
    dout = torch.randn_like(q)
    v[lengths_k[0]:] = float("inf")
    k[lengths_k[0]:] = float("nan")
    q[lengths_q[0]:] = float("nan")
    dout[lengths_q[0]:] = float("nan")
    varlen = (cu_q, cu_k, max(lengths_q), max(lengths_k))
    out, lse, grads = _run_emulated(emulator, tmp_path, [q, k, v], dout, False, (-1, -1),
                                    varlen, sm=sm, deterministic=deterministic)
    first = [t[:lengths_q[0]] for t in (q,)] + [t[:lengths_k[0]] for t in (k, v)]
    first_grads = (grads[0][:lengths_q[0]], grads[1][:lengths_k[0]], grads[2][:lengths_k[0]])
    _check_against_reference(cpu_kernel, first, out[:lengths_q[0]], lse[:, :lengths_q[0]],
                             first_grads, dout[:lengths_q[0]], "first of two packed sequences",
                             causal=False, window=(-1, -1), cu_seqlens_q=cu_q[:2],
                             cu_seqlens_k=cu_k[:2])


# ---------------------------------------------------------------- generated CUDA instantiations

GENERATOR = ROOT / "kernel_src" / "flash_attn" / "generate_instantiations.py"


def _generator(*args):
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True)


def test_generated_instantiations_and_build_toml_are_up_to_date():
    result = _generator("--check")
    assert result.returncode == 0, result.stderr


def test_generator_check_notices_drift(tmp_path):
    """--check fails on an edited instantiation, a stale file and a stale build.toml table;
    writing brings the copy back in line."""
    (tmp_path / "build.toml").write_text((ROOT / "build.toml").read_text())
    assert _generator("--root", str(tmp_path)).returncode == 0
    assert _generator("--root", str(tmp_path), "--check").returncode == 0
    generated = tmp_path / "kernel_src" / "flash_attn" / "instantiations"
    first = sorted(generated.glob("*.cu"))[0]
    first.write_text(first.read_text() + "// edited\n")
    (generated / "flash_attn_fwd_hdim80_bf16.cu").write_text("")
    build_toml = tmp_path / "build.toml"
    build_toml.write_text(build_toml.read_text().replace('"9.0a"]', '"9.0a", "10.0"]'))
    result = _generator("--root", str(tmp_path), "--check")
    assert result.returncode == 1
    for name in (first.name, "flash_attn_fwd_hdim80_bf16.cu", "build.toml"):
        assert name in result.stderr
    assert _generator("--root", str(tmp_path)).returncode == 0
    assert _generator("--root", str(tmp_path), "--check").returncode == 0
    assert (tmp_path / "build.toml").read_text() == (ROOT / "build.toml").read_text()


# ---------------------------------------------------------------- integrations


class _Module(torch.nn.Module):
    is_causal = True


def _sdpa_attention_forward(module, query, key, value, scaling=None, is_causal=None):
    """transformers' sdpa_attention_forward without a mask: repeat kv heads, SDPA, transpose."""
    group = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(group, 1)
    value = value.repeat_interleave(group, 1)
    if is_causal is None:
        is_causal = query.shape[2] > 1 and getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, dropout_p=0.0,
                                                           scale=scaling, is_causal=is_causal)
    return out.transpose(1, 2).contiguous(), None


@pytest.fixture
def cpu_kernel(variant_modules):
    return variant_modules["cpu"]


# Runs in a fresh process under OMP_NUM_THREADS: the CPU variant's forward and backward on
# fixed inputs, saved for the comparison across thread counts.
_THREADS_SCRIPT = """
import sys, torch
sys.path[:0] = [sys.argv[1]]
from kernel_hub import get_local_kernel
kernel = get_local_kernel(sys.argv[2])
results = []
for batch, seqlen, heads_q, heads_k, head_dim in ((1, 300, 2, 1, 64), (2, 150, 8, 4, 64)):
    torch.manual_seed(0)
    q = torch.randn(batch, seqlen, heads_q, head_dim, requires_grad=True)
    k, v = (torch.randn(batch, seqlen, heads_k, head_dim, requires_grad=True) for _ in range(2))
    out, lse = kernel.flash_attn(q, k, v, causal=True, return_lse=True)
    results += [out, lse, *torch.autograd.grad(out, (q, k, v), torch.randn_like(out))]
torch.save([t.detach() for t in results], sys.argv[3])
"""


def test_cpu_results_do_not_depend_on_the_thread_count(built_variants, tmp_path):
    """The CPU kernels' bits with 1 and 2 OpenMP threads: both backward forms (one key head
    per pair of sequence and key head, and the per-block passes) sum in a fixed order."""
    cpu = [path for name, path in built_variants.items() if "-cpu-" in name]
    if not cpu:
        pytest.skip("no CPU variant was built")
    runs = []
    for threads in (1, 2):
        out = tmp_path / f"threads{threads}.pt"
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(ROOT / "loader"), str(cpu[0]),
                        str(out)], check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        runs.append(torch.load(out))
    for one, two in zip(*runs):
        assert torch.equal(one, two)


def test_transformers_attention_function_matches_sdpa(cpu_kernel):
    query = torch.randn(2, 8, 13, 64, dtype=torch.float64).float()
    key, value = torch.randn(2, 2, 13, 64), torch.randn(2, 2, 13, 64)
    module = _Module()
    got, weights = cpu_kernel.flash_attention_forward(module, query, key, value, None, scaling=0.2)
    expected, _ = _sdpa_attention_forward(module, query, key, value, scaling=0.2)
    assert weights is None and got.shape == (2, 13, 8, 64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    got, _ = cpu_kernel.flash_attention_forward(module, query, key, value, None, is_causal=False)
    expected, _ = _sdpa_attention_forward(module, query, key, value, is_causal=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # sliding_window w: |i - j| < w, with the causal mask.
    got, _ = cpu_kernel.flash_attention_forward(module, query, key, value, None, sliding_window=4)
    expected = cpu_kernel.attention_reference(query.transpose(1, 2), key.transpose(1, 2),
                                              value.transpose(1, 2), causal=True, window=(3, 3))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # A packed batch of two sequences (transformers' padding-free kwargs).
    cu = torch.tensor([0, 5, 13], dtype=torch.int32)
    got, _ = cpu_kernel.flash_attention_forward(module, query[:1], key[:1], value[:1], None,
                                                cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=8,
                                                max_length_k=8)
    parts = [_sdpa_attention_forward(module, t_q, t_k, t_v)[0]
             for t_q, t_k, t_v in zip(*(t[:1].split([5, 8], dim=2) for t in (query, key, value)))]
    torch.testing.assert_close(got, torch.cat(parts, 1), rtol=1e-5, atol=1e-5)

    with pytest.raises(ValueError, match="attention_mask is not supported"):
        cpu_kernel.flash_attention_forward(module, query, key, value, torch.zeros(2, 1, 13, 13))
    with pytest.raises(ValueError, match="dropout"):
        cpu_kernel.flash_attention_forward(module, query, key, value, None, dropout=0.1)


class _DiffusersStyleAttention(torch.nn.Module):
    """The attributes of diffusers' Attention that AttnProcessor2_0 reads."""

    def __init__(self, dim=128, heads=2, cross_dim=None):
        super().__init__()
        self.heads = heads
        self.to_q = torch.nn.Linear(dim, dim)
        self.to_k = torch.nn.Linear(cross_dim or dim, dim)
        self.to_v = torch.nn.Linear(cross_dim or dim, dim)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(dim, dim), torch.nn.Dropout(0.0)])
        self.spatial_norm = None
        self.group_norm = None
        self.norm_cross = None
        self.norm_q = torch.nn.LayerNorm(dim // heads)
        self.norm_k = torch.nn.LayerNorm(dim // heads)
        self.residual_connection = True
        self.rescale_output_factor = 2.0


def _attn_processor_2_0(attn, hidden_states, encoder_hidden_states=None):
    """diffusers' AttnProcessor2_0 on 3-D inputs without mask, spatial or group norm."""
    residual = hidden_states
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    encoder_hidden_states = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
                         for t in (query, key, value))
    query, key = attn.norm_q(query), attn.norm_k(key)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, dropout_p=0.0,
                                                           is_causal=False)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    return (out + residual) / attn.rescale_output_factor


def test_diffusers_processor_matches_attn_processor_2_0(cpu_kernel):
    attn = _DiffusersStyleAttention(cross_dim=32)
    hidden = torch.randn(2, 11, 128)
    context = torch.randn(2, 7, 32)
    processor = cpu_kernel.FlashAttnProcessor()
    with torch.no_grad():
        self_attn = _DiffusersStyleAttention()
        torch.testing.assert_close(processor(self_attn, hidden), _attn_processor_2_0(self_attn, hidden),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(processor(attn, hidden, context),
                                   _attn_processor_2_0(attn, hidden, context), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="attention_mask"):
        processor(attn, hidden, context, attention_mask=torch.ones(2, 7))


# ---------------------------------------------------------------- benchmark accounting


def test_benchmark_flop_count():
    assert bench_flash_attn.attention_flops((4, 32, 4096, 128), causal=False, direction="fwd") \
        == 4 * 4 * 32 * 4096 * 4096 * 128
    assert bench_flash_attn.attention_flops((4, 32, 4096, 128), causal=True, direction="fwd") \
        == 2 * 4 * 32 * 4096 * 4096 * 128
    assert bench_flash_attn.attention_flops((1, 24, 8192, 128), causal=True, direction="bwd") \
        == 5 * 24 * 8192 * 8192 * 128


def test_benchmark_deterministic_peer_sets_the_mode_for_its_backward_only():
    """ours-cuda-det's backward runs with torch.use_deterministic_algorithms on (autograd reads
    it there) and leaves it off, and its gradients are the kernel's."""
    seen = []

    class Recording(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q):
            return q * 2.0

        @staticmethod
        def backward(ctx, grad):
            seen.append(torch.are_deterministic_algorithms_enabled())
            return grad * 2.0

    class FakeCudaKernel:
        BACKEND = "cuda"

        @staticmethod
        def flash_attn(q, k, v, causal):
            return Recording.apply(q) + k + v

    assert bench_flash_attn.cuda_deterministic_peer(object(), False).skip
    peer = bench_flash_attn.cuda_deterministic_peer(FakeCudaKernel(), causal=False)
    q, k, v = (torch.randn(2, 3, 5, 4, requires_grad=True) for _ in range(3))
    dout = torch.randn(2, 3, 5, 4)
    assert not torch.are_deterministic_algorithms_enabled()
    dq, dk, dv = torch.autograd.grad(peer.fn(q, k, v), (q, k, v), dout)
    assert seen == [True]
    assert not torch.are_deterministic_algorithms_enabled()
    torch.testing.assert_close(dq, 2.0 * dout, rtol=0, atol=0)
    torch.testing.assert_close(dk, dout, rtol=0, atol=0)
    torch.testing.assert_close(dv, dout, rtol=0, atol=0)


def test_triton_tuning_times_every_configured_tile():
    """benchmarks/tune_flash_attn_triton has the tile in use among its candidates for every
    table entry, and a bench shape for every head dim it tunes."""
    spec = importlib.util.spec_from_file_location(
        "flash_attn_triton_source", ROOT / "kernel_src" / "flash_attn" / "flash_attn_triton.py")
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    for kernel, table_name in tune_flash_attn_triton.TABLES.items():
        for head_dim, config in getattr(source, table_name).items():
            assert config in tune_flash_attn_triton.CANDIDATES[kernel], (kernel, head_dim)
            assert tune_flash_attn_triton.bench_shape(head_dim)[3] == head_dim
    with pytest.raises(SystemExit):
        tune_flash_attn_triton.main(["--head-dims", "96"])


def test_cpu_benchmark_parses_shapes():
    from benchmarks import bench_flash_attn_cpu

    with pytest.raises(SystemExit):
        bench_flash_attn_cpu.main(["--shapes", "1x1024x8"])
    assert bench_flash_attn_cpu.IN_RUN_ALL is False
