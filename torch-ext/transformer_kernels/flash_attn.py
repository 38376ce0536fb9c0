"""Exact attention with FlashAttention-2's conventions: causal and sliding-window masks,
grouped-query attention, batched and variable-length (packed) sequences, forward and backward.

Semantics (every backend, and the reference):

- q [B, Sq, Hq, D], k and v [B, Sk, Hk, D] (varlen: [total, heads, D] with cu_seqlens int32
  [B + 1]); Hq must be a multiple of Hk (grouped-query / multi-query attention: query head h
  uses key/value head h // (Hq // Hk)). D is one of 64, 96, 128, 192, 256.
- softmax_scale defaults to 1 / sqrt(D). Query i may attend key j iff
  ``i + Sk - Sq - window[0] <= j <= i + Sk - Sq + window[1]`` (-1: unbounded); causal sets
  window[1] = 0, so the causal mask is aligned to the bottom right when Sq != Sk, as in
  FlashAttention-2.
- A query with no key it may attend (e.g. causal with Sq > Sk) outputs 0 and has lse = -inf,
  the log of an empty sum. (FlashAttention-2 itself stores +inf in lse for such rows; -inf is
  what torch.logsumexp and FlexAttention give, and what merging partial attention results by
  lse needs.)
- dtypes: float16 and bfloat16 everywhere; float32 for CPU tensors only. Outputs have q's
  dtype, lse is float32 [B, Hq, Sq] (varlen: [Hq, total_q]) and is not differentiable.
- q, k, v may be strided (the result of transposes or of unbinding a fused qkv) as long as
  their last dimension is contiguous; otherwise they are copied once.
- The backward is bitwise deterministic on the CPU and Triton backends (Triton computes dq in
  its own kernel, without atomics, which measured faster than atomics on an H200; the CPU
  kernels sum in a fixed order), on the CUDA sm_80 kernels and on the sm_90a kernels at head dim
  256. The sm_90a CUDA backward at head dims 64 and 128 sums dq over key blocks in fp32 with
  bulk reductions (five matrix products per step instead of seven; 1.15x-1.34x faster on an
  H100) unless asked to be deterministic, when dq has its own kernel:
  autograd passes ``torch.are_deterministic_algorithms_enabled()`` and the ``*_backward`` op
  takes the flag explicitly.

This module holds the fp32 reference, the argument checks, the fakes of every op, the public
API, and the Python backends (functional ops, autograd, Triton launchers) of the Triton variant.
"""

import math

import torch

from ._checks import (
    SUPPORTED_DTYPES,
    check_tensor_arg,
    grad_or_zeros,
    out_op_fake,
    triton_runs_on_cpu,
)
from ._ops import BACKEND, add_op_namespace_prefix, ops
from ._register import FIRST_LOAD

SUPPORTED_HEAD_DIMS = (64, 96, 128, 192, 256)


# ---------------------------------------------------------------- reference


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    window: tuple[int, int] = (-1, -1),
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
    return_lse: bool = False,
    compute_dtype: torch.dtype | None = None,
):
    """Attention in plain PyTorch with the score matrix materialized, computed in fp32 (fp64
    stays fp64; ``compute_dtype`` overrides, e.g. the input dtype for a low-precision baseline).
    Same layouts and semantics as :func:`flash_attn` / :func:`flash_attn_varlen`. Returns out in
    q's dtype (and lse in the compute dtype when ``return_lse``). Differentiable."""
    compute = compute_dtype or torch.promote_types(q.dtype, torch.float32)
    scale = q.shape[-1] ** -0.5 if softmax_scale is None else float(softmax_scale)
    left, right = window[0], (0 if causal else window[1])
    if cu_seqlens_q is None:
        out, lse = _reference_batched(q, k, v, scale, left, right, compute)
    else:
        outs, lses = [], []
        for (qs, qe), (ks, ke) in _sequence_bounds(cu_seqlens_q, cu_seqlens_k):
            o, l = _reference_batched(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], scale, left,
                                      right, compute)
            outs.append(o[0])
            lses.append(l[0])
        out = torch.cat(outs, 0) if outs else q.new_empty(q.shape, dtype=compute)
        lse = torch.cat(lses, 1) if lses else q.new_empty((q.shape[1], 0), dtype=compute)
    out = out.to(q.dtype)
    return (out, lse) if return_lse else out


def _sequence_bounds(cu_seqlens_q, cu_seqlens_k):
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    return [((cq[b], cq[b + 1]), (ck[b], ck[b + 1])) for b in range(len(cq) - 1)]


def _allowed_mask(seqlen_q: int, seqlen_k: int, left: int, right: int, device) -> torch.Tensor:
    """[Sq, Sk] bool: key j allowed for query i (window around the bottom-right diagonal)."""
    i = torch.arange(seqlen_q, device=device)[:, None] + (seqlen_k - seqlen_q)
    j = torch.arange(seqlen_k, device=device)[None, :]
    allowed = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if left >= 0:
        allowed &= j >= i - left
    if right >= 0:
        allowed &= j <= i + right
    return allowed


def _reference_probs(q, k, scale, left, right, compute):
    """(probabilities [B, Hq, Sq, Sk], lse [B, Hq, Sq], per-head-expanded k) in `compute`."""
    group = q.shape[2] // k.shape[2]
    qc = q.to(compute).transpose(1, 2)
    kc = k.to(compute).transpose(1, 2).repeat_interleave(group, 1)
    scores = (qc @ kc.transpose(-1, -2)) * scale
    allowed = _allowed_mask(q.shape[1], k.shape[1], left, right, q.device)
    has_key = allowed.any(-1)
    # Rows without any key get finite dummy scores (so no -inf - -inf appears, forward or
    # backward), then probability 0 and lse -inf.
    scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(~has_key[:, None], 0.0)
    lse = torch.logsumexp(scores, -1)
    probs = torch.exp(scores - lse[..., None]).masked_fill(~allowed, 0.0)
    return probs, lse.masked_fill(~has_key, float("-inf")), kc


def _reference_batched(q, k, v, scale, left, right, compute):
    group = q.shape[2] // k.shape[2]
    probs, lse, _ = _reference_probs(q, k, scale, left, right, compute)
    vc = v.to(compute).transpose(1, 2).repeat_interleave(group, 1)
    return (probs @ vc).transpose(1, 2), lse


def _reference_backward_batched(dout, q, k, v, scale, left, right):
    """(dq, dk, dv) in fp32 (fp64 stays fp64) by the textbook formulas."""
    compute = torch.promote_types(q.dtype, torch.float32)
    batch, _, heads_q, head_dim = q.shape
    seqlen_k, heads_k = k.shape[1], k.shape[2]
    group = heads_q // heads_k
    probs, _, kc = _reference_probs(q, k, scale, left, right, compute)
    qc = q.to(compute).transpose(1, 2)
    vc = v.to(compute).transpose(1, 2).repeat_interleave(group, 1)
    do = dout.to(compute).transpose(1, 2)
    dv = probs.transpose(-1, -2) @ do
    dp = do @ vc.transpose(-1, -2)
    ds = probs * (dp - (probs * dp).sum(-1, keepdim=True))
    dq = (ds @ kc) * scale
    dk = (ds.transpose(-1, -2) @ qc) * scale

    def per_kv_head(t):
        return t.reshape(batch, heads_k, group, seqlen_k, head_dim).sum(2).transpose(1, 2)

    return dq.transpose(1, 2), per_kv_head(dk), per_kv_head(dv)


# ---------------------------------------------------------------- public API


def flash_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    window: tuple[int, int] = (-1, -1),
    return_lse: bool = False,
):
    """Attention of q [B, Sq, Hq, D] over k, v [B, Sk, Hk, D]; returns out [B, Sq, Hq, D] (and
    lse fp32 [B, Hq, Sq] when ``return_lse``). Differentiable in q, k and v. See the module
    docstring for masks, grouped-query attention, dtypes and determinism."""
    op = "flash_attn"
    check_tensor_arg(op, "q", q)
    scale = _softmax_scale(op, q, softmax_scale)
    left, right = _window(op, window)
    out, lse = ops.flash_attn(q, k, v, scale, bool(causal), left, right)
    return (out, lse) if return_lse else out


def flash_attn_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    causal: bool = False,
    softmax_scale: float | None = None,
    window: tuple[int, int] = (-1, -1),
    return_lse: bool = False,
):
    """Attention over packed sequences: q [total_q, Hq, D], k, v [total_k, Hk, D]; sequence b
    is rows cu_seqlens[b] .. cu_seqlens[b + 1] - 1 (int32 [B + 1], starting at 0). max_seqlen_*
    must be at least every sequence's length: on CUDA tensors it sizes the launch and is not
    checked (that would need a device sync), on CPU tensors it is. Returns out [total_q, Hq, D]
    (and lse fp32 [Hq, total_q])."""
    op = "flash_attn_varlen"
    check_tensor_arg(op, "q", q)
    scale = _softmax_scale(op, q, softmax_scale)
    left, right = _window(op, window)
    out, lse = ops.flash_attn_varlen(
        q, k, v, cu_seqlens_q, cu_seqlens_k, _int_arg(op, "max_seqlen_q", max_seqlen_q),
        _int_arg(op, "max_seqlen_k", max_seqlen_k), scale, bool(causal), left, right,
    )
    return (out, lse) if return_lse else out


def _softmax_scale(op: str, q: torch.Tensor, softmax_scale) -> float:
    if softmax_scale is None:
        return q.shape[-1] ** -0.5 if q.dim() else 1.0
    if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, (int, float)) \
            or not math.isfinite(softmax_scale):
        raise ValueError(f"{op}: softmax_scale must be a finite number or None, got {softmax_scale!r}")
    return float(softmax_scale)


def _window(op: str, window) -> tuple[int, int]:
    if not isinstance(window, (tuple, list)) or len(window) != 2 \
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in window):
        raise TypeError(f"{op}: window must be a pair of ints (left, right), got {window!r}")
    if window[0] < -1 or window[1] < -1:
        raise ValueError(f"{op}: window bounds must be >= -1 (-1: unbounded), got {tuple(window)}")
    return int(window[0]), int(window[1])


def _int_arg(op: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------- argument checks
# The same checks, with the same messages, as torch-ext/flash_attn_binding.cpp.


def _check_like_q(op: str, name: str, t, q) -> None:
    check_tensor_arg(op, name, t)
    if t.device != q.device:
        raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
    if t.dtype != q.dtype:
        raise TypeError(f"{op}: {name} dtype {t.dtype} must match q dtype {q.dtype}")


def _check_qkv(op: str, q, k, v, varlen: bool) -> None:
    check_tensor_arg(op, "q", q)
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: q must be float32, float16 or bfloat16, got {q.dtype}")
    if q.device.type == "cuda" and q.dtype == torch.float32:
        raise TypeError(f"{op}: q must be float16 or bfloat16 on a GPU (float32 is supported for "
                        f"CPU tensors only), got {q.dtype}")
    _check_like_q(op, "k", k, q)
    _check_like_q(op, "v", v, q)
    rank = 3 if varlen else 4
    layout = "[total_q, heads, head_dim]" if varlen else "[batch, seqlen_q, heads, head_dim]"
    kv_layout = "[total_k, heads_k, head_dim]" if varlen else "[batch, seqlen_k, heads_k, head_dim]"
    if q.dim() != rank:
        raise ValueError(f"{op}: q must be {rank}-D {layout}, got shape {list(q.shape)}")
    if k.dim() != rank:
        raise ValueError(f"{op}: k must be {rank}-D {kv_layout}, got shape {list(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"{op}: v must have k's shape {list(k.shape)}, got {list(v.shape)}")
    head_dim = q.shape[-1]
    if head_dim not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"{op}: q has head_dim {head_dim}; supported head dims: "
                         f"{', '.join(map(str, SUPPORTED_HEAD_DIMS))}")
    if k.shape[-1] != head_dim:
        raise ValueError(f"{op}: k must have q's head_dim {head_dim}, got {k.shape[-1]}")
    if not varlen and k.shape[0] != q.shape[0]:
        raise ValueError(f"{op}: k must have q's batch size {q.shape[0]}, got {k.shape[0]}")
    heads_q, heads_k = q.shape[-2], k.shape[-2]
    if heads_k == 0 or heads_q % heads_k != 0:
        raise ValueError(f"{op}: the query heads of q ({heads_q}) must be a multiple of the "
                         f"key/value heads of k ({heads_k})")


def _check_cu_seqlens(op: str, cu_q, cu_k, q, max_seqlen_q, max_seqlen_k) -> None:
    if (cu_q is None) != (cu_k is None):
        raise ValueError(f"{op}: cu_seqlens_q and cu_seqlens_k must be given together")
    if cu_q is None:
        return
    for name, t in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        check_tensor_arg(op, name, t)
        if t.dtype != torch.int32:
            raise TypeError(f"{op}: {name} must be int32, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
        if t.dim() != 1 or t.shape[0] < 1:
            raise ValueError(f"{op}: {name} must be 1-D [batch + 1], got shape {list(t.shape)}")
        if not t.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous")
    if cu_q.shape[0] != cu_k.shape[0]:
        raise ValueError(f"{op}: cu_seqlens_q and cu_seqlens_k must have the same length "
                         f"(batch + 1), got {cu_q.shape[0]} and {cu_k.shape[0]}")
    for name, value in (("max_seqlen_q", max_seqlen_q), ("max_seqlen_k", max_seqlen_k)):
        if value < 0:
            raise ValueError(f"{op}: {name} must be >= 0, got {value}")


def _check_cu_seqlens_values(op: str, cu_q, cu_k, total_q, total_k, max_seqlen_q,
                             max_seqlen_k) -> None:
    """What the C++ CPU kernels check; only for CPU tensors (reading a CUDA one would sync)."""
    for which, cu, total, max_seqlen in (("q", cu_q, total_q, max_seqlen_q),
                                         ("k", cu_k, total_k, max_seqlen_k)):
        values = cu.tolist()
        if values[0] != 0 or values[-1] != total:
            raise ValueError(f"{op}: flash_attn: cu_seqlens_{which} must start at 0 and end at "
                             f"total_{which} ({which}.shape[0])")
        lengths = [b - a for a, b in zip(values, values[1:])]
        if any(n < 0 for n in lengths):
            raise ValueError(f"{op}: flash_attn: cu_seqlens_{which} must be non-decreasing")
        if lengths and max(lengths) > max_seqlen:
            raise ValueError(f"{op}: flash_attn: max_seqlen_{which} is smaller than a sequence "
                             f"of cu_seqlens_{which}")


def _check_scalars(op: str, softmax_scale, window_left, window_right) -> None:
    if not math.isfinite(softmax_scale):
        raise ValueError(f"{op}: softmax_scale must be finite, got {softmax_scale}")
    for name, value in (("window_left", window_left), ("window_right", window_right)):
        if value < -1:
            raise ValueError(f"{op}: {name} must be >= -1 (-1: unbounded), got {value}")


def _check_contiguous_tensor(op: str, name: str, t, q, dtype, shape) -> None:
    check_tensor_arg(op, name, t)
    if t.device != q.device:
        raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
    if t.dtype != dtype:
        raise TypeError(f"{op}: {name} must be {dtype}, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous")


def _check_last_dim_contiguous(op: str, name: str, t) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{op}: {name} must have a contiguous last dimension (stride 1), got "
                         f"strides {list(t.stride())}")


def _lse_shape(q, varlen: bool) -> tuple:
    return (q.shape[1], q.shape[0]) if varlen else (q.shape[0], q.shape[2], q.shape[1])


def _last_dim_contiguous(t):
    return t if t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous()


# ---------------------------------------------------------------- functional ops (Python)


def _check_forward(op, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                   window_left, window_right) -> None:
    _check_qkv(op, q, k, v, cu_q is not None)
    _check_cu_seqlens(op, cu_q, cu_k, q, max_seqlen_q, max_seqlen_k)
    _check_scalars(op, softmax_scale, window_left, window_right)


def _forward(op, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
             window_left, window_right):
    _check_forward(op, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                   window_left, window_right)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(_lse_shape(q, cu_q is not None), dtype=torch.float32, device=q.device)
    ops.flash_attn_fwd_out(
        out, lse, _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v),
        cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left, window_right,
    )
    return out, lse


def _flash_attn(q, k, v, softmax_scale, causal, window_left, window_right):
    return _forward("flash_attn", q, k, v, None, None, 0, 0, softmax_scale, causal, window_left,
                    window_right)


def _flash_attn_varlen(q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                       window_left, window_right):
    return _forward("flash_attn_varlen", q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                    softmax_scale, causal, window_left, window_right)


def _flash_attn_backward(dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                         softmax_scale, causal, window_left, window_right, deterministic):
    op = "flash_attn_backward"
    _check_backward(op, dout, q, k, v, out, cu_q, cu_k, max_seqlen_q, max_seqlen_k)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    ops.flash_attn_bwd_out(
        dq, dk, dv, _last_dim_contiguous(dout), _last_dim_contiguous(q), _last_dim_contiguous(k),
        _last_dim_contiguous(v), out.contiguous(), lse.contiguous(), cu_q, cu_k, max_seqlen_q,
        max_seqlen_k, softmax_scale, causal, window_left, window_right, deterministic,
    )
    return dq, dk, dv


def _check_backward(op, dout, q, k, v, out, cu_q, cu_k, max_seqlen_q, max_seqlen_k) -> None:
    _check_qkv(op, q, k, v, cu_q is not None)
    _check_cu_seqlens(op, cu_q, cu_k, q, max_seqlen_q, max_seqlen_k)
    _check_like_q(op, "dout", dout, q)
    _check_like_q(op, "out", out, q)


# ---------------------------------------------------------------- fakes


def _flash_attn_fake(q, k, v, softmax_scale, causal, window_left, window_right):
    _check_forward("flash_attn", q, k, v, None, None, 0, 0, softmax_scale, window_left,
                   window_right)
    return q.new_empty(q.shape), q.new_empty(_lse_shape(q, False), dtype=torch.float32)


def _flash_attn_varlen_fake(q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                            causal, window_left, window_right):
    _check_forward("flash_attn_varlen", q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                   softmax_scale, window_left, window_right)
    return q.new_empty(q.shape), q.new_empty(_lse_shape(q, True), dtype=torch.float32)


def _flash_attn_backward_fake(dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                              softmax_scale, causal, window_left, window_right, deterministic):
    _check_backward("flash_attn_backward", dout, q, k, v, out, cu_q, cu_k, max_seqlen_q,
                    max_seqlen_k)
    return q.new_empty(q.shape), k.new_empty(k.shape), k.new_empty(k.shape)


def _register_fakes() -> None:
    for name, fake in (
        ("flash_attn", _flash_attn_fake),
        ("flash_attn_varlen", _flash_attn_varlen_fake),
        ("flash_attn_backward", _flash_attn_backward_fake),
        ("flash_attn_fwd_out", out_op_fake),
        ("flash_attn_bwd_out", out_op_fake),
    ):
        torch.library.register_fake(add_op_namespace_prefix(name))(fake)


# ---------------------------------------------------------------- autograd (Python variants)


def _setup_flash_attn(ctx, inputs, output):
    q, k, v, softmax_scale, causal, window_left, window_right = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.mark_non_differentiable(lse)
    ctx.set_materialize_grads(False)
    ctx.attrs = (0, 0, softmax_scale, causal, window_left, window_right)


def _setup_flash_attn_varlen(ctx, inputs, output):
    q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal, left, right = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
    ctx.mark_non_differentiable(lse)
    ctx.set_materialize_grads(False)
    ctx.attrs = (max_seqlen_q, max_seqlen_k, softmax_scale, causal, left, right)


def _grad(ctx, dout, cu_q, cu_k, attrs):
    q, k, v, out, lse = ctx.saved_tensors[:5]
    return ops.flash_attn_backward(grad_or_zeros(dout, out), q, k, v, out, lse, cu_q, cu_k, *attrs,
                                   torch.are_deterministic_algorithms_enabled())


def _grad_flash_attn(ctx, dout, _dlse):
    dq, dk, dv = _grad(ctx, dout, None, None, ctx.attrs)
    return dq, dk, dv, None, None, None, None


def _grad_flash_attn_varlen(ctx, dout, _dlse):
    cu_q, cu_k = ctx.saved_tensors[5:]
    dq, dk, dv = _grad(ctx, dout, cu_q, cu_k, ctx.attrs)
    return (dq, dk, dv) + (None,) * 8


def _register_python_functional_ops() -> None:
    """Python versions of what the C++ binding registers for the functional ops: used by
    pure-Python (Triton) variants, which have no extension."""
    for name, impl in (
        ("flash_attn", _flash_attn),
        ("flash_attn_varlen", _flash_attn_varlen),
        ("flash_attn_backward", _flash_attn_backward),
    ):
        torch.library.impl(add_op_namespace_prefix(name), "CompositeExplicitAutograd")(impl)
    torch.library.register_autograd(
        add_op_namespace_prefix("flash_attn"), _grad_flash_attn, setup_context=_setup_flash_attn
    )
    torch.library.register_autograd(
        add_op_namespace_prefix("flash_attn_varlen"),
        _grad_flash_attn_varlen,
        setup_context=_setup_flash_attn_varlen,
    )


# ---------------------------------------------------------------- out-op backends (Python)


def _check_fwd_out(op, out, lse, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                   softmax_scale, window_left, window_right) -> None:
    """Every check the C++ out op makes, so a Python backend never launches on bad tensors."""
    varlen = cu_q is not None or cu_k is not None
    _check_qkv(op, q, k, v, varlen)
    _check_cu_seqlens(op, cu_q, cu_k, q, max_seqlen_q, max_seqlen_k)
    _check_scalars(op, softmax_scale, window_left, window_right)
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_last_dim_contiguous(op, name, t)
    _check_contiguous_tensor(op, "out", out, q, q.dtype, q.shape)
    _check_contiguous_tensor(op, "lse", lse, q, torch.float32, _lse_shape(q, varlen))
    if varlen and q.device.type == "cpu":
        _check_cu_seqlens_values(op, cu_q, cu_k, q.shape[0], k.shape[0], max_seqlen_q,
                                 max_seqlen_k)


def _register_python_backend(dispatch_key: str, fwd, bwd) -> None:
    def fwd_out(out, lse, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                window_left, window_right):
        _check_fwd_out("flash_attn_fwd_out", out, lse, q, k, v, cu_q, cu_k, max_seqlen_q,
                       max_seqlen_k, softmax_scale, window_left, window_right)
        fwd(out, lse, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
            window_left, window_right)

    def bwd_out(dq, dk, dv, dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                softmax_scale, causal, window_left, window_right, deterministic):
        op = "flash_attn_bwd_out"
        _check_fwd_out(op, out, lse, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                       softmax_scale, window_left, window_right)
        _check_like_q(op, "dout", dout, q)
        if dout.shape != q.shape:
            raise ValueError(f"{op}: dout must have q's shape {list(q.shape)}, got "
                             f"{list(dout.shape)}")
        _check_last_dim_contiguous(op, "dout", dout)
        _check_contiguous_tensor(op, "dq", dq, q, q.dtype, q.shape)
        _check_contiguous_tensor(op, "dk", dk, q, q.dtype, k.shape)
        _check_contiguous_tensor(op, "dv", dv, q, q.dtype, k.shape)
        bwd(dq, dk, dv, dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
            softmax_scale, causal, window_left, window_right, deterministic)

    torch.library.impl(add_op_namespace_prefix("flash_attn_fwd_out"), dispatch_key)(fwd_out)
    torch.library.impl(add_op_namespace_prefix("flash_attn_bwd_out"), dispatch_key)(bwd_out)


def _reference_fwd_out(out, lse, q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                       causal, window_left, window_right):
    o, l = attention_reference(q, k, v, causal, softmax_scale, (window_left, window_right), cu_q,
                               cu_k, return_lse=True)
    out.copy_(o)
    lse.copy_(l)


def _reference_bwd_out(dq, dk, dv, dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_q,
                       max_seqlen_k, softmax_scale, causal, window_left, window_right,
                       deterministic):
    right = 0 if causal else window_right
    if cu_q is None:
        grads = _reference_backward_batched(dout, q, k, v, softmax_scale, window_left, right)
        for dst, src in zip((dq, dk, dv), grads):
            dst.copy_(src)
        return
    for (qs, qe), (ks, ke) in _sequence_bounds(cu_q, cu_k):
        grads = _reference_backward_batched(dout[None, qs:qe], q[None, qs:qe], k[None, ks:ke],
                                            v[None, ks:ke], softmax_scale, window_left, right)
        for dst, src in zip((dq[qs:qe], dk[ks:ke], dv[ks:ke]), grads):
            dst.copy_(src[0])


def _register_triton_backend() -> None:
    from . import flash_attn_triton

    _register_python_functional_ops()
    _register_python_backend("CUDA", flash_attn_triton.attention_fwd, flash_attn_triton.attention_bwd)
    if triton_runs_on_cpu():
        _register_python_backend("CPU", flash_attn_triton.attention_fwd,
                                 flash_attn_triton.attention_bwd)
    else:
        _register_python_backend("CPU", _reference_fwd_out, _reference_bwd_out)


if FIRST_LOAD:
    _register_fakes()
    if BACKEND == "triton":
        _register_triton_backend()
