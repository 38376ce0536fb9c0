"""RoPE (rotary position embedding): the fp32 reference, argument checks, fakes, autograd, the
public API and the Python (Triton) backends.

1D: q and k are [B, S, H, D] (layout "bshd") or [B, H, S, D] ("bhsd"), any strides with a
contiguous last dim (q may be sliced out of a fused qkv projection); k may have fewer heads
(GQA). cos and sin hold R/2 columns: [S, R/2] or [B, S, R/2], or a table [P, R/2] read at
`positions` ([S] or [B, S], int32 or int64). Dims R..D pass through unchanged.
  interleaved=False: rotate-half pairs (i, i + R/2) (GPT-NeoX, Llama, transformers)
  interleaved=True:  pairs (2i, 2i + 1) (GPT-J, complex-number formulations)
  (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin); conjugate rotates by -angle.
"""

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


def _register_fakes() -> None:
    torch.library.register_fake(add_op_namespace_prefix("rope"))(_rope_fake)
    for name in ("rope_fwd_out", "rope_inplace"):
        torch.library.register_fake(add_op_namespace_prefix(name))(out_op_fake)


def _register_python_functional_ops() -> None:
    """Python versions of what the C++ binding registers for the functional ops: used by
    pure-Python (Triton) variants, which have no extension."""
    torch.library.impl(add_op_namespace_prefix("rope"), "CompositeExplicitAutograd")(_rope)
    torch.library.register_autograd(add_op_namespace_prefix("rope"), _grad_rope,
                                    setup_context=_setup_rope)


# ---------------------------------------------------------------- Python backends


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


def _register_python_backend(dispatch_key: str, fwd) -> None:
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

    torch.library.impl(add_op_namespace_prefix("rope_fwd_out"), dispatch_key)(fwd_out)
    torch.library.impl(add_op_namespace_prefix("rope_inplace"), dispatch_key)(inplace)


def _register_triton_backend() -> None:
    from . import rope_triton

    _register_python_functional_ops()
    _register_python_backend("CUDA", rope_triton.rope_fwd)
    if triton_runs_on_cpu():
        _register_python_backend("CPU", rope_triton.rope_fwd)
    else:
        _register_python_backend("CPU", _reference_fwd)


if FIRST_LOAD:
    _register_fakes()
    if BACKEND == "triton":
        _register_triton_backend()
