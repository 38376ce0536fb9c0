"""RoPE 1D and 3D in Triton, with plain-Python launchers.

Tensors are 4-D, [B, S, H, D] (layout "bshd") or [B, H, S, D] ("bhsd"), addressed through their
(batch, seq, head) strides; the last dim has stride 1. Outputs are allocated by the caller (they
may be the inputs: in place). The math is the CUDA kernel's (kernel_src/rope/rope.h): pairs in
bands (one band in 1D; t, h, w in 3D), interleaved (2p, 2p + 1) or rotate-half within a band,
    y1 = x1 * cos - x2 * sin,   y2 = x2 * cos + x1 * sin   (sin negated when conjugate),
fp32 inside. Angles come from cos / sin tables (1D: row s, or row positions[b, s]; positions
outside the table give NaN, never an out-of-bounds read) or from the token's grid coordinates
(3D: position idx_a * scale_a times the band frequency theta^(-2i / d_a), which the launcher
passes as a [R/2] fp32 vector rounded from fp64 as the CUDA kernel rounds it).
(Triton 3.8's interpreter, used on CPU tensors, truncates fp32 -> bf16 instead of rounding, so
bf16 results there can differ by one ulp.)

One program takes one token and walks its heads (q's, then k's) in blocks of BLOCK_H rows; the
token's cos / sin are loaded or computed once per program.
"""

import functools

import torch
import triton
import triton.language as tl

# Elements of x a program keeps per head block (BLOCK_H rows of the rotated pairs).
BLOCK_ELEMENTS = 4096
# Dims rot_dim..head_dim are copied in blocks of this many columns.
TAIL_BLOCK = 64


@triton.jit
def _table_angles(COS, SIN, POS, b, s, pairs, pair_mask, cos_sb, cos_sr, sin_sb, sin_sr,
                  pos_sb, pos_ss, n_rows, HAS_POS: tl.constexpr):
    """cos and sin (fp32) of the token's pairs from the tables."""
    if HAS_POS:
        row = tl.load(POS + b * pos_sb + s * pos_ss).to(tl.int64)
        valid = (row >= 0) & (row < n_rows)
        safe_row = tl.where(valid, row, 0)
        c = tl.load(COS + safe_row * cos_sr + pairs, mask=pair_mask, other=0.0).to(tl.float32)
        sn = tl.load(SIN + safe_row * sin_sr + pairs, mask=pair_mask, other=0.0).to(tl.float32)
        c = tl.where(valid, c, float("nan"))
        sn = tl.where(valid, sn, float("nan"))
    else:
        c = tl.load(COS + b * cos_sb + s * cos_sr + pairs, mask=pair_mask, other=0.0).to(tl.float32)
        sn = tl.load(SIN + b * sin_sb + s * sin_sr + pairs, mask=pair_mask, other=0.0).to(tl.float32)
    return c, sn


@triton.jit
def _grid_angles(INV_FREQ, s, pairs, pair_mask, band, height, width, scale_t, scale_h, scale_w):
    """cos and sin (fp32) of the token's pairs from its (t, h, w) grid coordinates."""
    plane = height * width
    t = s // plane
    h = (s // width) % height
    w = s % width
    index = tl.where(band == 0, t, tl.where(band == 1, h, w)).to(tl.float32)
    scale = tl.where(band == 0, scale_t, tl.where(band == 1, scale_h, scale_w))
    inv_freq = tl.load(INV_FREQ + pairs, mask=pair_mask, other=0.0)
    angle = (index * scale) * inv_freq
    return tl.cos(angle), tl.sin(angle)


@triton.jit
def _rotate_rows(OUT, X, x_base, out_base, x_sh, out_sh, n_heads, off1, off2, pair_mask, c, sn,
                 BLOCK_H: tl.constexpr):
    """The pair rotation of every head of one token of one tensor."""
    for h0 in range(0, n_heads, BLOCK_H):
        heads = h0 + tl.arange(0, BLOCK_H)
        mask = (heads < n_heads)[:, None] & pair_mask[None, :]
        x_row = X + x_base + heads[:, None].to(tl.int64) * x_sh
        x1 = tl.load(x_row + off1[None, :], mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(x_row + off2[None, :], mask=mask, other=0.0).to(tl.float32)
        y1 = x1 * c[None, :] - x2 * sn[None, :]
        y2 = x2 * c[None, :] + x1 * sn[None, :]
        out_row = OUT + out_base + heads[:, None].to(tl.int64) * out_sh
        tl.store(out_row + off1[None, :], y1.to(OUT.dtype.element_ty), mask=mask)
        tl.store(out_row + off2[None, :], y2.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _copy_tail(OUT, X, x_base, out_base, x_sh, out_sh, n_heads, rot_dim, head_dim,
               BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr):
    """Dims rot_dim..head_dim of every head of one token, unchanged."""
    for h0 in range(0, n_heads, BLOCK_H):
        heads = h0 + tl.arange(0, BLOCK_H)
        for d0 in range(rot_dim, head_dim, BLOCK_T):
            dims = d0 + tl.arange(0, BLOCK_T)
            mask = (heads < n_heads)[:, None] & (dims < head_dim)[None, :]
            x = tl.load(X + x_base + heads[:, None].to(tl.int64) * x_sh + dims[None, :], mask=mask)
            tl.store(OUT + out_base + heads[:, None].to(tl.int64) * out_sh + dims[None, :], x,
                     mask=mask)


@triton.jit
def _rope_kernel(
    Q_OUT, K_OUT, Q, K, COS, SIN, POS, INV_FREQ,
    q_sb, q_ss, q_sh, qo_sb, qo_ss, qo_sh,
    k_sb, k_ss, k_sh, ko_sb, ko_ss, ko_sh,
    cos_sb, cos_sr, sin_sb, sin_sr, pos_sb, pos_ss,
    seq, q_heads, k_heads, head_dim, rot_dim, n_rows,
    band1, band2, height, width, scale_t, scale_h, scale_w, sin_sign,
    BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr,
    INTERLEAVED: tl.constexpr, FROM_GRID: tl.constexpr, HAS_K: tl.constexpr,
    HAS_POS: tl.constexpr, COPY_TAIL: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    b = token // seq
    s = token % seq
    n_pairs = rot_dim // 2
    pairs = tl.arange(0, BLOCK_P)
    pair_mask = pairs < n_pairs

    # Bands end at pairs band1 and band2 (1D: band1 == band2 == n_pairs, one band).
    band = tl.where(pairs < band1, 0, tl.where(pairs < band2, 1, 2))
    band_start = tl.where(band == 0, 0, tl.where(band == 1, band1, band2))
    band_pairs = tl.where(band == 0, band1, tl.where(band == 1, band2 - band1, n_pairs - band2))
    if INTERLEAVED:
        off1 = 2 * pairs
        off2 = 2 * pairs + 1
    else:
        off1 = 2 * band_start + (pairs - band_start)
        off2 = off1 + band_pairs

    if FROM_GRID:
        c, sn = _grid_angles(INV_FREQ, s, pairs, pair_mask, band, height, width,
                             scale_t, scale_h, scale_w)
    else:
        c, sn = _table_angles(COS, SIN, POS, b, s, pairs, pair_mask, cos_sb, cos_sr, sin_sb,
                              sin_sr, pos_sb, pos_ss, n_rows, HAS_POS)
    sn = sn * sin_sign

    q_base = b * q_sb + s * q_ss
    qo_base = b * qo_sb + s * qo_ss
    _rotate_rows(Q_OUT, Q, q_base, qo_base, q_sh, qo_sh, q_heads, off1, off2, pair_mask, c, sn,
                 BLOCK_H)
    if COPY_TAIL:
        _copy_tail(Q_OUT, Q, q_base, qo_base, q_sh, qo_sh, q_heads, rot_dim, head_dim,
                   BLOCK_H, BLOCK_T)
    if HAS_K:
        k_base = b * k_sb + s * k_ss
        ko_base = b * ko_sb + s * ko_ss
        _rotate_rows(K_OUT, K, k_base, ko_base, k_sh, ko_sh, k_heads, off1, off2, pair_mask, c, sn,
                     BLOCK_H)
        if COPY_TAIL:
            _copy_tail(K_OUT, K, k_base, ko_base, k_sh, ko_sh, k_heads, rot_dim, head_dim,
                       BLOCK_H, BLOCK_T)


# ---------------------------------------------------------------- launchers

_LAYOUT_DIMS = {"bshd": (0, 1, 2), "bhsd": (0, 2, 1)}


def _step(t: torch.Tensor, dim: int) -> int:
    return 0 if t.shape[dim] == 1 else t.stride(dim)


def _row_strides(t: torch.Tensor, layout: str) -> tuple[int, int, int]:
    batch, seq, head = _LAYOUT_DIMS[layout]
    return _step(t, batch), _step(t, seq), _step(t, head)


def _block_sizes(n_pairs: int, heads: int) -> tuple[int, int]:
    block_p = triton.next_power_of_2(n_pairs)
    block_h = max(1, min(triton.next_power_of_2(heads), BLOCK_ELEMENTS // block_p))
    return block_p, block_h


def _num_warps(block_p: int, block_h: int) -> int:
    return min(max(block_p * block_h // 256, 1), 8)


def _launch(q_out, k_out, q, k, layout, rot_dim, interleaved, conjugate, *, cos=None, sin=None,
            positions=None, inv_freq=None, bands=None, grid3=(1, 1), scale=(1.0, 1.0, 1.0)):
    batch, seq_dim, head_dim_index = _LAYOUT_DIMS[layout]
    seq = q.shape[seq_dim]
    tokens = q.shape[batch] * seq
    q_heads = q.shape[head_dim_index]
    k_heads = k.shape[head_dim_index] if k is not None else 0
    if tokens == 0 or q_heads + k_heads == 0:
        return
    head_dim = q.shape[3]
    n_pairs = rot_dim // 2
    block_p, block_h = _block_sizes(n_pairs, max(q_heads, k_heads))
    from_grid = inv_freq is not None
    has_pos = positions is not None
    table_strides = (0, 0, 0, 0)
    pos_strides = (0, 0)
    n_rows = 0
    if not from_grid:
        row_dim = cos.dim() - 2
        cos_sb = _step(cos, 0) if cos.dim() == 3 else 0
        sin_sb = _step(sin, 0) if sin.dim() == 3 else 0
        table_strides = (cos_sb, _step(cos, row_dim), sin_sb, _step(sin, row_dim))
        if has_pos:
            pos_strides = (_step(positions, 0) if positions.dim() == 2 else 0,
                           _step(positions, positions.dim() - 1))
            n_rows = cos.shape[0]
    band1, band2 = bands if bands is not None else (n_pairs, n_pairs)
    k_strides = (_row_strides(k, layout) + _row_strides(k_out, layout)) if k is not None else (0,) * 6
    copy_tail = rot_dim < head_dim and not (q_out.data_ptr() == q.data_ptr() and
                                            (k is None or k_out.data_ptr() == k.data_ptr()))
    placeholder = q
    _rope_kernel[(tokens,)](
        q_out, k_out if k is not None else q_out, q, k if k is not None else q,
        cos if cos is not None else placeholder, sin if sin is not None else placeholder,
        positions if has_pos else placeholder, inv_freq if from_grid else placeholder,
        *_row_strides(q, layout), *_row_strides(q_out, layout), *k_strides,
        *table_strides, *pos_strides,
        seq, q_heads, k_heads, head_dim, rot_dim, n_rows,
        band1, band2, grid3[0], grid3[1], float(scale[0]), float(scale[1]), float(scale[2]),
        -1.0 if conjugate else 1.0,
        BLOCK_P=block_p, BLOCK_H=block_h, BLOCK_T=TAIL_BLOCK,
        INTERLEAVED=interleaved, FROM_GRID=from_grid, HAS_K=k is not None, HAS_POS=has_pos,
        COPY_TAIL=copy_tail, num_warps=_num_warps(block_p, block_h),
    )


def rope_fwd(q_out, k_out, q, k, cos, sin, positions, layout: str, interleaved: bool,
             conjugate: bool) -> None:
    """1D: rotates q into q_out (and k into k_out) with the cos / sin tables."""
    _launch(q_out, k_out, q, k, layout, 2 * cos.shape[-1], interleaved, conjugate,
            cos=cos, sin=sin, positions=positions)


@functools.lru_cache(maxsize=64)
def _grid_inv_freq(split: tuple, theta: float, device: torch.device) -> torch.Tensor:
    """theta^(-2i / d_a) for the pairs of every band, computed in fp64 and rounded once."""
    parts = [theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d) for d in split if d > 0]
    return torch.cat(parts).to(torch.float32).to(device)


def rope3d_fwd(out, x, grid, split, theta: float, scale, layout: str, interleaved: bool,
               conjugate: bool) -> None:
    """3D: rotates x into out with angles from the (T, H, W) grid coordinates of each token."""
    d_t, d_h, _ = split
    inv_freq = _grid_inv_freq(tuple(split), float(theta), x.device)
    _launch(out, None, x, None, layout, sum(split), interleaved, conjugate,
            inv_freq=inv_freq, bands=(d_t // 2, (d_t + d_h) // 2), grid3=(grid[1], grid[2]),
            scale=scale)


# ---------------------------------------------------------------- ahead-of-time compile specs


def _aot_specs_for(dtype: str) -> list:
    data = f"*{dtype}"
    signature = {
        "Q_OUT": data, "K_OUT": data, "Q": data, "K": data, "COS": "*fp32", "SIN": "*fp32",
        "POS": "*i64", "INV_FREQ": "*fp32",
        **{name: "i64" for name in (
            "q_sb", "q_ss", "q_sh", "qo_sb", "qo_ss", "qo_sh",
            "k_sb", "k_ss", "k_sh", "ko_sb", "ko_ss", "ko_sh",
            "cos_sb", "cos_sr", "sin_sb", "sin_sr", "pos_sb", "pos_ss")},
        "seq": "i32", "q_heads": "i32", "k_heads": "i32", "head_dim": "i32", "rot_dim": "i32",
        "n_rows": "i32", "band1": "i32", "band2": "i32", "height": "i32", "width": "i32",
        "scale_t": "fp32", "scale_h": "fp32", "scale_w": "fp32", "sin_sign": "fp32",
    }
    common = {"BLOCK_P": 64, "BLOCK_H": 32, "BLOCK_T": TAIL_BLOCK, "COPY_TAIL": True}
    table = {**common, "INTERLEAVED": False, "FROM_GRID": False, "HAS_K": True, "HAS_POS": True}
    grid = {**common, "INTERLEAVED": True, "FROM_GRID": True, "HAS_K": False, "HAS_POS": False}
    warps = _num_warps(64, 32)
    return [(dtype, _rope_kernel, signature, table, warps),
            (dtype, _rope_kernel, signature, grid, warps)]


# (element type, kernel, runtime signature, constexprs, num_warps) per kernel and dtype: the
# representative configurations tests/test_triton_aot.py compiles for sm_80, sm_90, gfx942.
AOT_SPECS = [spec for dtype in ("fp32", "fp16", "bf16") for spec in _aot_specs_for(dtype)]
