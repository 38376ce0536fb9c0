"""GEGLU / SwiGLU and elementwise GELU, forward and backward, in Triton, with plain launchers.

    geglu:  x [rows, 2H] -> y [rows, H],  y = act(a) * b,  (a, b) = (x[:, :H], x[:, H:]), or
            (x[:, H:], x[:, :H]) with swap_halves; dx [rows, 2H] holds (da, db) in x's places:
            da = dy * b * act'(a), db = dy * act(a)
    gelu:   y = act(x), dx = dy * act'(x), elementwise over contiguous tensors of any shape

Tensors are contiguous; outputs are allocated by the caller. Math is fp32 and the same as the CUDA
and CPU kernels' (kernel_src/geglu/activation.h): GELU-tanh through 0.5 (1 + tanh(u)) =
sigmoid(2u), so only exp and a division are needed (Triton has no portable tanh). Every downcast
rounds to nearest even on a GPU (Triton 3.8's interpreter truncates fp32 -> bf16 instead).
"""

import triton
import triton.language as tl

# Activation codes (the ACT constexpr) by the names the ops take.
ACTIVATIONS = {"gelu_tanh": 0, "gelu": 1, "silu": 2}
APPROXIMATIONS = {"tanh": 0, "none": 1}

_TWO_SQRT_TWO_OVER_PI = tl.constexpr(1.5957691216057308)  # 2 * sqrt(2 / pi)
_GELU_TANH_CUBIC = tl.constexpr(0.044715)
_SQRT_HALF = tl.constexpr(0.7071067811865476)  # 1 / sqrt(2)
_INV_SQRT_TWO_PI = tl.constexpr(0.3989422804014327)  # 1 / sqrt(2 pi)
# (Under Triton 3.8's interpreter a constexpr on the left of `*` wraps the tensor product in a
# constexpr, which a nested jit call then rejects: the kernels keep tensors on the left.)

# Elements per program: gated kernels take a [BLOCK_ROWS, BLOCK_COLS] tile of y with
# BLOCK_ROWS * BLOCK_COLS = GATED_TILE (BLOCK_COLS at most MAX_GATED_COLS); elementwise kernels
# a flat block of ELEMENTWISE_BLOCK. 4 warps for the gated tile and 8 for the flat block give
# 16 elements per thread.
GATED_TILE = 2048
MAX_GATED_COLS = 1024
GATED_WARPS = 4
ELEMENTWISE_BLOCK = 4096
ELEMENTWISE_WARPS = 8


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _activation(a, ACT: tl.constexpr):
    """act(a) for fp32 a."""
    if ACT == 0:
        out = a * _sigmoid(a * _TWO_SQRT_TWO_OVER_PI * (1.0 + a * a * _GELU_TANH_CUBIC))
    elif ACT == 1:
        out = a * (0.5 * (1.0 + tl.erf(a * _SQRT_HALF)))
    else:
        out = a * _sigmoid(a)
    return out


@triton.jit
def _activation_and_grad(a, ACT: tl.constexpr):
    """(act(a), act'(a)) for fp32 a."""
    if ACT == 0:
        a2 = a * a
        s = _sigmoid(a * _TWO_SQRT_TWO_OVER_PI * (1.0 + a2 * _GELU_TANH_CUBIC))
        out = a * s
        dz_da = (1.0 + a2 * (3.0 * _GELU_TANH_CUBIC)) * _TWO_SQRT_TWO_OVER_PI
        grad = s + a * s * (1.0 - s) * dz_da
    elif ACT == 1:
        cdf = 0.5 * (1.0 + tl.erf(a * _SQRT_HALF))
        out = a * cdf
        grad = cdf + a * _INV_SQRT_TWO_PI * tl.exp(-0.5 * a * a)
    else:
        s = _sigmoid(a)
        out = a * s
        grad = s * (1.0 + a * (1.0 - s))
    return out, grad


@triton.jit
def _geglu_fwd_kernel(
    Y, X, n_rows, hidden, a_offset, b_offset,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, ACT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    mask = (rows < n_rows)[:, None] & (cols < hidden)[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    x_offsets = rows64 * hidden * 2 + cols[None, :]
    a = tl.load(X + x_offsets + a_offset, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(X + x_offsets + b_offset, mask=mask, other=0.0).to(tl.float32)
    y = _activation(a, ACT) * b
    tl.store(Y + rows64 * hidden + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _geglu_bwd_kernel(
    DX, DY, X, n_rows, hidden, a_offset, b_offset,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, ACT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    mask = (rows < n_rows)[:, None] & (cols < hidden)[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    x_offsets = rows64 * hidden * 2 + cols[None, :]
    dy = tl.load(DY + rows64 * hidden + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    a = tl.load(X + x_offsets + a_offset, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(X + x_offsets + b_offset, mask=mask, other=0.0).to(tl.float32)
    act, grad = _activation_and_grad(a, ACT)
    tl.store(DX + x_offsets + a_offset, (dy * b * grad).to(DX.dtype.element_ty), mask=mask)
    tl.store(DX + x_offsets + b_offset, (dy * act).to(DX.dtype.element_ty), mask=mask)


@triton.jit
def _gelu_fwd_kernel(Y, X, n_elements, BLOCK: tl.constexpr, ACT: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offsets, _activation(x, ACT).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _gelu_bwd_kernel(DX, DY, X, n_elements, BLOCK: tl.constexpr, ACT: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    dy = tl.load(DY + offsets, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    _act, grad = _activation_and_grad(x, ACT)
    tl.store(DX + offsets, (dy * grad).to(DX.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------- launchers


def _gated_launch(rows: int, hidden: int):
    """(grid, BLOCK_ROWS, BLOCK_COLS) for a [rows, hidden] output."""
    block_cols = min(triton.next_power_of_2(hidden), MAX_GATED_COLS)
    block_rows = min(GATED_TILE // block_cols, triton.next_power_of_2(rows))
    return (triton.cdiv(rows, block_rows), triton.cdiv(hidden, block_cols)), block_rows, block_cols


def _halves(hidden: int, swap_halves: bool):
    """(a_offset, b_offset) inside a row of x."""
    return (hidden, 0) if swap_halves else (0, hidden)


def geglu_fwd(y, x, activation: str, swap_halves: bool) -> None:
    """Writes y [rows, H] = act(a) * b for x [rows, 2H]."""
    rows, hidden = y.shape
    if rows == 0:
        return
    grid, block_rows, block_cols = _gated_launch(rows, hidden)
    _geglu_fwd_kernel[grid](
        y, x, rows, hidden, *_halves(hidden, swap_halves),
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, ACT=ACTIVATIONS[activation],
        num_warps=GATED_WARPS,
    )


def geglu_bwd(dx, dy, x, activation: str, swap_halves: bool) -> None:
    """Writes dx [rows, 2H] (da and db in x's places) from dy [rows, H] and x."""
    rows, hidden = dy.shape
    if rows == 0:
        return
    grid, block_rows, block_cols = _gated_launch(rows, hidden)
    _geglu_bwd_kernel[grid](
        dx, dy, x, rows, hidden, *_halves(hidden, swap_halves),
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, ACT=ACTIVATIONS[activation],
        num_warps=GATED_WARPS,
    )


def _elementwise_block(n: int) -> int:
    return min(triton.next_power_of_2(n), ELEMENTWISE_BLOCK)


def gelu_fwd(y, x, approximate: str) -> None:
    """Writes y = gelu(x) elementwise."""
    n = x.numel()
    if n == 0:
        return
    block = _elementwise_block(n)
    _gelu_fwd_kernel[(triton.cdiv(n, block),)](
        y, x, n, BLOCK=block, ACT=APPROXIMATIONS[approximate], num_warps=ELEMENTWISE_WARPS,
    )


def gelu_bwd(dx, dy, x, approximate: str) -> None:
    """Writes dx = dy * gelu'(x) elementwise."""
    n = x.numel()
    if n == 0:
        return
    block = _elementwise_block(n)
    _gelu_bwd_kernel[(triton.cdiv(n, block),)](
        dx, dy, x, n, BLOCK=block, ACT=APPROXIMATIONS[approximate], num_warps=ELEMENTWISE_WARPS,
    )


# ---------------------------------------------------------------- ahead-of-time compile specs


def _aot_specs_for(dtype: str) -> list:
    data = f"*{dtype}"
    gated = {"n_rows": "i32", "hidden": "i32", "a_offset": "i32", "b_offset": "i32"}
    fwd_signature = {"Y": data, "X": data, **gated}
    bwd_signature = {"DX": data, "DY": data, "X": data, **gated}
    flat_fwd_signature = {"Y": data, "X": data, "n_elements": "i64"}
    flat_bwd_signature = {"DX": data, "DY": data, "X": data, "n_elements": "i64"}
    tile = {"BLOCK_ROWS": GATED_TILE // MAX_GATED_COLS, "BLOCK_COLS": MAX_GATED_COLS}
    flat = {"BLOCK": ELEMENTWISE_BLOCK}
    # Every activation in bf16; fp32 and fp16 differ only in loads and stores, so GELU-tanh.
    gated_acts = ACTIVATIONS.values() if dtype == "bf16" else [ACTIVATIONS["gelu_tanh"]]
    flat_acts = APPROXIMATIONS.values() if dtype == "bf16" else [APPROXIMATIONS["tanh"]]
    specs = []
    for act in gated_acts:
        specs.append((_geglu_fwd_kernel, fwd_signature, {**tile, "ACT": act}, GATED_WARPS))
        specs.append((_geglu_bwd_kernel, bwd_signature, {**tile, "ACT": act}, GATED_WARPS))
    for act in flat_acts:
        for kernel, signature in ((_gelu_fwd_kernel, flat_fwd_signature),
                                  (_gelu_bwd_kernel, flat_bwd_signature)):
            specs.append((kernel, signature, {**flat, "ACT": act}, ELEMENTWISE_WARPS))
    return [(dtype, *spec) for spec in specs]


# (element type, kernel, runtime signature, constexprs, num_warps) per kernel and dtype: the
# representative configurations tests/test_triton_aot.py compiles for sm_80, sm_90, gfx942.
AOT_SPECS = [spec for dtype in ("fp32", "fp16", "bf16") for spec in _aot_specs_for(dtype)]
