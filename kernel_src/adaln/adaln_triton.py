"""AdaLN forward and backward in Triton, with plain-Python launchers.

x, branch, y, z_out, dy, dz, dx, dbranch: contiguous [batch, seq, hidden]; scale, shift, gate and
their gradients: contiguous [batch, hidden] (per sample) or [batch, seq, hidden] (per token),
each independently; weight, dweight: [hidden]; mean, rstd: fp32 [batch, seq]. Outputs are
allocated by the caller. Math is fp32; every downcast rounds to nearest even on a GPU. (Triton
3.8's interpreter, used on CPU tensors, truncates fp32 -> bf16 instead, so bf16 results there can
differ by one ulp.)

    forward:  z = x, or z = x + gate * branch rounded to the dtype (written to z_out)
              layer: mean = mean(z), rstd = 1 / sqrt(mean((z - mean)^2) + eps)
              rms:   mean = 0, rstd = 1 / sqrt(mean(z^2) + eps)
              xhat = (z - mean) * rstd;  y = xhat * weight * (1 + scale) + shift
    backward: dn = dy * (1 + scale);  g = dn * weight
              dz = rstd * (g - [mean(g), layer only] - xhat * mean(g * xhat)) + dz_in
              dx = dz;  dbranch = dz * gate;  dgate = dz * branch
              dscale = dy * xhat * weight;  dshift = dy;  dweight = sum of dn * xhat
              (dscale, dshift, dgate summed over seq when per sample)

Rows up to a size limit are held in registers whole ("fused" kernels); longer rows use "looped"
kernels that stream over column blocks several times. The backward runs batch * chunks programs,
each over a contiguous run of one sample's rows, accumulating per-sample (and dweight) sums in
fp32 into its own partial row; small kernels then add the partial rows in a fixed order, so the
sums are deterministic. Unused pointer arguments are given a real tensor of the right dtype and
never touched: the constexpr flags turn their uses off.
"""

import torch
import triton
import triton.language as tl

# Longest rows (in elements) the fused kernels keep whole in registers. The backward holds
# more live values per element (dy, z, scale, weight, accumulators).
MAX_FUSED_FWD_COLS = 16384
MAX_FUSED_BWD_COLS = 8192
# Column block of the looped kernels, in elements.
LOOPED_BLOCK = 4096
# A fused forward program covers at least this many elements, taking several short rows.
MIN_ELEMENTS_PER_PROGRAM = 2048
# Backward programs per streaming multiprocessor on a GPU, and in all under the interpreter.
BWD_PROGRAMS_PER_SM = 2
BWD_PROGRAMS_INTERPRETED = 4
# Tile of the kernels that add the partial rows: partial rows x columns.
SUM_BLOCK_ROWS = 32
SUM_BLOCK_COLS = 64


@triton.jit
def _gated_z(X, BRANCH, GATE, offsets, gate_offsets, mask, GATED: tl.constexpr):
    """z as fp32: x, or x + gate * branch rounded to x's dtype."""
    z = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    if GATED:
        gate = tl.load(GATE + gate_offsets, mask=mask, other=0.0).to(tl.float32)
        branch = tl.load(BRANCH + offsets, mask=mask, other=0.0).to(tl.float32)
        z = (z + gate * branch).to(X.dtype.element_ty).to(tl.float32)
    return z


@triton.jit
def _adaln_fwd_fused_kernel(
    Y, Z_OUT, MEAN, RSTD, X, BRANCH, GATE, SCALE, SHIFT, W, n_rows, seq, n_cols, eps,
    BLOCK: tl.constexpr, ROWS_PER_PROGRAM: tl.constexpr, LAYER: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, GATED: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr,
    SHIFT_PER_TOKEN: tl.constexpr, GATE_PER_TOKEN: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * ROWS_PER_PROGRAM + tl.arange(0, ROWS_PER_PROGRAM)
    cols = tl.arange(0, BLOCK)
    row_mask = rows < n_rows
    col_mask = cols < n_cols
    mask = row_mask[:, None] & col_mask[None, :]
    samples = rows // seq
    offsets = rows[:, None] * n_cols + cols[None, :]
    sample_offsets = samples[:, None] * n_cols + cols[None, :]

    gate_offsets = offsets if GATE_PER_TOKEN else sample_offsets
    z = _gated_z(X, BRANCH, GATE, offsets, gate_offsets, mask, GATED)
    if GATED:
        tl.store(Z_OUT + offsets, z.to(Z_OUT.dtype.element_ty), mask=mask)

    if LAYER:
        mean = tl.sum(z, axis=1) / n_cols
        centered = tl.where(mask, z - mean[:, None], 0.0)
    else:
        mean = tl.zeros([ROWS_PER_PROGRAM], dtype=tl.float32)
        centered = z
    rstd = tl.math.rsqrt(tl.sum(centered * centered, axis=1) / n_cols + eps)
    tl.store(MEAN + rows, mean, mask=row_mask)
    tl.store(RSTD + rows, rstd, mask=row_mask)

    n = centered * rstd[:, None]
    if HAS_WEIGHT:
        n = n * tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    scale = tl.load(SCALE + (offsets if SCALE_PER_TOKEN else sample_offsets), mask=mask,
                    other=0.0).to(tl.float32)
    shift = tl.load(SHIFT + (offsets if SHIFT_PER_TOKEN else sample_offsets), mask=mask,
                    other=0.0).to(tl.float32)
    y = n * (1.0 + scale) + shift
    tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _adaln_fwd_looped_kernel(
    Y, Z_OUT, MEAN, RSTD, X, BRANCH, GATE, SCALE, SHIFT, W, n_rows, seq, n_cols, eps,
    BLOCK: tl.constexpr, LAYER: tl.constexpr, HAS_WEIGHT: tl.constexpr, GATED: tl.constexpr,
    SCALE_PER_TOKEN: tl.constexpr, SHIFT_PER_TOKEN: tl.constexpr, GATE_PER_TOKEN: tl.constexpr,
):
    # Later passes recompute z from the inputs rather than reading z_out back, so no program
    # reads global memory it wrote itself.
    row = tl.program_id(0).to(tl.int64)
    sample = row // seq
    row_start = row * n_cols
    sample_start = sample * n_cols
    gate_start = row_start if GATE_PER_TOKEN else sample_start

    total = tl.zeros([BLOCK], dtype=tl.float32)
    for col_start in range(0, n_cols, BLOCK):
        cols = col_start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        z = _gated_z(X, BRANCH, GATE, row_start + cols, gate_start + cols, mask, GATED)
        if GATED:
            tl.store(Z_OUT + row_start + cols, z.to(Z_OUT.dtype.element_ty), mask=mask)
        if LAYER:
            total += z
        else:
            total += z * z
    if LAYER:
        mean = tl.sum(total, axis=0) / n_cols
        squares = tl.zeros([BLOCK], dtype=tl.float32)
        for col_start in range(0, n_cols, BLOCK):
            cols = col_start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            z = _gated_z(X, BRANCH, GATE, row_start + cols, gate_start + cols, mask, GATED)
            centered = tl.where(mask, z - mean, 0.0)
            squares += centered * centered
        variance = tl.sum(squares, axis=0) / n_cols
    else:
        mean = 0.0
        variance = tl.sum(total, axis=0) / n_cols
    rstd = tl.math.rsqrt(variance + eps)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)

    scale_start = row_start if SCALE_PER_TOKEN else sample_start
    shift_start = row_start if SHIFT_PER_TOKEN else sample_start
    for col_start in range(0, n_cols, BLOCK):
        cols = col_start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        z = _gated_z(X, BRANCH, GATE, row_start + cols, gate_start + cols, mask, GATED)
        n = (z - mean) * rstd
        if HAS_WEIGHT:
            n = n * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        scale = tl.load(SCALE + scale_start + cols, mask=mask, other=0.0).to(tl.float32)
        shift = tl.load(SHIFT + shift_start + cols, mask=mask, other=0.0).to(tl.float32)
        y = n * (1.0 + scale) + shift
        tl.store(Y + row_start + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _row_run(seq, chunks):
    """(sample, first row, end row) of this backward program: a contiguous run of one sample."""
    program = tl.program_id(0)
    sample = (program // chunks).to(tl.int64)
    chunk = (program % chunks).to(tl.int64)
    first = sample * seq + seq * chunk // chunks
    end = sample * seq + seq * (chunk + 1) // chunks
    return sample, first, end


@triton.jit
def _adaln_bwd_fused_kernel(
    DX, DSCALE, DSHIFT, DBRANCH, DGATE, P_PART, SHIFT_PART, GATE_PART,
    DY, DZ, Z, BRANCH, GATE, SCALE, W, MEAN, RSTD, seq, n_cols, chunks,
    BLOCK: tl.constexpr, LAYER: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_DZ: tl.constexpr,
    GATED: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr, SHIFT_PER_TOKEN: tl.constexpr,
    GATE_PER_TOKEN: tl.constexpr, WANT_P: tl.constexpr, STORE_DSHIFT: tl.constexpr,
):
    sample, first, end = _row_run(seq, chunks)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    if HAS_WEIGHT:
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    else:
        w = tl.full([BLOCK], 1.0, tl.float32)
    sample_start = sample * n_cols
    if not SCALE_PER_TOKEN:
        sample_scale = tl.load(SCALE + sample_start + cols, mask=mask, other=0.0).to(tl.float32)
    if GATED and not GATE_PER_TOKEN:
        sample_gate = tl.load(GATE + sample_start + cols, mask=mask, other=0.0).to(tl.float32)
    acc_p = tl.zeros([BLOCK], dtype=tl.float32)
    acc_shift = tl.zeros([BLOCK], dtype=tl.float32)
    acc_gate = tl.zeros([BLOCK], dtype=tl.float32)

    for row in range(first, end):
        offsets = row * n_cols + cols
        mean = tl.load(MEAN + row)
        rstd = tl.load(RSTD + row)
        dy = tl.load(DY + offsets, mask=mask, other=0.0).to(tl.float32)
        xhat = (tl.load(Z + offsets, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
        if SCALE_PER_TOKEN:
            scale = tl.load(SCALE + offsets, mask=mask, other=0.0).to(tl.float32)
        else:
            scale = sample_scale
        dn = dy * (1.0 + scale)
        g = dn * w
        mean_gx = tl.sum(g * xhat, axis=0) / n_cols
        dz = rstd * (g - xhat * mean_gx)
        if LAYER:
            dz -= rstd * (tl.sum(g, axis=0) / n_cols)
        if HAS_DZ:
            dz += tl.load(DZ + offsets, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + offsets, dz.to(DX.dtype.element_ty), mask=mask)
        if GATED:
            branch = tl.load(BRANCH + offsets, mask=mask, other=0.0).to(tl.float32)
            if GATE_PER_TOKEN:
                gate = tl.load(GATE + offsets, mask=mask, other=0.0).to(tl.float32)
                tl.store(DGATE + offsets, (dz * branch).to(DGATE.dtype.element_ty), mask=mask)
            else:
                gate = sample_gate
                acc_gate += dz * branch
            tl.store(DBRANCH + offsets, (dz * gate).to(DBRANCH.dtype.element_ty), mask=mask)
        if SCALE_PER_TOKEN:
            tl.store(DSCALE + offsets, (dy * xhat * w).to(DSCALE.dtype.element_ty), mask=mask)
            if WANT_P:
                acc_p += dn * xhat
        else:
            acc_p += dy * xhat
        if SHIFT_PER_TOKEN:
            if STORE_DSHIFT:
                tl.store(DSHIFT + offsets, dy.to(DSHIFT.dtype.element_ty), mask=mask)
        else:
            acc_shift += dy

    partial = tl.program_id(0).to(tl.int64) * n_cols + cols
    if WANT_P:
        tl.store(P_PART + partial, acc_p, mask=mask)
    if not SHIFT_PER_TOKEN:
        tl.store(SHIFT_PART + partial, acc_shift, mask=mask)
    if GATED and not GATE_PER_TOKEN:
        tl.store(GATE_PART + partial, acc_gate, mask=mask)


@triton.jit
def _add_to_partial(PART, offsets, values, mask):
    tl.store(PART + offsets, tl.load(PART + offsets, mask=mask, other=0.0) + values, mask=mask)


@triton.jit
def _adaln_bwd_looped_kernel(
    DX, DSCALE, DSHIFT, DBRANCH, DGATE, P_PART, SHIFT_PART, GATE_PART,
    DY, DZ, Z, BRANCH, GATE, SCALE, W, MEAN, RSTD, seq, n_cols, chunks,
    BLOCK: tl.constexpr, LAYER: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_DZ: tl.constexpr,
    GATED: tl.constexpr, SCALE_PER_TOKEN: tl.constexpr, SHIFT_PER_TOKEN: tl.constexpr,
    GATE_PER_TOKEN: tl.constexpr, WANT_P: tl.constexpr, STORE_DSHIFT: tl.constexpr,
):
    # The partial rows live in this program's own rows of the *_PART buffers. Every pass walks
    # the columns with the same block shape, so each element is read back by the thread that
    # wrote it.
    sample, first, end = _row_run(seq, chunks)
    partial_start = tl.program_id(0).to(tl.int64) * n_cols
    sample_start = sample * n_cols
    for col_start in range(0, n_cols, BLOCK):
        cols = col_start + tl.arange(0, BLOCK)
        zero = tl.zeros([BLOCK], dtype=tl.float32)
        mask = cols < n_cols
        if WANT_P:
            tl.store(P_PART + partial_start + cols, zero, mask=mask)
        if not SHIFT_PER_TOKEN:
            tl.store(SHIFT_PART + partial_start + cols, zero, mask=mask)
        if GATED and not GATE_PER_TOKEN:
            tl.store(GATE_PART + partial_start + cols, zero, mask=mask)

    for row in range(first, end):
        row_start = row * n_cols
        scale_start = row_start if SCALE_PER_TOKEN else sample_start
        gate_start = row_start if GATE_PER_TOKEN else sample_start
        mean = tl.load(MEAN + row)
        rstd = tl.load(RSTD + row)

        sum_g = tl.zeros([BLOCK], dtype=tl.float32)
        sum_gx = tl.zeros([BLOCK], dtype=tl.float32)
        for col_start in range(0, n_cols, BLOCK):
            cols = col_start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            dy = tl.load(DY + row_start + cols, mask=mask, other=0.0).to(tl.float32)
            z = tl.load(Z + row_start + cols, mask=mask, other=0.0).to(tl.float32)
            scale = tl.load(SCALE + scale_start + cols, mask=mask, other=0.0).to(tl.float32)
            g = dy * (1.0 + scale)
            if HAS_WEIGHT:
                g = g * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            sum_g += g
            sum_gx += g * ((z - mean) * rstd)
        mean_gx = tl.sum(sum_gx, axis=0) / n_cols
        mean_g = tl.sum(sum_g, axis=0) / n_cols if LAYER else 0.0

        for col_start in range(0, n_cols, BLOCK):
            cols = col_start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            offsets = row_start + cols
            partial = partial_start + cols
            dy = tl.load(DY + offsets, mask=mask, other=0.0).to(tl.float32)
            xhat = (tl.load(Z + offsets, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
            scale = tl.load(SCALE + scale_start + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_WEIGHT:
                w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            else:
                w = tl.full([BLOCK], 1.0, tl.float32)
            dn = dy * (1.0 + scale)
            g = dn * w
            dz = rstd * (g - mean_g - xhat * mean_gx)
            if HAS_DZ:
                dz += tl.load(DZ + offsets, mask=mask, other=0.0).to(tl.float32)
            tl.store(DX + offsets, dz.to(DX.dtype.element_ty), mask=mask)
            if GATED:
                branch = tl.load(BRANCH + offsets, mask=mask, other=0.0).to(tl.float32)
                gate = tl.load(GATE + gate_start + cols, mask=mask, other=0.0).to(tl.float32)
                tl.store(DBRANCH + offsets, (dz * gate).to(DBRANCH.dtype.element_ty), mask=mask)
                if GATE_PER_TOKEN:
                    tl.store(DGATE + offsets, (dz * branch).to(DGATE.dtype.element_ty), mask=mask)
                else:
                    _add_to_partial(GATE_PART, partial, dz * branch, mask)
            if SCALE_PER_TOKEN:
                tl.store(DSCALE + offsets, (dy * xhat * w).to(DSCALE.dtype.element_ty), mask=mask)
                if WANT_P:
                    _add_to_partial(P_PART, partial, dn * xhat, mask)
            else:
                _add_to_partial(P_PART, partial, dy * xhat, mask)
            if SHIFT_PER_TOKEN:
                if STORE_DSHIFT:
                    tl.store(DSHIFT + offsets, dy.to(DSHIFT.dtype.element_ty), mask=mask)
            else:
                _add_to_partial(SHIFT_PART, partial, dy, mask)


@triton.jit
def _sum_chunks(PART, first_partial, chunks, n_cols, cols, col_mask,
                BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr):
    """Sum of partial rows first_partial .. first_partial + chunks - 1 at `cols`, fixed order."""
    total = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=tl.float32)
    for start in range(0, chunks, BLOCK_ROWS):
        rows = start + tl.arange(0, BLOCK_ROWS)
        mask = (rows < chunks)[:, None] & col_mask[None, :]
        offsets = (first_partial + rows[:, None]) * n_cols + cols[None, :]
        total += tl.load(PART + offsets, mask=mask, other=0.0)
    return tl.sum(total, axis=0)


@triton.jit
def _adaln_sum_chunks_kernel(
    DSCALE, DSHIFT, DGATE, SAMPLE_P, P_PART, SHIFT_PART, GATE_PART, W, chunks, n_cols,
    column_tiles,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, HAS_P: tl.constexpr,
    HAS_SHIFT: tl.constexpr, HAS_GATE: tl.constexpr, SCALE_PER_SAMPLE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, WANT_SAMPLE_P: tl.constexpr,
):
    # Program (sample, column tile): the per-sample sums of that sample's chunk partial rows.
    program = tl.program_id(0)
    sample = (program // column_tiles).to(tl.int64)
    cols = (program % column_tiles) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    col_mask = cols < n_cols
    first_partial = sample * chunks
    out = sample * n_cols + cols
    if HAS_P:
        p = _sum_chunks(P_PART, first_partial, chunks, n_cols, cols, col_mask, BLOCK_ROWS,
                        BLOCK_COLS)
        if SCALE_PER_SAMPLE:
            dscale = p
            if HAS_WEIGHT:
                dscale = p * tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
            tl.store(DSCALE + out, dscale.to(DSCALE.dtype.element_ty), mask=col_mask)
        if WANT_SAMPLE_P:
            tl.store(SAMPLE_P + out, p, mask=col_mask)
    if HAS_SHIFT:
        shift = _sum_chunks(SHIFT_PART, first_partial, chunks, n_cols, cols, col_mask,
                            BLOCK_ROWS, BLOCK_COLS)
        tl.store(DSHIFT + out, shift.to(DSHIFT.dtype.element_ty), mask=col_mask)
    if HAS_GATE:
        gate = _sum_chunks(GATE_PART, first_partial, chunks, n_cols, cols, col_mask, BLOCK_ROWS,
                           BLOCK_COLS)
        tl.store(DGATE + out, gate.to(DGATE.dtype.element_ty), mask=col_mask)


@triton.jit
def _adaln_sum_dweight_kernel(
    DW, SAMPLE_P, SCALE, batch, n_cols,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, SCALE_PER_SAMPLE: tl.constexpr,
):
    # dweight = sum over samples of SAMPLE_P, times (1 + scale) when scale is per sample.
    cols = tl.program_id(0) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    col_mask = cols < n_cols
    total = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=tl.float32)
    for start in range(0, batch, BLOCK_ROWS):
        rows = start + tl.arange(0, BLOCK_ROWS)
        mask = (rows < batch)[:, None] & col_mask[None, :]
        offsets = rows[:, None].to(tl.int64) * n_cols + cols[None, :]
        p = tl.load(SAMPLE_P + offsets, mask=mask, other=0.0)
        if SCALE_PER_SAMPLE:
            p = p * (1.0 + tl.load(SCALE + offsets, mask=mask, other=0.0).to(tl.float32))
        total += p
    tl.store(DW + cols, tl.sum(total, axis=0).to(DW.dtype.element_ty), mask=col_mask)


# ---------------------------------------------------------------- launch configuration


def _fused_block(hidden: int, max_cols: int):
    """Power-of-two block holding a whole row, or None when the row is longer than max_cols."""
    block = triton.next_power_of_2(hidden)
    return block if block <= max_cols else None


# Warps for a block of n elements: 16 elements per thread forward, 8 backward (more live values
# per element), 1 to 32 warps.
def _fwd_num_warps(block_elements: int) -> int:
    return min(max(block_elements // 512, 1), 32)


def _bwd_num_warps(block_elements: int) -> int:
    return min(max(block_elements // 256, 1), 32)


def _chunks_per_sample(batch: int, seq: int, device: torch.device) -> int:
    if device.type == "cuda":
        target = torch.cuda.get_device_properties(device).multi_processor_count * BWD_PROGRAMS_PER_SM
    else:
        target = BWD_PROGRAMS_INTERPRETED
    return max(1, min(seq, triton.cdiv(target, batch)))


def _per_token(t: torch.Tensor) -> bool:
    """A modulation tensor is per token when 3-D ([batch, seq, hidden]), per sample when 2-D."""
    return t.dim() == 3


# ---------------------------------------------------------------- public launchers


def adaln_fwd(y, z_out, mean, rstd, x, branch, gate, scale, shift, weight, eps: float,
              layer: bool) -> None:
    """Writes y, mean, rstd (and z_out when gated) for x [batch, seq, hidden]."""
    batch, seq, hidden = x.shape
    rows = batch * seq
    if rows == 0:
        return
    gated = branch is not None
    pointers = (
        y, z_out if gated else y, mean, rstd, x,
        branch if gated else x, gate if gated else x,
        scale, shift, weight if weight is not None else x,
    )
    flags = dict(
        LAYER=layer, HAS_WEIGHT=weight is not None, GATED=gated,
        SCALE_PER_TOKEN=_per_token(scale), SHIFT_PER_TOKEN=_per_token(shift),
        GATE_PER_TOKEN=gated and _per_token(gate),
    )
    block = _fused_block(hidden, MAX_FUSED_FWD_COLS)
    if block is not None:
        rows_per_program = min(max(MIN_ELEMENTS_PER_PROGRAM // block, 1), triton.next_power_of_2(rows))
        _adaln_fwd_fused_kernel[(triton.cdiv(rows, rows_per_program),)](
            *pointers, rows, seq, hidden, eps, BLOCK=block, ROWS_PER_PROGRAM=rows_per_program,
            **flags, num_warps=_fwd_num_warps(block * rows_per_program),
        )
    else:
        _adaln_fwd_looped_kernel[(rows,)](
            *pointers, rows, seq, hidden, eps, BLOCK=LOOPED_BLOCK, **flags,
            num_warps=_fwd_num_warps(LOOPED_BLOCK),
        )


def adaln_bwd(dx, dscale, dshift, dweight, dbranch, dgate, dy, dz, z, branch, gate, scale,
              weight, mean, rstd, layer: bool) -> None:
    """Writes dx, dscale, dshift (and dweight, dbranch, dgate when given) from dy, z, mean, rstd.

    dscale's shape follows scale's, dshift's says whether shift was per token (None: per
    token, and its gradient, dy itself, is not copied), dgate's gate's.
    """
    batch, seq, hidden = z.shape
    gated = branch is not None
    scale_per_token = _per_token(scale)
    shift_per_token = dshift is None or _per_token(dshift)
    gate_per_token = gated and _per_token(gate)
    want_p = not scale_per_token or dweight is not None
    if batch * seq == 0:
        # Every per-sample gradient and dweight is an empty sum.
        for t in (dscale, dshift, dgate if gated else None, dweight):
            if t is not None and t.dim() < 3:
                t.zero_()
        return

    chunks = _chunks_per_sample(batch, seq, z.device)
    programs = batch * chunks

    def partials(needed: bool):
        shape = (programs, hidden) if needed else (1,)
        return torch.empty(shape, dtype=torch.float32, device=z.device)

    p_part, shift_part = partials(want_p), partials(not shift_per_token)
    gate_part = partials(gated and not gate_per_token)
    pointers = (
        dx, dscale, dshift if dshift is not None else dx, dbranch if gated else dx,
        dgate if gated else dx,
        p_part, shift_part, gate_part,
        dy, dz if dz is not None else dy, z, branch if gated else z, gate if gated else z,
        scale, weight if weight is not None else z, mean, rstd,
    )
    flags = dict(
        LAYER=layer, HAS_WEIGHT=weight is not None, HAS_DZ=dz is not None, GATED=gated,
        SCALE_PER_TOKEN=scale_per_token, SHIFT_PER_TOKEN=shift_per_token,
        GATE_PER_TOKEN=gate_per_token, WANT_P=want_p, STORE_DSHIFT=dshift is not None,
    )
    block = _fused_block(hidden, MAX_FUSED_BWD_COLS)
    if block is not None:
        _adaln_bwd_fused_kernel[(programs,)](
            *pointers, seq, hidden, chunks, BLOCK=block, **flags,
            num_warps=_bwd_num_warps(block),
        )
    else:
        _adaln_bwd_looped_kernel[(programs,)](
            *pointers, seq, hidden, chunks, BLOCK=LOOPED_BLOCK, **flags,
            num_warps=_bwd_num_warps(LOOPED_BLOCK),
        )

    has_shift = not shift_per_token
    has_gate = gated and not gate_per_token
    if not (want_p or has_shift or has_gate):
        return
    sample_p = torch.empty((batch, hidden) if dweight is not None else (1,), dtype=torch.float32,
                           device=z.device)
    column_tiles = triton.cdiv(hidden, SUM_BLOCK_COLS)
    _adaln_sum_chunks_kernel[(batch * column_tiles,)](
        dscale, dshift if has_shift else dscale, dgate if gated else dscale, sample_p, p_part,
        shift_part, gate_part,
        weight if weight is not None else z, chunks, hidden, column_tiles,
        BLOCK_ROWS=SUM_BLOCK_ROWS, BLOCK_COLS=SUM_BLOCK_COLS, HAS_P=want_p, HAS_SHIFT=has_shift,
        HAS_GATE=has_gate, SCALE_PER_SAMPLE=not scale_per_token, HAS_WEIGHT=weight is not None,
        WANT_SAMPLE_P=dweight is not None, num_warps=4,
    )
    if dweight is not None:
        _adaln_sum_dweight_kernel[(column_tiles,)](
            dweight, sample_p, scale, batch, hidden,
            BLOCK_ROWS=SUM_BLOCK_ROWS, BLOCK_COLS=SUM_BLOCK_COLS,
            SCALE_PER_SAMPLE=not scale_per_token, num_warps=4,
        )


# ---------------------------------------------------------------- ahead-of-time compile specs


def _aot_specs_for(dtype: str) -> list:
    data = f"*{dtype}"
    fwd_signature = {
        "Y": data, "Z_OUT": data, "MEAN": "*fp32", "RSTD": "*fp32", "X": data, "BRANCH": data,
        "GATE": data, "SCALE": data, "SHIFT": data, "W": data,
        "n_rows": "i32", "seq": "i32", "n_cols": "i32", "eps": "fp32",
    }
    bwd_signature = {
        "DX": data, "DSCALE": data, "DSHIFT": data, "DBRANCH": data, "DGATE": data,
        "P_PART": "*fp32", "SHIFT_PART": "*fp32", "GATE_PART": "*fp32",
        "DY": data, "DZ": data, "Z": data, "BRANCH": data, "GATE": data, "SCALE": data,
        "W": data, "MEAN": "*fp32", "RSTD": "*fp32", "seq": "i32", "n_cols": "i32", "chunks": "i32",
    }
    sum_signature = {
        "DSCALE": data, "DSHIFT": data, "DGATE": data, "SAMPLE_P": "*fp32", "P_PART": "*fp32",
        "SHIFT_PART": "*fp32", "GATE_PART": "*fp32", "W": data, "chunks": "i32",
        "n_cols": "i32", "column_tiles": "i32",
    }
    dweight_signature = {"DW": data, "SAMPLE_P": "*fp32", "SCALE": data, "batch": "i32",
                         "n_cols": "i32"}
    # The DiT training case: layer norm, gated, per-sample modulation; and the per-token one.
    fwd_flags = {"LAYER": True, "HAS_WEIGHT": True, "GATED": True, "SCALE_PER_TOKEN": False,
                 "SHIFT_PER_TOKEN": False, "GATE_PER_TOKEN": False}
    bwd_flags = {"LAYER": True, "HAS_WEIGHT": True, "HAS_DZ": True, "GATED": True,
                 "SCALE_PER_TOKEN": True, "SHIFT_PER_TOKEN": True, "GATE_PER_TOKEN": True,
                 "WANT_P": True, "STORE_DSHIFT": True}
    sample_bwd_flags = {**bwd_flags, "SCALE_PER_TOKEN": False, "SHIFT_PER_TOKEN": False,
                        "GATE_PER_TOKEN": False}
    sum_flags = {"BLOCK_ROWS": SUM_BLOCK_ROWS, "BLOCK_COLS": SUM_BLOCK_COLS}
    fused_block = 4096
    specs = [
        (_adaln_fwd_fused_kernel, fwd_signature,
         {"BLOCK": fused_block, "ROWS_PER_PROGRAM": 1, **fwd_flags}, _fwd_num_warps(fused_block)),
        (_adaln_fwd_looped_kernel, fwd_signature,
         {"BLOCK": LOOPED_BLOCK, **fwd_flags}, _fwd_num_warps(LOOPED_BLOCK)),
        (_adaln_bwd_fused_kernel, bwd_signature,
         {"BLOCK": fused_block, **sample_bwd_flags}, _bwd_num_warps(fused_block)),
        (_adaln_bwd_looped_kernel, bwd_signature,
         {"BLOCK": LOOPED_BLOCK, **bwd_flags}, _bwd_num_warps(LOOPED_BLOCK)),
        (_adaln_sum_chunks_kernel, sum_signature,
         {**sum_flags, "HAS_P": True, "HAS_SHIFT": True, "HAS_GATE": True,
          "SCALE_PER_SAMPLE": True, "HAS_WEIGHT": True, "WANT_SAMPLE_P": True}, 4),
        (_adaln_sum_dweight_kernel, dweight_signature,
         {**sum_flags, "SCALE_PER_SAMPLE": True}, 4),
    ]
    return [(dtype, *spec) for spec in specs]


# (element type, kernel, runtime signature, constexprs, num_warps) per kernel and dtype: the
# representative configurations tests/test_triton_aot.py compiles for sm_80, sm_90, gfx942.
AOT_SPECS = [spec for dtype in ("fp32", "fp16", "bf16") for spec in _aot_specs_for(dtype)]
