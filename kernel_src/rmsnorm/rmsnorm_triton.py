"""RMSNorm forward and backward in Triton, with plain-Python launchers.

Tensors are contiguous: [rows, hidden] for x, y, residual, residual_out, dy, dx, dresidual and z;
[hidden] for weight and dweight; fp32 [rows] for rstd. Outputs are allocated by the caller.
Math is fp32; every downcast rounds to nearest even on a GPU. (Triton 3.8's interpreter, used on
CPU tensors, truncates fp32 -> bf16 instead, so bf16 results there can differ by one ulp.)

    forward:  z = x (+ residual, rounded to the dtype and written to residual_out)
              rstd = 1 / sqrt(mean(z^2) + eps);  y = z * rstd (* weight)
    backward: g = dy (* weight);  z_hat = z * rstd
              dx = rstd * (g - z_hat * mean(g * z_hat)) (+ dresidual)
              dweight = sum over rows of dy * z_hat

Rows up to a size limit are held in registers whole ("fused" kernels); longer rows use "looped"
kernels that stream over column blocks twice. Unused pointer arguments are given a real tensor of
the right dtype and never touched: the HAS_* constexprs turn their uses off.
"""

import torch
import triton
import triton.language as tl

# Longest rows (in elements) the fused kernels keep whole in registers: 64 KB of fp32 row in the
# forward. The backward holds about twice as many live values per element, and ptxas (sm_90)
# spills beyond 8192 even at 32 warps.
MAX_FUSED_FWD_COLS = 16384
MAX_FUSED_BWD_COLS = 8192
# Column block of the looped kernels, in elements.
LOOPED_BLOCK = 4096
# A fused forward program covers at least this many elements, taking several short rows.
MIN_ELEMENTS_PER_PROGRAM = 2048
# Backward programs per streaming multiprocessor on a GPU, and the grid under the interpreter.
BWD_PROGRAMS_PER_SM = 2
BWD_PROGRAMS_INTERPRETED = 4
# Loads of the next rows the fused backward issues while computing the current one. Measured on
# an H200 (bf16, 4096 to 8192 wide): 3 stages is up to 20% faster than none, 2 is not.
BWD_PIPELINE_STAGES = 3
# Tile of the kernel that sums the dweight partials: partial rows x columns.
SUM_BLOCK_ROWS = 32
SUM_BLOCK_COLS = 64


@triton.jit
def _rms_norm_fwd_fused_kernel(
    Y, RSTD, X, W, RESIDUAL, RESIDUAL_OUT, n_rows, n_cols, eps,
    BLOCK: tl.constexpr, ROWS_PER_PROGRAM: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS_PER_PROGRAM + tl.arange(0, ROWS_PER_PROGRAM)
    cols = tl.arange(0, BLOCK)
    row_mask = rows < n_rows
    col_mask = cols < n_cols
    mask = row_mask[:, None] & col_mask[None, :]
    offsets = rows[:, None].to(tl.int64) * n_cols + cols[None, :]

    z = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        z += tl.load(RESIDUAL + offsets, mask=mask, other=0.0).to(tl.float32)
        z_rounded = z.to(RESIDUAL_OUT.dtype.element_ty)
        tl.store(RESIDUAL_OUT + offsets, z_rounded, mask=mask)
        z = z_rounded.to(tl.float32)

    rstd = tl.math.rsqrt(tl.sum(z * z, axis=1) / n_cols + eps)
    tl.store(RSTD + rows, rstd, mask=row_mask)

    y = z * rstd[:, None]
    if HAS_WEIGHT:
        w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
        y = y * w[None, :]
    tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _load_z(X, RESIDUAL, offsets, mask, HAS_RESIDUAL: tl.constexpr):
    """z of the looped forward as fp32: x, or x + residual rounded to the dtype."""
    z = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        z += tl.load(RESIDUAL + offsets, mask=mask, other=0.0).to(tl.float32)
        z = z.to(X.dtype.element_ty).to(tl.float32)
    return z


@triton.jit
def _rms_norm_fwd_looped_kernel(
    Y, RSTD, X, W, RESIDUAL, RESIDUAL_OUT, n_rows, n_cols, eps,
    BLOCK: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):
    row = tl.program_id(0)
    row_start = row.to(tl.int64) * n_cols

    # Pass 1: sum of squares (and residual_out). Pass 2 recomputes z from the inputs rather than
    # reading residual_out back, so no program reads global memory it wrote itself.
    sum_sq = tl.zeros([BLOCK], dtype=tl.float32)
    for col_start in range(0, n_cols, BLOCK):
        cols = col_start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        z = _load_z(X, RESIDUAL, row_start + cols, mask, HAS_RESIDUAL)
        if HAS_RESIDUAL:
            tl.store(RESIDUAL_OUT + row_start + cols, z.to(RESIDUAL_OUT.dtype.element_ty), mask=mask)
        sum_sq += z * z
    rstd = tl.math.rsqrt(tl.sum(sum_sq, axis=0) / n_cols + eps)
    tl.store(RSTD + row, rstd)

    for col_start in range(0, n_cols, BLOCK):
        cols = col_start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        y = _load_z(X, RESIDUAL, row_start + cols, mask, HAS_RESIDUAL) * rstd
        if HAS_WEIGHT:
            y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + row_start + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd_fused_kernel(
    DX, DW_PARTIAL, DY, Z, W, RSTD, DRESIDUAL, n_rows, n_cols, rows_per_program,
    BLOCK: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_DWEIGHT: tl.constexpr,
    HAS_DRESIDUAL: tl.constexpr, PIPELINE_STAGES: tl.constexpr,
):
    # Each program takes a contiguous run of rows and keeps its dweight partial in registers.
    program = tl.program_id(0)
    first_row = program * rows_per_program
    end_row = tl.minimum(first_row + rows_per_program, n_rows)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    if HAS_WEIGHT:
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_partial = tl.zeros([BLOCK], dtype=tl.float32)

    row_start = first_row.to(tl.int64) * n_cols
    for row in tl.range(first_row, end_row, num_stages=PIPELINE_STAGES):
        rstd = tl.load(RSTD + row)
        dy = tl.load(DY + row_start + cols, mask=mask, other=0.0).to(tl.float32)
        z_hat = tl.load(Z + row_start + cols, mask=mask, other=0.0).to(tl.float32) * rstd
        g = dy
        if HAS_WEIGHT:
            g = dy * w
        mean_g_zhat = tl.sum(g * z_hat, axis=0) / n_cols
        dx = rstd * (g - z_hat * mean_g_zhat)
        if HAS_DRESIDUAL:
            dx += tl.load(DRESIDUAL + row_start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row_start + cols, dx.to(DX.dtype.element_ty), mask=mask)
        if HAS_DWEIGHT:
            dw_partial += dy * z_hat
        row_start += n_cols

    if HAS_DWEIGHT:
        tl.store(DW_PARTIAL + program.to(tl.int64) * n_cols + cols, dw_partial, mask=mask)


@triton.jit
def _rms_norm_bwd_looped_kernel(
    DX, DW_PARTIAL, DY, Z, W, RSTD, DRESIDUAL, n_rows, n_cols, rows_per_program,
    BLOCK: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_DWEIGHT: tl.constexpr,
    HAS_DRESIDUAL: tl.constexpr,
):
    # The dweight partial lives in this program's own row of DW_PARTIAL. Every pass walks the
    # columns with the same block shape, so each element is read back by the thread that wrote it.
    program = tl.program_id(0)
    first_row = program * rows_per_program
    end_row = tl.minimum(first_row + rows_per_program, n_rows)
    partial_start = program.to(tl.int64) * n_cols

    if HAS_DWEIGHT:
        for col_start in range(0, n_cols, BLOCK):
            cols = col_start + tl.arange(0, BLOCK)
            tl.store(DW_PARTIAL + partial_start + cols, tl.zeros([BLOCK], dtype=tl.float32),
                     mask=cols < n_cols)

    row_start = first_row.to(tl.int64) * n_cols
    for row in range(first_row, end_row):
        rstd = tl.load(RSTD + row)

        sum_g_zhat = tl.zeros([BLOCK], dtype=tl.float32)
        for col_start in range(0, n_cols, BLOCK):
            cols = col_start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            g = tl.load(DY + row_start + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_WEIGHT:
                g = g * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            z_hat = tl.load(Z + row_start + cols, mask=mask, other=0.0).to(tl.float32) * rstd
            sum_g_zhat += g * z_hat
        mean_g_zhat = tl.sum(sum_g_zhat, axis=0) / n_cols

        for col_start in range(0, n_cols, BLOCK):
            cols = col_start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            dy = tl.load(DY + row_start + cols, mask=mask, other=0.0).to(tl.float32)
            g = dy
            if HAS_WEIGHT:
                g = dy * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            z_hat = tl.load(Z + row_start + cols, mask=mask, other=0.0).to(tl.float32) * rstd
            dx = rstd * (g - z_hat * mean_g_zhat)
            if HAS_DRESIDUAL:
                dx += tl.load(DRESIDUAL + row_start + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(DX + row_start + cols, dx.to(DX.dtype.element_ty), mask=mask)
            if HAS_DWEIGHT:
                partial = tl.load(DW_PARTIAL + partial_start + cols, mask=mask, other=0.0)
                tl.store(DW_PARTIAL + partial_start + cols, partial + dy * z_hat, mask=mask)
        row_start += n_cols


@triton.jit
def _rms_norm_sum_partials_kernel(
    DW, DW_PARTIAL, n_partials, n_cols,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    # dweight[cols] = sum over the partial rows, in fp32, in a fixed order: deterministic.
    cols = tl.program_id(0) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    col_mask = cols < n_cols
    total = tl.zeros([BLOCK_ROWS, BLOCK_COLS], dtype=tl.float32)
    for first in range(0, n_partials, BLOCK_ROWS):
        rows = first + tl.arange(0, BLOCK_ROWS)
        mask = (rows < n_partials)[:, None] & col_mask[None, :]
        offsets = rows[:, None].to(tl.int64) * n_cols + cols[None, :]
        total += tl.load(DW_PARTIAL + offsets, mask=mask, other=0.0)
    tl.store(DW + cols, tl.sum(total, axis=0).to(DW.dtype.element_ty), mask=col_mask)


# ---------------------------------------------------------------- launch configuration


def _fused_block(hidden: int, max_cols: int):
    """Power-of-two block holding a whole row, or None when the row is longer than max_cols."""
    block = triton.next_power_of_2(hidden)
    return block if block <= max_cols else None


# Warps for a block of n elements: 16 elements per thread forward, 8 backward (more live values
# per element), 1 to 32 warps. These keep ptxas (sm_90) within its register budget, no spills.
def _fwd_num_warps(block_elements: int) -> int:
    return min(max(block_elements // 512, 1), 32)


def _bwd_num_warps(block_elements: int) -> int:
    return min(max(block_elements // 256, 1), 32)


def _bwd_program_count(rows: int, device: torch.device) -> int:
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return min(rows, sms * BWD_PROGRAMS_PER_SM)
    return min(rows, BWD_PROGRAMS_INTERPRETED)


# ---------------------------------------------------------------- public launchers


def rms_norm_fwd(y, rstd, x, weight, residual, residual_out, eps: float) -> None:
    """Writes y, rstd (and residual_out when residual is given) for x [rows, hidden]."""
    rows, hidden = x.shape
    if rows == 0:
        return
    has_weight = weight is not None
    has_residual = residual is not None
    pointers = (
        y, rstd, x,
        weight if has_weight else x,
        residual if has_residual else x,
        residual_out if has_residual else y,
    )
    block = _fused_block(hidden, MAX_FUSED_FWD_COLS)
    if block is not None:
        rows_per_program = min(max(MIN_ELEMENTS_PER_PROGRAM // block, 1), triton.next_power_of_2(rows))
        grid = (triton.cdiv(rows, rows_per_program),)
        _rms_norm_fwd_fused_kernel[grid](
            *pointers, rows, hidden, eps,
            BLOCK=block, ROWS_PER_PROGRAM=rows_per_program,
            HAS_WEIGHT=has_weight, HAS_RESIDUAL=has_residual,
            num_warps=_fwd_num_warps(block * rows_per_program),
        )
    else:
        _rms_norm_fwd_looped_kernel[(rows,)](
            *pointers, rows, hidden, eps,
            BLOCK=LOOPED_BLOCK, HAS_WEIGHT=has_weight, HAS_RESIDUAL=has_residual,
            num_warps=_fwd_num_warps(LOOPED_BLOCK),
        )


def rms_norm_bwd(dx, dweight, dy, z, weight, rstd, dresidual) -> None:
    """Writes dx (and dweight when it is given) from dy, the normalized input z and rstd."""
    rows, hidden = dy.shape
    has_weight = weight is not None
    has_dweight = dweight is not None
    has_dresidual = dresidual is not None
    if rows == 0:
        if has_dweight:
            dweight.zero_()
        return

    programs = _bwd_program_count(rows, dy.device)
    rows_per_program = triton.cdiv(rows, programs)
    programs = triton.cdiv(rows, rows_per_program)
    dw_partial = torch.empty((programs, hidden) if has_dweight else (1,), dtype=torch.float32, device=dy.device)
    pointers = (
        dx, dw_partial, dy, z,
        weight if has_weight else dy,
        rstd,
        dresidual if has_dresidual else dy,
    )
    flags = dict(HAS_WEIGHT=has_weight, HAS_DWEIGHT=has_dweight, HAS_DRESIDUAL=has_dresidual)
    block = _fused_block(hidden, MAX_FUSED_BWD_COLS)
    if block is not None:
        _rms_norm_bwd_fused_kernel[(programs,)](
            *pointers, rows, hidden, rows_per_program, BLOCK=block, **flags,
            PIPELINE_STAGES=BWD_PIPELINE_STAGES, num_warps=_bwd_num_warps(block),
        )
    else:
        _rms_norm_bwd_looped_kernel[(programs,)](
            *pointers, rows, hidden, rows_per_program, BLOCK=LOOPED_BLOCK, **flags,
            num_warps=_bwd_num_warps(LOOPED_BLOCK),
        )
    if has_dweight:
        # A Triton kernel rather than dw_partial.sum(0): PyTorch's reduction over dim 0 took
        # 18 us for [264, 4096] on an H200, as long as the rest of a 4096 x 4096 backward.
        _rms_norm_sum_partials_kernel[(triton.cdiv(hidden, SUM_BLOCK_COLS),)](
            dweight, dw_partial, programs, hidden,
            BLOCK_ROWS=SUM_BLOCK_ROWS, BLOCK_COLS=SUM_BLOCK_COLS, num_warps=4,
        )


# ---------------------------------------------------------------- ahead-of-time compile specs


def _aot_specs_for(dtype: str) -> list:
    data = f"*{dtype}"
    fwd_signature = {
        "Y": data, "RSTD": "*fp32", "X": data, "W": data, "RESIDUAL": data, "RESIDUAL_OUT": data,
        "n_rows": "i32", "n_cols": "i32", "eps": "fp32",
    }
    bwd_signature = {
        "DX": data, "DW_PARTIAL": "*fp32", "DY": data, "Z": data, "W": data, "RSTD": "*fp32",
        "DRESIDUAL": data, "n_rows": "i32", "n_cols": "i32", "rows_per_program": "i32",
    }
    fwd_flags = {"HAS_WEIGHT": True, "HAS_RESIDUAL": True}
    bwd_flags = {"HAS_WEIGHT": True, "HAS_DWEIGHT": True, "HAS_DRESIDUAL": True}
    sum_signature = {"DW": data, "DW_PARTIAL": "*fp32", "n_partials": "i32", "n_cols": "i32"}
    fused_block = 4096
    specs = [
        (_rms_norm_fwd_fused_kernel, fwd_signature,
         {"BLOCK": fused_block, "ROWS_PER_PROGRAM": 1, **fwd_flags}, _fwd_num_warps(fused_block)),
        (_rms_norm_fwd_looped_kernel, fwd_signature,
         {"BLOCK": LOOPED_BLOCK, **fwd_flags}, _fwd_num_warps(LOOPED_BLOCK)),
        (_rms_norm_bwd_fused_kernel, bwd_signature,
         {"BLOCK": fused_block, **bwd_flags, "PIPELINE_STAGES": BWD_PIPELINE_STAGES},
         _bwd_num_warps(fused_block)),
        (_rms_norm_bwd_looped_kernel, bwd_signature,
         {"BLOCK": LOOPED_BLOCK, **bwd_flags}, _bwd_num_warps(LOOPED_BLOCK)),
        (_rms_norm_sum_partials_kernel, sum_signature,
         {"BLOCK_ROWS": SUM_BLOCK_ROWS, "BLOCK_COLS": SUM_BLOCK_COLS}, 4),
    ]
    return [(dtype, *spec) for spec in specs]


# (element type, kernel, runtime signature, constexprs, num_warps) per kernel and dtype: the
# representative configurations tests/test_triton_aot.py compiles for sm_80, sm_90, gfx942.
AOT_SPECS = [spec for dtype in ("fp32", "fp16", "bf16") for spec in _aot_specs_for(dtype)]
