"""Exact attention (FlashAttention-2 style) forward and backward in Triton, with plain launchers.

Semantics are those of kernel_src/flash_attn/flash_attn.h: scores s = softmax_scale * q.k over
the allowed keys (window (left, right) around the bottom-right diagonal, -1 unbounded, causal
= right bound 0), lse in natural log, a query with no allowed key gives out 0 and lse -inf;
grouped-query attention maps query head h to key/value head h // group.

Layouts: batched q/out [B, Sq, Hq, D], k/v [B, Sk, Hk, D], lse [B, Hq, Sq]; varlen (cu_seqlens
int32 [B + 1]) q/out [total_q, Hq, D], k/v [total_k, Hk, D], lse [Hq, total_q]. q, k, v, dout
may be strided (last dim contiguous); out, lse, dq, dk, dv are contiguous.

Forward: one program per (block of BLOCK_M queries, batch, head). Scores are pre-multiplied by
softmax_scale * log2(e) so the online softmax uses exp2. The key blocks a query block may see
are split into the blocks that need a mask (window or causal edges, the last partial block) and
the blocks fully inside every row's window, which run without mask arithmetic; blocks outside
the window are never visited.

Backward: delta = rowsum(dout * out) first; then one program per (block of BLOCK_N keys, batch,
key head) accumulates dk and dv in registers over the group's query heads and the query blocks
that see its keys; dq comes from a separate kernel with one program per query block walking
the keys in order (7 matmuls per tile pair in all, against 5 with dq added by fp32 atomics from
the dk/dv program). No atomics anywhere, so every gradient is bitwise reproducible; and on an
H200 (bf16, commit da62187) the atomic form was the slower one on all six benchmark cases,
180-212 against 222-267 TFLOP/s.

fp32 inputs are supported for CPU tensors under the interpreter (exact fp32 dots, no TF32);
on GPUs the public ops take fp16 and bf16 only.
"""

import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
_LOG2E = tl.constexpr(LOG2E)
_LN2 = tl.constexpr(0.6931471805599453)
# Triton chooses the interpreter from this variable when the kernels are first defined.
_INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")

# Tile configurations for sm_90 (H100/H200), per padded head dim (96 runs as 128, 192 as 256):
#   forward, dq:  (BLOCK_M queries, BLOCK_N keys per step, num_warps, num_stages)
#   dk/dv:        (BLOCK_M queries per step, BLOCK_N keys per program, num_warps, num_stages)
# The forward at 256 and dk/dv at 64 are the fastest of benchmarks/tune_flash_attn_triton's
# sweep on an H100 (Triton 3.6; forward 256: 497 TFLOP/s against 253 for (64, 64, 8, 2), the
# largest tile that does not spill by ptxas's count; dk/dv 64: 278 against 268 for
# (32, 128, 8, 3)). The rest were chosen from ptxas's report for Triton 3.8's sm_90 code: every
# one uses wgmma and cp.async pipelining and none spills registers, except dk/dv at 256 (about
# 24 bytes), with the largest tiles that allow it, since each key/value (forward) or
# query/dout (backward) tile loaded is reused BLOCK_M (BLOCK_N) times; dk/dv keep k, v and two
# fp32 [BLOCK_N, D] accumulators for the whole program, hence the thin BLOCK_M there.
FWD_CONFIGS = {
    64: (128, 64, 4, 3),
    128: (128, 64, 8, 3),
    256: (128, 64, 8, 2),
}
DKDV_CONFIGS = {
    64: (64, 128, 8, 2),
    128: (16, 128, 8, 2),
    256: (16, 64, 8, 2),
}
DQ_CONFIGS = {
    64: (128, 64, 8, 3),
    128: (128, 64, 8, 2),
    256: (64, 64, 8, 2),
}
DELTA_BLOCK_M = 64
# Under the interpreter (CPU tensors): small tiles, so tiny test shapes still cross several
# blocks, masked and unmasked.
INTERPRETER_BLOCK = 16


# ---------------------------------------------------------------- helpers


@triton.jit
def _dot(a, b):
    # fp32 operands only occur under the interpreter: keep them exact (no TF32). Triton 3.8's
    # interpreter multiplies bf16 operands as their raw uint16 bits, so it gets them as fp32:
    # the products of two bf16 values are exact in fp32 either way.
    if a.dtype == tl.float32:
        return tl.dot(a, b, input_precision="ieee")
    elif _INTERPRETED and a.dtype == tl.bfloat16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _dot_acc(a, b, acc):
    if a.dtype == tl.float32:
        return tl.dot(a, b, acc, input_precision="ieee")
    elif _INTERPRETED and a.dtype == tl.bfloat16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def _load_tile(ptrs, row_ok, col_ok, CHECK_ROWS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """A 2-D tile; row_ok [R, 1] and col_ok [1, C] are only evaluated when checked."""
    if CHECK_ROWS:
        if CHECK_COLS:
            return tl.load(ptrs, mask=row_ok & col_ok, other=0.0)
        else:
            return tl.load(ptrs, mask=row_ok, other=0.0)
    else:
        if CHECK_COLS:
            return tl.load(ptrs, mask=col_ok, other=0.0)
        else:
            return tl.load(ptrs)


@triton.jit
def _sequence(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN: tl.constexpr):
    """(first row, length) of sequence b for queries and keys, int32. Batched rows count from
    the start of batch entry b (its offset comes from the batch stride); varlen rows from the
    start of the packed tensor (batch stride 0)."""
    if IS_VARLEN:
        q_start = tl.load(CU_Q + b)
        q_end = tl.load(CU_Q + b + 1)
        k_start = tl.load(CU_K + b)
        k_end = tl.load(CU_K + b + 1)
    else:
        q_start = b * 0
        q_end = q_start + seqlen_q
        k_start = q_start
        k_end = k_start + seqlen_k
    return q_start, q_end - q_start, k_start, k_end - k_start


@triton.jit
def _base(b, row_start, head, stride_b, stride_row, stride_head):
    """int64 element offset of (b, row_start, head): sequence bases can exceed 2**31."""
    return (b.to(tl.int64) * stride_b + row_start.to(tl.int64) * stride_row
            + head.to(tl.int64) * stride_head)


@triton.jit
def _allowed(rows, cols, q_len, k_len, diag, window_left, window_right):
    """rows, cols broadcastable 2-D index tensors: valid and inside the window."""
    shifted = rows + diag
    ok = (rows < q_len) & (cols < k_len)
    ok = ok & ((window_left < 0) | (cols >= shifted - window_left))
    ok = ok & ((window_right < 0) | (cols <= shifted + window_right))
    return ok


@triton.jit
def _split(lo, hi, full_lo, full_hi, limit, BLOCK: tl.constexpr):
    """Blocks of BLOCK covering [lo, hi) (lo >= 0), in two sets: the blocks inside
    [full_lo, min(full_hi, limit)), which need no mask, and the others before and after them.
    Returns (first unmasked block start, unmasked count, first masked block start, masked count
    before the unmasked ones, first masked start after them, masked count in all); block
    starts are multiples of BLOCK."""
    start = (lo // BLOCK) * BLOCK
    u0 = tl.minimum(tl.maximum(tl.cdiv(tl.maximum(full_lo, 0), BLOCK) * BLOCK, start), hi)
    # A negative bound truncates toward 0 here; the maximum with u0 (>= 0) makes that harmless.
    u1 = tl.maximum((tl.minimum(full_hi, limit) // BLOCK) * BLOCK, u0)
    # u0 is aligned or equal to hi (then u1 = hi too): the masked blocks tile [start, u0) and
    # [u1, hi) exactly.
    n_before = tl.cdiv(tl.maximum(u0 - start, 0), BLOCK)
    n_after = tl.cdiv(tl.maximum(hi - u1, 0), BLOCK)
    return u0, (u1 - u0) // BLOCK, start, n_before, u1, n_before + n_after


@triton.jit
def _block_start(i, first_a, count_a, first_b, BLOCK: tl.constexpr, MASKED: tl.constexpr):
    """Start of the i-th block of a loop: unmasked loops walk one run of blocks; masked loops
    walk the count_a blocks from first_a, then those from first_b."""
    if MASKED:
        return tl.where(i < count_a, first_a + i * BLOCK, first_b + (i - count_a) * BLOCK)
    else:
        return first_a + i * BLOCK


@triton.jit
def _key_blocks(start_m, q_len, k_len, window_left, window_right, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr):
    """The key blocks the query block at start_m sees, split as _split does."""
    first = start_m
    last = tl.minimum(start_m + BLOCK_M, q_len) - 1
    diag = k_len - q_len
    lo = tl.where(window_left >= 0, tl.maximum(first + diag - window_left, 0), 0)
    hi = tl.where(window_right >= 0, tl.minimum(last + diag + window_right + 1, k_len), k_len)
    full_lo = tl.where(window_left >= 0, last + diag - window_left, 0)
    full_hi = tl.where(window_right >= 0, first + diag + window_right + 1, k_len)
    return _split(lo, hi, full_lo, full_hi, k_len, BLOCK_N)


@triton.jit
def _query_blocks(start_n, q_len, k_len, window_left, window_right, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr):
    """The query blocks that see the key block at start_n, split as _split does. A partial
    last key block is all masked (its padding keys must not contribute)."""
    first = start_n
    last = tl.minimum(start_n + BLOCK_N, k_len) - 1
    diag = k_len - q_len
    lo = tl.where(window_right >= 0, tl.maximum(first - diag - window_right, 0), 0)
    hi = tl.where(window_left >= 0, tl.minimum(last - diag + window_left + 1, q_len), q_len)
    full_lo = tl.where(window_right >= 0, last - diag - window_right, 0)
    full_hi = tl.where(window_left >= 0, first - diag + window_left + 1, q_len)
    full_hi = tl.where(start_n + BLOCK_N > k_len, 0, full_hi)
    return _split(lo, hi, full_lo, full_hi, q_len, BLOCK_M)


# Sizes and window bounds are not specialized: Triton would otherwise compile a kernel per
# combination of "== 1" and "divisible by 16" over them (every test shape a new compile), and
# a window bound of 1 would become a constexpr. Tensor strides are, for aligned vector loads.
_SIZE_ARGS = ["stride_lb", "stride_lh", "seqlen_q", "seqlen_k", "group", "window_left",
              "window_right"]
_FWD_NO_SPECIALIZE = _SIZE_ARGS + ["heads_q", "num_m_blocks"]
_DKDV_NO_SPECIALIZE = _SIZE_ARGS + ["heads_k", "num_n_blocks"]


# ---------------------------------------------------------------- forward


@triton.jit
def _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, rows, offs_n, offs_d,
               first_a, count_a, first_b, count, q_len, k_len, window_left, window_right,
               scale_log2, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
               MASKED: tl.constexpr):
    diag = k_len - q_len
    d_ok = offs_d[None, :] < HEAD_DIM
    for i in range(0, count):
        start_n = _block_start(i, first_a, count_a, first_b, BLOCK_N, MASKED)
        cols = start_n + offs_n
        k = _load_tile(k_base + cols[:, None] * stride_kn + offs_d[None, :], cols[:, None] < k_len,
                       d_ok, MASKED, BLOCK_D != HEAD_DIM)
        s = _dot(q, tl.trans(k)) * scale_log2
        if MASKED:
            ok = _allowed(rows[:, None], cols[None, :], q_len, k_len, diag, window_left,
                          window_right)
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with no allowed key so far keeps m = -inf; subtract 0 instead (p = 0).
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = m_new
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = _load_tile(v_base + cols[:, None] * stride_vn + offs_d[None, :], cols[:, None] < k_len,
                       d_ok, MASKED, BLOCK_D != HEAD_DIM)
        acc = _dot_acc(p.to(v.dtype), v, acc)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit(do_not_specialize=_FWD_NO_SPECIALIZE)
def _attn_fwd_kernel(
    Q, K, V, OUT, LSE, CU_Q, CU_K,
    stride_qb, stride_qm, stride_qh, stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh, stride_ob, stride_om, stride_oh, stride_lb, stride_lh,
    heads_q, group, seqlen_q, seqlen_k, num_m_blocks, scale_log2, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    pid = tl.program_id(0)
    # Consecutive programs share (batch, head), so its keys and values are reused from L2; the
    # last query blocks (most keys under a causal mask) start first.
    m_block = num_m_blocks - 1 - pid % num_m_blocks
    bh = pid // num_m_blocks
    b = bh // heads_q
    h = bh % heads_q
    kv_h = h // group
    q_start, q_len, k_start, k_len = _sequence(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    start_m = m_block * BLOCK_M
    if start_m >= q_len:
        return

    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < HEAD_DIM
    q_ptrs = Q + _base(b, q_start, h, stride_qb, stride_qm, stride_qh) \
        + rows[:, None] * stride_qm + offs_d[None, :]
    q = _load_tile(q_ptrs, rows[:, None] < q_len, d_ok, True, BLOCK_D != HEAD_DIM)
    # Scalar bases; the tiles' pointers are formed inside the loops (a [BLOCK_N, BLOCK_D]
    # pointer tensor kept live across a loop costs 2 registers per element and thread).
    k_base = K + _base(b, k_start, kv_h, stride_kb, stride_kn, stride_kh)
    v_base = V + _base(b, k_start, kv_h, stride_vb, stride_vn, stride_vh)

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    # Two loops (each software-pipelined; a third one costs registers): the blocks inside every
    # row's window without mask arithmetic, then the edge blocks with it.
    u0, n_full, start, n_before, u1, n_masked = _key_blocks(
        start_m, q_len, k_len, window_left, window_right, BLOCK_M, BLOCK_N)
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, rows,
                               offs_n, offs_d, u0, n_full, u0, n_full, q_len, k_len, window_left,
                               window_right, scale_log2, HEAD_DIM, BLOCK_D, BLOCK_N, False)
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, rows,
                               offs_n, offs_d, start, n_before, u1, n_masked, q_len, k_len,
                               window_left, window_right, scale_log2, HEAD_DIM, BLOCK_D, BLOCK_N,
                               True)

    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * _LN2)
    row_ok = rows < q_len
    o_ptrs = OUT + _base(b, q_start, h, stride_ob, stride_om, stride_oh) \
        + rows[:, None] * stride_om + offs_d[None, :]
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & d_ok)
    lse_ptrs = LSE + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start + rows
    tl.store(lse_ptrs, lse, mask=row_ok)


# ---------------------------------------------------------------- backward


@triton.jit(do_not_specialize=["stride_lb", "stride_lh", "heads_q", "seqlen_q", "num_m_blocks"])
def _attn_bwd_delta_kernel(
    OUT, DOUT, DELTA, CU_Q,
    stride_ob, stride_om, stride_oh, stride_dob, stride_dom, stride_doh, stride_lb, stride_lh,
    heads_q, seqlen_q, num_m_blocks,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    pid = tl.program_id(0)
    m_block = pid % num_m_blocks
    bh = pid // num_m_blocks
    b = bh // heads_q
    h = bh % heads_q
    q_start, q_len, _k_start, _k_len = _sequence(CU_Q, CU_Q, b, seqlen_q, 0, IS_VARLEN)
    start_m = m_block * BLOCK_M
    if start_m >= q_len:
        return
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    ok = (rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(OUT + _base(b, q_start, h, stride_ob, stride_om, stride_oh)
                + rows[:, None] * stride_om + offs_d[None, :], mask=ok, other=0.0)
    do = tl.load(DOUT + _base(b, q_start, h, stride_dob, stride_dom, stride_doh)
                 + rows[:, None] * stride_dom + offs_d[None, :], mask=ok, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start + rows,
             delta, mask=rows < q_len)


@triton.jit
def _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_ptr, delta_ptr, stride_qm,
                stride_dom, cols, offs_m, offs_d, first_a, count_a, first_b, count,
                q_len, k_len, window_left, window_right, scale_log2,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
                MASKED: tl.constexpr):
    diag = k_len - q_len
    d_ok = offs_d[None, :] < HEAD_DIM
    for i in range(0, count):
        start_m = _block_start(i, first_a, count_a, first_b, BLOCK_M, MASKED)
        rows = start_m + offs_m
        row_ok = rows < q_len
        q = _load_tile(q_base + rows[:, None] * stride_qm + offs_d[None, :], row_ok[:, None],
                       d_ok, MASKED, BLOCK_D != HEAD_DIM)
        do = _load_tile(do_base + rows[:, None] * stride_dom + offs_d[None, :], row_ok[:, None],
                        d_ok, MASKED, BLOCK_D != HEAD_DIM)
        if MASKED:
            lse = tl.load(lse_ptr + rows, mask=row_ok, other=float("inf"))
            delta = tl.load(delta_ptr + rows, mask=row_ok, other=0.0)
        else:
            lse = tl.load(lse_ptr + rows)
            delta = tl.load(delta_ptr + rows)
        # Rows without any allowed key have lse = -inf: +inf makes their probabilities 0.
        lse_log2 = tl.where(lse == float("-inf"), float("inf"), lse * _LOG2E)
        p_t = tl.math.exp2(_dot(k, tl.trans(q)) * scale_log2 - lse_log2[None, :])
        if MASKED:
            ok = _allowed(rows[None, :], cols[:, None], q_len, k_len, diag, window_left,
                          window_right)
            p_t = tl.where(ok, p_t, 0.0)
        dv = _dot_acc(p_t.to(do.dtype), do, dv)
        dp_t = _dot(v, tl.trans(do))
        ds_t = p_t * (dp_t - delta[None, :])
        dk = _dot_acc(ds_t.to(q.dtype), q, dk)
    return dk, dv


@triton.jit(do_not_specialize=_DKDV_NO_SPECIALIZE)
def _attn_bwd_dkdv_kernel(
    Q, K, V, DOUT, LSE, DELTA, DK, DV, CU_Q, CU_K,
    stride_qb, stride_qm, stride_qh, stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh, stride_dob, stride_dom, stride_doh,
    stride_dkb, stride_dkn, stride_dkh, stride_lb, stride_lh,
    heads_k, group, seqlen_q, seqlen_k, num_n_blocks, scale_log2, softmax_scale,
    window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    pid = tl.program_id(0)
    n_block = pid % num_n_blocks
    bh = pid // num_n_blocks
    b = bh // heads_k
    kv_h = bh % heads_k
    q_start, q_len, k_start, k_len = _sequence(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    start_n = n_block * BLOCK_N
    if start_n >= k_len:
        return

    cols = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < HEAD_DIM
    col_ok = cols[:, None] < k_len
    k = _load_tile(K + _base(b, k_start, kv_h, stride_kb, stride_kn, stride_kh)
                   + cols[:, None] * stride_kn + offs_d[None, :], col_ok, d_ok, True,
                   BLOCK_D != HEAD_DIM)
    v = _load_tile(V + _base(b, k_start, kv_h, stride_vb, stride_vn, stride_vh)
                   + cols[:, None] * stride_vn + offs_d[None, :], col_ok, d_ok, True,
                   BLOCK_D != HEAD_DIM)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    u0, n_full, start, n_before, u1, n_masked = _query_blocks(
        start_n, q_len, k_len, window_left, window_right, BLOCK_M, BLOCK_N)
    for g in range(0, group):
        h = kv_h * group + g
        q_base = Q + _base(b, q_start, h, stride_qb, stride_qm, stride_qh)
        do_base = DOUT + _base(b, q_start, h, stride_dob, stride_dom, stride_doh)
        lse_ptr = LSE + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start
        delta_ptr = DELTA + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start
        dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_ptr, delta_ptr,
                             stride_qm, stride_dom, cols, offs_m, offs_d, u0, n_full,
                             u0, n_full, q_len, k_len, window_left, window_right, scale_log2,
                             HEAD_DIM, BLOCK_D, BLOCK_M, False)
        dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_ptr, delta_ptr,
                             stride_qm, stride_dom, cols, offs_m, offs_d, start,
                             n_before, u1, n_masked, q_len, k_len, window_left, window_right,
                             scale_log2, HEAD_DIM, BLOCK_D, BLOCK_M, True)

    ok = col_ok & d_ok
    out_offsets = cols[:, None] * stride_dkn + offs_d[None, :]
    tl.store(DK + _base(b, k_start, kv_h, stride_dkb, stride_dkn, stride_dkh) + out_offsets,
             (dk * softmax_scale).to(DK.dtype.element_ty), mask=ok)
    tl.store(DV + _base(b, k_start, kv_h, stride_dkb, stride_dkn, stride_dkh) + out_offsets,
             dv.to(DV.dtype.element_ty), mask=ok)


@triton.jit
def _dq_inner(dq, q, do, lse_log2, delta, k_base, v_base, stride_kn, stride_vn, rows, offs_n,
              offs_d, first_a, count_a, first_b, count, q_len, k_len, window_left,
              window_right, scale_log2, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
              BLOCK_N: tl.constexpr, MASKED: tl.constexpr):
    diag = k_len - q_len
    d_ok = offs_d[None, :] < HEAD_DIM
    for i in range(0, count):
        start_n = _block_start(i, first_a, count_a, first_b, BLOCK_N, MASKED)
        cols = start_n + offs_n
        k = _load_tile(k_base + cols[:, None] * stride_kn + offs_d[None, :], cols[:, None] < k_len,
                       d_ok, MASKED, BLOCK_D != HEAD_DIM)
        v = _load_tile(v_base + cols[:, None] * stride_vn + offs_d[None, :], cols[:, None] < k_len,
                       d_ok, MASKED, BLOCK_D != HEAD_DIM)
        p = tl.math.exp2(_dot(q, tl.trans(k)) * scale_log2 - lse_log2[:, None])
        if MASKED:
            ok = _allowed(rows[:, None], cols[None, :], q_len, k_len, diag, window_left,
                          window_right)
            p = tl.where(ok, p, 0.0)
        dp = _dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq = _dot_acc(ds.to(k.dtype), k, dq)
    return dq


@triton.jit(do_not_specialize=_FWD_NO_SPECIALIZE)
def _attn_bwd_dq_kernel(
    Q, K, V, DOUT, LSE, DELTA, DQ, CU_Q, CU_K,
    stride_qb, stride_qm, stride_qh, stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh, stride_dob, stride_dom, stride_doh,
    stride_dqb, stride_dqm, stride_dqh, stride_lb, stride_lh,
    heads_q, group, seqlen_q, seqlen_k, num_m_blocks, scale_log2, softmax_scale,
    window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    pid = tl.program_id(0)
    m_block = num_m_blocks - 1 - pid % num_m_blocks
    bh = pid // num_m_blocks
    b = bh // heads_q
    h = bh % heads_q
    kv_h = h // group
    q_start, q_len, k_start, k_len = _sequence(CU_Q, CU_K, b, seqlen_q, seqlen_k, IS_VARLEN)
    start_m = m_block * BLOCK_M
    if start_m >= q_len:
        return

    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < HEAD_DIM
    row_ok = rows < q_len
    q = _load_tile(Q + _base(b, q_start, h, stride_qb, stride_qm, stride_qh)
                   + rows[:, None] * stride_qm + offs_d[None, :], row_ok[:, None], d_ok, True,
                   BLOCK_D != HEAD_DIM)
    do = _load_tile(DOUT + _base(b, q_start, h, stride_dob, stride_dom, stride_doh)
                    + rows[:, None] * stride_dom + offs_d[None, :], row_ok[:, None], d_ok, True,
                    BLOCK_D != HEAD_DIM)
    lse_offset = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start
    lse = tl.load(LSE + lse_offset + rows, mask=row_ok, other=float("inf"))
    lse_log2 = tl.where(lse == float("-inf"), float("inf"), lse * _LOG2E)
    delta = tl.load(DELTA + lse_offset + rows, mask=row_ok, other=0.0)
    k_base = K + _base(b, k_start, kv_h, stride_kb, stride_kn, stride_kh)
    v_base = V + _base(b, k_start, kv_h, stride_vb, stride_vn, stride_vh)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    u0, n_full, start, n_before, u1, n_masked = _key_blocks(
        start_m, q_len, k_len, window_left, window_right, BLOCK_M, BLOCK_N)
    dq = _dq_inner(dq, q, do, lse_log2, delta, k_base, v_base, stride_kn, stride_vn, rows,
                   offs_n, offs_d, u0, n_full, u0, n_full, q_len, k_len, window_left,
                   window_right, scale_log2, HEAD_DIM, BLOCK_D, BLOCK_N, False)
    dq = _dq_inner(dq, q, do, lse_log2, delta, k_base, v_base, stride_kn, stride_vn, rows,
                   offs_n, offs_d, start, n_before, u1, n_masked, q_len, k_len, window_left,
                   window_right, scale_log2, HEAD_DIM, BLOCK_D, BLOCK_N, True)
    tl.store(DQ + _base(b, q_start, h, stride_dqb, stride_dqm, stride_dqh)
             + rows[:, None] * stride_dqm + offs_d[None, :],
             (dq * softmax_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None] & d_ok)


# ---------------------------------------------------------------- launch configuration


def _padded_head_dim(head_dim: int) -> int:
    return triton.next_power_of_2(head_dim)


def _config(table: dict, head_dim: int, device: torch.device) -> tuple:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for this head dim and device."""
    if device.type != "cuda":
        return INTERPRETER_BLOCK, INTERPRETER_BLOCK, 4, 1
    return table[max(64, _padded_head_dim(head_dim))]


class _Layout:
    """Sizes and strides of one call, shared by the launchers. Strided tensors are
    [batch, rows, heads, head_dim] (batch stride 0 in varlen)."""

    def __init__(self, q, k, cu_seqlens_q, max_seqlen_q, max_seqlen_k):
        self.varlen = cu_seqlens_q is not None
        if self.varlen:
            self.batch = cu_seqlens_q.shape[0] - 1
            self.seqlen_q, self.heads_q, self.head_dim = q.shape
            self.seqlen_k, self.heads_k = k.shape[0], k.shape[1]
            self.max_seqlen_q, self.max_seqlen_k = max_seqlen_q, max_seqlen_k
        else:
            self.batch, self.seqlen_q, self.heads_q, self.head_dim = q.shape
            self.seqlen_k, self.heads_k = k.shape[1], k.shape[2]
            self.max_seqlen_q, self.max_seqlen_k = self.seqlen_q, self.seqlen_k
        self.group = self.heads_q // self.heads_k
        self.block_d = _padded_head_dim(self.head_dim)

    def strides(self, t) -> tuple:
        """(batch, row, head) strides of a q-like or k-like tensor."""
        if self.varlen:
            return (0, t.stride(0), t.stride(1))
        return (t.stride(0), t.stride(1), t.stride(2))

    def lse_strides(self) -> tuple:
        if self.varlen:
            return (0, self.seqlen_q)
        return (self.heads_q * self.seqlen_q, self.seqlen_q)

    def empty(self) -> bool:
        return self.batch == 0 or self.heads_q == 0 or self.max_seqlen_q == 0


def _window(causal: bool, window_left: int, window_right: int) -> tuple:
    return window_left, (0 if causal else window_right)


# ---------------------------------------------------------------- public launchers


def attention_fwd(out, lse, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                  softmax_scale, causal, window_left, window_right) -> None:
    """Writes out and lse. Shapes and dtypes are the caller's to check."""
    layout = _Layout(q, k, cu_seqlens_q, max_seqlen_q, max_seqlen_k)
    if layout.empty():
        return
    left, right = _window(causal, window_left, window_right)
    block_m, block_n, num_warps, num_stages = _config(FWD_CONFIGS, layout.head_dim, q.device)
    num_m_blocks = triton.cdiv(layout.max_seqlen_q, block_m)
    cu_q = cu_seqlens_q if layout.varlen else q
    cu_k = cu_seqlens_k if layout.varlen else q
    grid = (num_m_blocks * layout.batch * layout.heads_q,)
    _attn_fwd_kernel[grid](
        q, k, v, out, lse, cu_q, cu_k,
        *layout.strides(q), *layout.strides(k), *layout.strides(v), *layout.strides(out),
        *layout.lse_strides(),
        layout.heads_q, layout.group, layout.seqlen_q, layout.seqlen_k, num_m_blocks,
        softmax_scale * LOG2E, left, right,
        HEAD_DIM=layout.head_dim, BLOCK_D=layout.block_d, BLOCK_M=block_m, BLOCK_N=block_n,
        IS_VARLEN=layout.varlen, num_warps=num_warps, num_stages=num_stages,
    )


def attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k,
                  max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left, window_right,
                  deterministic) -> None:
    """Writes dq, dk, dv, always bitwise reproducibly (no atomics), so `deterministic` asks
    for nothing more here; the op keeps the argument for backends that have a faster
    non-deterministic path."""
    layout = _Layout(q, k, cu_seqlens_q, max_seqlen_q, max_seqlen_k)
    if layout.batch == 0 or layout.heads_q == 0 or (layout.seqlen_q == 0 and layout.seqlen_k == 0):
        return
    if layout.max_seqlen_k == 0 or layout.seqlen_k == 0:
        # No keys anywhere: every gradient is zero (dk, dv are empty or all unwritten rows).
        dq.zero_()
        dk.zero_()
        dv.zero_()
        return
    left, right = _window(causal, window_left, window_right)
    device = q.device
    cu_q = cu_seqlens_q if layout.varlen else q
    cu_k = cu_seqlens_k if layout.varlen else q
    common = dict(HEAD_DIM=layout.head_dim, BLOCK_D=layout.block_d, IS_VARLEN=layout.varlen)

    delta = torch.empty_like(lse)
    if not layout.empty():
        num_m_blocks = triton.cdiv(layout.max_seqlen_q, DELTA_BLOCK_M)
        _attn_bwd_delta_kernel[(num_m_blocks * layout.batch * layout.heads_q,)](
            out, dout, delta, cu_q, *layout.strides(out), *layout.strides(dout),
            *layout.lse_strides(), layout.heads_q, layout.seqlen_q, num_m_blocks,
            BLOCK_M=DELTA_BLOCK_M, **common, num_warps=4,
        )

    block_m, block_n, num_warps, num_stages = _config(DKDV_CONFIGS, layout.head_dim, device)
    num_n_blocks = triton.cdiv(layout.max_seqlen_k, block_n)
    _attn_bwd_dkdv_kernel[(num_n_blocks * layout.batch * layout.heads_k,)](
        q, k, v, dout, lse, delta, dk, dv, cu_q, cu_k,
        *layout.strides(q), *layout.strides(k), *layout.strides(v), *layout.strides(dout),
        *layout.strides(dk), *layout.lse_strides(),
        layout.heads_k, layout.group, layout.seqlen_q, layout.seqlen_k, num_n_blocks,
        softmax_scale * LOG2E, softmax_scale, left, right,
        BLOCK_M=block_m, BLOCK_N=block_n, **common,
        num_warps=num_warps, num_stages=num_stages,
    )
    if layout.empty():
        return
    block_m, block_n, num_warps, num_stages = _config(DQ_CONFIGS, layout.head_dim, device)
    num_m_blocks = triton.cdiv(layout.max_seqlen_q, block_m)
    _attn_bwd_dq_kernel[(num_m_blocks * layout.batch * layout.heads_q,)](
        q, k, v, dout, lse, delta, dq, cu_q, cu_k,
        *layout.strides(q), *layout.strides(k), *layout.strides(v), *layout.strides(dout),
        *layout.strides(dq), *layout.lse_strides(),
        layout.heads_q, layout.group, layout.seqlen_q, layout.seqlen_k, num_m_blocks,
        softmax_scale * LOG2E, softmax_scale, left, right,
        BLOCK_M=block_m, BLOCK_N=block_n, **common, num_warps=num_warps, num_stages=num_stages,
    )


# ---------------------------------------------------------------- ahead-of-time compile specs


def _aot_specs() -> list:
    """The forward (bf16), the dk/dv kernel (fp16) and the delta kernel (bf16),
    at head dim 128: the dq kernel uses no construct these lack, and each of these takes
    10-20 s to compile per target on a 2-core machine."""
    strides = lambda *names: {name: "i32" for name in names}  # noqa: E731

    def fwd_signature(data):
        return {
            "Q": data, "K": data, "V": data, "OUT": data, "LSE": "*fp32", "CU_Q": "*i32",
            "CU_K": "*i32",
            **strides("stride_qb", "stride_qm", "stride_qh", "stride_kb", "stride_kn",
                      "stride_kh", "stride_vb", "stride_vn", "stride_vh", "stride_ob",
                      "stride_om", "stride_oh", "stride_lb", "stride_lh", "heads_q", "group",
                      "seqlen_q", "seqlen_k", "num_m_blocks"),
            "scale_log2": "fp32", "window_left": "i32", "window_right": "i32",
        }

    def delta_signature(data):
        return {
            "OUT": data, "DOUT": data, "DELTA": "*fp32", "CU_Q": "*i32",
            **strides("stride_ob", "stride_om", "stride_oh", "stride_dob", "stride_dom",
                      "stride_doh", "stride_lb", "stride_lh", "heads_q", "seqlen_q",
                      "num_m_blocks"),
        }

    def dkdv_signature(data):
        return {
            "Q": data, "K": data, "V": data, "DOUT": data, "LSE": "*fp32", "DELTA": "*fp32",
            "DK": data, "DV": data, "CU_Q": "*i32", "CU_K": "*i32",
            **strides("stride_qb", "stride_qm", "stride_qh", "stride_kb", "stride_kn",
                      "stride_kh", "stride_vb", "stride_vn", "stride_vh", "stride_dob",
                      "stride_dom", "stride_doh", "stride_dkb", "stride_dkn", "stride_dkh",
                      "stride_lb", "stride_lh", "heads_k", "group", "seqlen_q", "seqlen_k",
                      "num_n_blocks"),
            "scale_log2": "fp32", "softmax_scale": "fp32", "window_left": "i32",
            "window_right": "i32",
        }

    head_dim = 128
    fwd_m, fwd_n, fwd_warps, _ = FWD_CONFIGS[head_dim]
    kv_m, kv_n, kv_warps, _ = DKDV_CONFIGS[head_dim]
    dims = {"HEAD_DIM": head_dim, "BLOCK_D": head_dim}
    return [
        ("bf16", _attn_fwd_kernel, fwd_signature("*bf16"),
         {**dims, "BLOCK_M": fwd_m, "BLOCK_N": fwd_n, "IS_VARLEN": False}, fwd_warps),
        ("fp16", _attn_bwd_dkdv_kernel, dkdv_signature("*fp16"),
         {**dims, "BLOCK_M": kv_m, "BLOCK_N": kv_n, "IS_VARLEN": True},
         kv_warps),
        ("bf16", _attn_bwd_delta_kernel, delta_signature("*bf16"),
         {**dims, "BLOCK_M": DELTA_BLOCK_M, "IS_VARLEN": False}, 4),
    ]


# (element type, kernel, runtime signature, constexprs, num_warps) per kernel and dtype: the
# representative configurations tests/test_triton_aot.py compiles for sm_80, sm_90, gfx942.
AOT_SPECS = _aot_specs()
