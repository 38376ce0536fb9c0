"""RoPE (rotary position embedding): the fp32 reference, argument checks, fakes, autograd, the
public API and the Python (Triton) backends.

1D: q and k are [B, S, H, D] (layout "bshd") or [B, H, S, D] ("bhsd"), any strides with a
contiguous last dim (q may be sliced out of a fused qkv projection); k may have fewer heads
(GQA). cos and sin hold R/2 columns: [S, R/2] or [B, S, R/2], or a table [P, R/2] read at
`positions` ([S] or [B, S], int32 or int64). Dims R..D pass through unchanged.
  interleaved=False: rotate-half pairs (i, i + R/2) (GPT-NeoX, Llama, transformers)
  interleaved=True:  pairs (2i, 2i + 1) (GPT-J, complex-number formulations)
  (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin); conjugate rotates by -angle.

3D (video DiTs): x is [B, S, heads, D] ("bshd") or [B, heads, S, D] ("bhsd") with S = T*H*W
tokens in (t, h, w) order. The rotated dims are three bands along D, t then h then w, of even
widths split = (d_t, d_h, d_w); token s = (t, h, w) has positions idx_a * scale_a, and pair i of
band a the angle position_a * theta^(-2i / d_a). Interleaved (the complex-pair form of Wan and
HunyuanVideo, the default) or rotate-half within each band. The kernels compute the angles; no
[S, D] table exists.
"""

import math

import torch

from ._checks import SUPPORTED_DTYPES, out_op_fake, triton_runs_on_cpu
from ._ops import BACKEND, add_op_namespace_prefix, ops
from ._register import FIRST_LOAD

LAYOUTS = ("bshd", "bhsd")
# Dims of (batch, seq, head) in a 4-D tensor of each layout; head_dim is dim 3.
_LAYOUT_DIMS = {"bshd": (0, 1, 2), "bhsd": (0, 2, 1)}


# ---------------------------------------------------------------- reference


def _rotate_pairs(x, cos, sin, bands, interleaved: bool, conjugate: bool):
    """x [..., D] rotated by cos / sin [..., R/2] (broadcast against x's leading dims) in x's
    dtype; `bands` lists (first element, width) of each band of the R rotated dims."""
    out = x.clone()
    if conjugate:
        sin = -sin
    if interleaved:
        rot = sum(width for _, width in bands)
        x1, x2 = x[..., 0:rot:2], x[..., 1:rot:2]
        out[..., 0:rot:2] = x1 * cos - x2 * sin
        out[..., 1:rot:2] = x2 * cos + x1 * sin
        return out
    for start, width in bands:
        half = width // 2
        pairs = slice(start // 2, start // 2 + half)
        c, s = cos[..., pairs], sin[..., pairs]
        x1, x2 = x[..., start:start + half], x[..., start + half:start + width]
        out[..., start:start + half] = x1 * c - x2 * s
        out[..., start + half:start + width] = x2 * c + x1 * s
    return out


def _table_for(x, table, positions, layout: str, compute):
    """cos or sin gathered for every token of x and shaped to broadcast against it:
    [B, S, 1, R/2] for "bshd", [B, 1, S, R/2] for "bhsd"."""
    table = table.to(compute)
    if positions is not None:
        table = table[positions.long()]  # [S, R/2] or [B, S, R/2]
    return _broadcast_table(table, layout)


def _broadcast_table(table, layout: str):
    """[S, R/2] or [B, S, R/2] -> [B or 1, S, 1, R/2] ("bshd") or [B or 1, 1, S, R/2] ("bhsd")."""
    if table.dim() == 2:
        table = table.unsqueeze(0)
    return table.unsqueeze(2) if layout == "bshd" else table.unsqueeze(1)


def rope_reference(q, k=None, cos=None, sin=None, positions=None, layout: str = "bshd",
                   interleaved: bool = False, conjugate: bool = False):
    """Pure PyTorch RoPE computed in fp32 (fp64 stays fp64); returns (q_out, k_out) in the
    inputs' dtype, k_out None when k is None. Same arguments and meaning as apply_rotary."""
    _layout_dims("rope_reference", layout)
    compute = torch.promote_types(q.dtype, torch.float32)
    bands = [(0, 2 * cos.shape[-1])]

    def rotate(x):
        c = _table_for(x, cos, positions, layout, compute)
        s = _table_for(x, sin, positions, layout, compute)
        return _rotate_pairs(x.to(compute), c, s, bands, interleaved, conjugate).to(x.dtype)

    return rotate(q), (rotate(k) if k is not None else None)


def _grid_tables(grid, split, theta: float, scale, compute, device):
    """The explicit cos / sin tables [S, R/2] of the 3D rotation, in `compute`: per band the
    fp32 (fp64 for fp64) frequencies theta^(-2i / d_a) times positions idx_a * scale_a."""
    frames, height, width = grid
    index = torch.arange(frames * height * width, device=device)
    coords = (index // (height * width), (index // width) % height, index % width)
    angles = []
    for coord, width_a, scale_a in zip(coords, split, scale):
        if width_a == 0:
            continue
        inv_freq = (theta ** (-torch.arange(0, width_a, 2, dtype=torch.float64) / width_a))
        position = coord.to(compute) * torch.tensor(scale_a, dtype=compute)
        angles.append(position[:, None] * inv_freq.to(compute).to(device)[None, :])
    angle = torch.cat(angles, dim=-1)
    return angle.cos(), angle.sin()


def rope3d_reference(x, grid, split, theta: float = 10000.0, scale=(1.0, 1.0, 1.0),
                     layout: str = "bshd", interleaved: bool = True, conjugate: bool = False):
    """Pure PyTorch 3D RoPE: builds the explicit [S, R/2] table in fp32 (fp64 for fp64 x), then
    rotates band by band; returns x's dtype. Same arguments and meaning as apply_rope3d."""
    _check_rope3d_args("rope3d_reference", x, grid, split, theta, scale, layout,
                       check_dtype=False)
    compute = torch.promote_types(x.dtype, torch.float32)
    cos, sin = _grid_tables(grid, split, theta, scale, compute, x.device)
    starts = [0, split[0], split[0] + split[1]]
    bands = [(start, width) for start, width in zip(starts, split) if width > 0]
    c, s = _broadcast_table(cos, layout), _broadcast_table(sin, layout)
    return _rotate_pairs(x.to(compute), c, s, bands, interleaved, conjugate).to(x.dtype)


# ---------------------------------------------------------------- public API


def apply_rotary(q, k=None, cos=None, sin=None, *, positions=None, layout: str = "bshd",
                 interleaved: bool = False, inplace: bool = False, conjugate: bool = False):
    """Rotary position embedding of q (and k, which may have fewer heads) in one kernel launch.

    q, k: [B, S, H, D] (layout "bshd") or [B, H, S, D] ("bhsd"), float32 / float16 / bfloat16;
    any strides with a contiguous last dim (e.g. views of a fused qkv projection).
    cos, sin: fp32 or q's dtype, R/2 columns: [S, R/2] or [B, S, R/2]; with `positions`
    ([S] or [B, S], int32 / int64) a table [P, R/2] read at row positions[b, s]. Positions
    outside the table raise on the CPU; on CUDA they are the caller's contract (that token's
    output is NaN; the table is never read out of bounds).
    interleaved=False rotates pairs (i, i + R/2) (GPT-NeoX / Llama); True pairs (2i, 2i + 1)
    (GPT-J). Dims R..D are copied unchanged. conjugate=True rotates by the opposite angle.

    Returns (q_out, k_out), k_out None when k is None. Out of place (default): new tensors,
    contiguous in the input layout, differentiable in q and k (cos and sin get no gradient: if
    one requires grad with grad mode on, this raises). inplace=True overwrites q and k and
    returns them: inference only.
    """
    _check_public_args("apply_rotary", q, k, cos, sin, layout, interleaved, conjugate)
    if inplace:
        if torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)):
            raise ValueError("apply_rotary: inplace=True is for inference; q or k requires grad "
                             "(use inplace=False, or torch.no_grad())")
        ops.rope_inplace(q, k, cos, sin, positions, layout, interleaved, conjugate)
        return q, k
    q_out, k_out = ops.rope(q, k, cos, sin, positions, layout, interleaved, conjugate)
    return q_out, (k_out if k is not None else None)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """transformers' `apply_rotary_pos_emb`, same signature and result (in fp32 math).

    q, k: [B, H, S, D] with unsqueeze_dim=1 (transformers' attention layout), [B, S, H, D] with
    unsqueeze_dim=2. cos, sin: [B, S, D] (or [S, D]) built as cat(freqs, freqs) by the model's
    rotary embedding, as every transformers RotaryEmbedding builds them: only the first half
    (a view, no copy) is read. position_ids is accepted and unused, as in transformers 4.38 to
    4.47 where it was "Deprecated and unused"; later versions dropped it (see
    layers.ApplyRotaryPosEmb for their signature).
    """
    op = "apply_rotary_pos_emb"
    if unsqueeze_dim not in (1, 2):
        raise ValueError(f"{op}: unsqueeze_dim must be 1 ([B, H, S, D]) or 2 ([B, S, H, D]), "
                         f"got {unsqueeze_dim!r}")
    for name, t in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if q.dim() != 4:
        raise ValueError(f"{op}: q must be 4-D, got shape {tuple(q.shape)}")
    if cos.shape[-1] != q.shape[-1] or cos.shape[-1] % 2:
        raise ValueError(f"{op}: cos must have q's (even) last dim {q.shape[-1]}, got shape "
                         f"{tuple(cos.shape)}")
    half = cos.shape[-1] // 2
    cos_half, sin_half = cos[..., :half], sin[..., :half]
    if cos_half.dtype not in (torch.float32, q.dtype):
        cos_half, sin_half = cos_half.float(), sin_half.float()
    layout = "bhsd" if unsqueeze_dim == 1 else "bshd"
    return apply_rotary(q, k, cos_half, sin_half, layout=layout)


def apply_rope3d(x, grid, split, theta: float = 10000.0, scale=(1.0, 1.0, 1.0), *,
                 layout: str = "bshd", interleaved: bool = True, conjugate: bool = False):
    """3D rotary embedding of video tokens, angles computed in the kernel (no table).

    x: [B, S, heads, D] ("bshd") or [B, heads, S, D] ("bhsd"), float32 / float16 / bfloat16,
    any strides with a contiguous last dim, S = T * H * W tokens in (t, h, w) order.
    grid: (T, H, W). split: (d_t, d_h, d_w), even band widths along D, t then h then w; dims
    past their sum are copied unchanged. theta: frequency base. scale: per-axis position scale
    (position_a = index_a * scale_a). interleaved=True rotates pairs (2i, 2i + 1) (Wan,
    HunyuanVideo); False rotates (i, i + d_a / 2) within each band. conjugate=True rotates by
    the opposite angle.

    Returns a new tensor, contiguous in the layout; differentiable in x.
    Wan: split = (D - 2 * (2 * (D // 6)), 2 * (D // 6), 2 * (D // 6)), theta 10000.
    HunyuanVideo: split = rope_dim (16, 56, 56), theta 256.
    """
    op = "apply_rope3d"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(layout, str):
        raise TypeError(f"{op}: layout must be 'bshd' or 'bhsd', got {layout!r}")
    for name, flag in (("interleaved", interleaved), ("conjugate", conjugate)):
        if not isinstance(flag, bool):
            raise TypeError(f"{op}: {name} must be a bool, got {type(flag).__name__}")
    grid, split, theta, scale = _normalize_grid_args(op, grid, split, theta, scale)
    return ops.rope3d(x, grid, split, theta, scale, layout, interleaved, conjugate)


def _normalize_grid_args(op, grid, split, theta, scale):
    """grid, split as lists of ints, theta a float, scale a list of floats (or ValueError /
    TypeError naming the argument)."""
    def ints(name, values):
        try:
            out = [int(v) for v in values]
        except (TypeError, ValueError):
            raise TypeError(f"{op}: {name} must be 3 integers, got {values!r}") from None
        if len(out) != 3 or any(isinstance(v, bool) or int(v) != v for v in values):
            raise ValueError(f"{op}: {name} must be 3 integers, got {values!r}")
        return out

    grid, split = ints("grid", grid), ints("split", split)
    if isinstance(theta, bool) or not isinstance(theta, (int, float)):
        raise TypeError(f"{op}: theta must be a number, got {theta!r}")
    try:
        scale = [float(v) for v in scale]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: scale must be 3 numbers, got {scale!r}") from None
    return grid, split, float(theta), scale


# ---------------------------------------------------------------- argument checks


def _check_public_args(op, q, k, cos, sin, layout, interleaved, conjugate) -> None:
    for name, t in (("q", q), ("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if k is not None and not isinstance(k, torch.Tensor):
        raise TypeError(f"{op}: k must be a torch.Tensor or None, got {type(k).__name__}")
    if not isinstance(layout, str):
        raise TypeError(f"{op}: layout must be 'bshd' or 'bhsd', got {layout!r}")
    for name, flag in (("interleaved", interleaved), ("conjugate", conjugate)):
        if not isinstance(flag, bool):
            raise TypeError(f"{op}: {name} must be a bool, got {type(flag).__name__}")


def _layout_dims(op: str, layout) -> tuple[int, int, int]:
    if layout not in _LAYOUT_DIMS:
        raise ValueError(f"{op}: layout must be 'bshd' or 'bhsd', got {layout!r}")
    return _LAYOUT_DIMS[layout]


def _check_data(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    if t.dim() != 4:
        raise ValueError(f"{op}: {name} must be 4-D ([B, S, H, D] for layout 'bshd', "
                         f"[B, H, S, D] for 'bhsd'), got shape {tuple(t.shape)}")


def _check_like_q(op: str, name: str, t, q) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device != q.device:
        raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
    if t.dtype != q.dtype:
        raise TypeError(f"{op}: {name} dtype {t.dtype} must match q dtype {q.dtype}")


def _check_rope_args(op, q, k, cos, sin, positions, layout) -> tuple[int, int, int]:
    """Shapes, dtypes, devices and layout (not strides), as the C++ binding checks them."""
    dims = _layout_dims(op, layout)
    _check_data(op, "q", q)
    batch, seq, head_dim = q.shape[dims[0]], q.shape[dims[1]], q.shape[3]
    if k is not None:
        _check_like_q(op, "k", k, q)
        if k.dim() != 4 or (k.shape[dims[0]], k.shape[dims[1]], k.shape[3]) != (batch, seq, head_dim):
            raise ValueError(f"{op}: k must be 4-D with q's batch, seq and head_dim (heads may "
                             f"differ), got shape {tuple(k.shape)} for q of shape {tuple(q.shape)}")
    for name, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != q.device:
            raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
        if t.dtype not in (torch.float32, q.dtype):
            raise TypeError(f"{op}: {name} must be float32 or q's dtype {q.dtype}, got {t.dtype}")
    if sin.dtype != cos.dtype:
        raise TypeError(f"{op}: sin dtype {sin.dtype} must match cos dtype {cos.dtype}")
    if sin.shape != cos.shape:
        raise ValueError(f"{op}: sin must have cos's shape {tuple(cos.shape)}, got {tuple(sin.shape)}")
    if cos.dim() < 1 or cos.shape[-1] < 1 or 2 * cos.shape[-1] > head_dim:
        raise ValueError(f"{op}: cos must have 1 to head_dim / 2 = {head_dim // 2} columns (the "
                         f"rotated dims are 2 * cos.shape[-1]), got shape {tuple(cos.shape)}")
    if positions is not None:
        if not isinstance(positions, torch.Tensor):
            raise TypeError(f"{op}: positions must be a torch.Tensor or None, got "
                            f"{type(positions).__name__}")
        if positions.device != q.device:
            raise ValueError(f"{op}: positions is on {positions.device} but q is on {q.device}")
        if positions.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{op}: positions must be int32 or int64, got {positions.dtype}")
        shape_ok = (positions.dim() == 1 and positions.shape[0] == seq) or (
            positions.dim() == 2 and positions.shape[0] in (batch, 1) and positions.shape[1] == seq)
        if not shape_ok:
            raise ValueError(f"{op}: positions must be [S] or [B, S] with B = {batch}, S = {seq}, "
                             f"got shape {tuple(positions.shape)}")
        if cos.dim() != 2 or cos.shape[0] < 1:
            raise ValueError(f"{op}: with positions, cos and sin must be tables [P, R/2] with "
                             f"P >= 1, got shape {tuple(cos.shape)}")
    else:
        shape_ok = (cos.dim() == 2 and cos.shape[0] == seq) or (
            cos.dim() == 3 and cos.shape[0] in (batch, 1) and cos.shape[1] == seq)
        if not shape_ok:
            raise ValueError(f"{op}: without positions, cos and sin must be [S, R/2] or "
                             f"[B, S, R/2] with B = {batch}, S = {seq}, got shape {tuple(cos.shape)}")
    return dims


def _check_rope3d_args(op, x, grid, split, theta, scale, layout, check_dtype=True):
    """As the C++ binding checks them: ValueError / TypeError naming the argument."""
    dims = _layout_dims(op, layout)
    if check_dtype:
        _check_data(op, "x", x)
    elif not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{op}: x must be a 4-D tensor")
    seq, head_dim = x.shape[dims[1]], x.shape[3]
    if len(grid) != 3 or any(g < 1 for g in grid):
        raise ValueError(f"{op}: grid must be (T, H, W) with entries >= 1, got {list(grid)}")
    if grid[0] * grid[1] * grid[2] != seq:
        raise ValueError(f"{op}: grid {list(grid)} must multiply to the sequence length S = {seq}")
    if len(split) != 3 or any(w < 0 or w % 2 for w in split):
        raise ValueError(f"{op}: split entries must be even and >= 0, got {list(split)}")
    if not 2 <= sum(split) <= head_dim:
        raise ValueError(f"{op}: split {list(split)} must sum to between 2 and head_dim = "
                         f"{head_dim}, got {sum(split)}")
    if not (math.isfinite(theta) and theta > 0):
        raise ValueError(f"{op}: theta must be a positive number, got {theta}")
    if len(scale) != 3 or not all(math.isfinite(v) for v in scale):
        raise ValueError(f"{op}: scale must have 3 finite entries (t, h, w), got {list(scale)}")
    return dims


def _check_last_dim(op: str, name: str, t) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{op}: {name} must have a last dim of stride 1, got strides {t.stride()}")


def _check_out(op: str, name: str, out, like, q) -> None:
    _check_like_q(op, name, out, q)
    if out.shape != like.shape:
        raise ValueError(f"{op}: {name} must have shape {list(like.shape)}, got {list(out.shape)}")
    _check_last_dim(op, name, out)


def _check_positions_in_table(op: str, positions, cos) -> None:
    """On the CPU positions outside the table are an error (on CUDA: the caller's contract)."""
    if positions is None or positions.device.type != "cpu" or positions.numel() == 0:
        return
    low, high = int(positions.min()), int(positions.max())
    if low < 0 or high >= cos.shape[0]:
        raise ValueError(f"{op}: positions must be in [0, {cos.shape[0]}) (the rows of cos), got "
                         f"values in [{low}, {high}]")


def _last_dim_contiguous(t):
    return t if t is None or t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous()


# ---------------------------------------------------------------- functional ops, fakes, autograd


def _rope(q, k, cos, sin, positions, layout, interleaved, conjugate):
    _check_rope_args("rope", q, k, cos, sin, positions, layout)
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device) if k is not None else q.new_empty(0)
    ops.rope_fwd_out(q_out, k_out if k is not None else None, _last_dim_contiguous(q),
                     _last_dim_contiguous(k), _last_dim_contiguous(cos), _last_dim_contiguous(sin),
                     positions, layout, interleaved, conjugate)
    return q_out, k_out


def _rope_fake(q, k, cos, sin, positions, layout, interleaved, conjugate):
    _check_rope_args("rope", q, k, cos, sin, positions, layout)
    return q.new_empty(q.shape), (k.new_empty(k.shape) if k is not None else q.new_empty(0))


def _check_no_table_grad(needs_table_grad: bool) -> None:
    if needs_table_grad:
        raise ValueError("rope: cos and sin get no gradient, but one of them requires grad; "
                         "detach them (or build them under torch.no_grad())")


def _setup_rope(ctx, inputs, output):
    q, k, cos, sin, positions, layout, interleaved, conjugate = inputs
    # Autograd runs this with grad mode off; needs_input_grad says whether it was on and cos or
    # sin requires grad.
    _check_no_table_grad(ctx.needs_input_grad[2] or ctx.needs_input_grad[3])
    ctx.save_for_backward(cos, sin, positions)
    ctx.layout, ctx.interleaved, ctx.conjugate = layout, interleaved, conjugate
    ctx.has_k = k is not None


def _grad_rope(ctx, dq, dk):
    cos, sin, positions = ctx.saved_tensors
    args = (cos, sin, positions, ctx.layout, ctx.interleaved, not ctx.conjugate)
    want_dk = ctx.has_k and dk is not None and ctx.needs_input_grad[1]
    if dq is not None:
        grad_q, grad_k = ops.rope(dq, dk if want_dk else None, *args)
    else:
        grad_q, grad_k = None, (ops.rope(dk, None, *args)[0] if want_dk else None)
    return (grad_q, grad_k if want_dk else None) + (None,) * 6


def _rope3d(x, grid, split, theta, scale, layout, interleaved, conjugate):
    _check_rope3d_args("rope3d", x, grid, split, theta, scale, layout)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    ops.rope3d_fwd_out(out, _last_dim_contiguous(x), grid, split, theta, scale, layout,
                       interleaved, conjugate)
    return out


def _rope3d_fake(x, grid, split, theta, scale, layout, interleaved, conjugate):
    _check_rope3d_args("rope3d", x, grid, split, theta, scale, layout)
    return x.new_empty(x.shape)


def _setup_rope3d(ctx, inputs, output):
    _x, *ctx.args = inputs
    ctx.args[-1] = not ctx.args[-1]  # the backward rotates by the opposite angle


def _grad_rope3d(ctx, dy):
    return (ops.rope3d(dy, *ctx.args),) + (None,) * 7


def _register_fakes() -> None:
    torch.library.register_fake(add_op_namespace_prefix("rope"))(_rope_fake)
    torch.library.register_fake(add_op_namespace_prefix("rope3d"))(_rope3d_fake)
    for name in ("rope_fwd_out", "rope_inplace", "rope3d_fwd_out"):
        torch.library.register_fake(add_op_namespace_prefix(name))(out_op_fake)


def _register_python_functional_ops() -> None:
    """Python versions of what the C++ binding registers for the functional ops: used by
    pure-Python (Triton) variants, which have no extension."""
    torch.library.impl(add_op_namespace_prefix("rope"), "CompositeExplicitAutograd")(_rope)
    torch.library.register_autograd(add_op_namespace_prefix("rope"), _grad_rope,
                                    setup_context=_setup_rope)
    torch.library.impl(add_op_namespace_prefix("rope3d"), "CompositeExplicitAutograd")(_rope3d)
    torch.library.register_autograd(add_op_namespace_prefix("rope3d"), _grad_rope3d,
                                    setup_context=_setup_rope3d)


# ---------------------------------------------------------------- Python backends


def _reference_fwd3d(out, x, grid, split, theta, scale, layout, interleaved, conjugate):
    out.copy_(rope3d_reference(x, grid, split, theta, scale, layout, interleaved, conjugate))


def _reference_fwd(q_out, k_out, q, k, cos, sin, positions, layout, interleaved, conjugate):
    q_ref, k_ref = rope_reference(q, k, cos, sin, positions, layout, interleaved, conjugate)
    q_out.copy_(q_ref)
    if k is not None:
        k_out.copy_(k_ref)


def _check_out_op(op, q_out, k_out, q, k, cos, sin, positions, layout) -> None:
    """What the C++ binding checks before launching: every tensor's device, dtype and shape,
    and the strides the kernels take."""
    _check_data(op, "q", q)
    _check_out(op, "q_out", q_out, q, q)
    if (k is None) != (k_out is None):
        raise ValueError(f"{op}: k_out must be given exactly when k is")
    if k is not None:
        _check_data(op, "k", k)
        _check_out(op, "k_out", k_out, k, q)
    _check_rope_args(op, q, k, cos, sin, positions, layout)
    for name, t in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if t is not None:
            _check_last_dim(op, name, t)
    _check_positions_in_table(op, positions, cos)


def _register_python_backend(dispatch_key: str, fwd, fwd3d) -> None:
    def fwd_out(q_out, k_out, q, k, cos, sin, positions, layout, interleaved, conjugate):
        _check_out_op("rope_fwd_out", q_out, k_out, q, k, cos, sin, positions, layout)
        fwd(q_out, k_out, q, k, cos, sin, positions, layout, interleaved, conjugate)

    def inplace(q, k, cos, sin, positions, layout, interleaved, conjugate):
        for name, t in (("q", q), ("k", k)):
            if t is not None:
                _check_data("rope_inplace", name, t)
                _check_last_dim("rope_inplace", name, t)
        _check_out_op("rope_inplace", q, k, q, k, cos, sin, positions, layout)
        fwd(q, k, q, k, cos, sin, positions, layout, interleaved, conjugate)

    def fwd3d_out(out, x, grid, split, theta, scale, layout, interleaved, conjugate):
        op = "rope3d_fwd_out"
        _check_rope3d_args(op, x, grid, split, theta, scale, layout)
        _check_last_dim(op, "x", x)
        if not isinstance(out, torch.Tensor) or out.device != x.device:
            raise ValueError(f"{op}: out must be a tensor on x's device {x.device}")
        if out.dtype != x.dtype:
            raise TypeError(f"{op}: out dtype {out.dtype} must match x dtype {x.dtype}")
        if out.shape != x.shape:
            raise ValueError(f"{op}: out must have shape {list(x.shape)}, got {list(out.shape)}")
        _check_last_dim(op, "out", out)
        fwd3d(out, x, grid, split, theta, scale, layout, interleaved, conjugate)

    torch.library.impl(add_op_namespace_prefix("rope_fwd_out"), dispatch_key)(fwd_out)
    torch.library.impl(add_op_namespace_prefix("rope_inplace"), dispatch_key)(inplace)
    torch.library.impl(add_op_namespace_prefix("rope3d_fwd_out"), dispatch_key)(fwd3d_out)


def _register_triton_backend() -> None:
    from . import rope_triton

    _register_python_functional_ops()
    _register_python_backend("CUDA", rope_triton.rope_fwd, rope_triton.rope3d_fwd)
    if triton_runs_on_cpu():
        _register_python_backend("CPU", rope_triton.rope_fwd, rope_triton.rope3d_fwd)
    else:
        _register_python_backend("CPU", _reference_fwd, _reference_fwd3d)


if FIRST_LOAD:
    _register_fakes()
    if BACKEND == "triton":
        _register_triton_backend()
