"""AdaLN: adaptive LayerNorm / RMSNorm of DiT-style transformers.

    y = norm(z) [* weight] * (1 + scale) + shift

with z = x, or (the gated residual update that precedes the next block's norm)
z = x + gate * branch, rounded to x's dtype and returned as the new residual stream. norm is over
the last dim: "rms" (z * rsqrt(mean(z^2) + eps)) or "layer" ((z - mean) * rsqrt(var + eps),
LayerNorm without affine). x, branch: [B, S, D]; scale, shift, gate: each per sample ([B, D] or
[B, 1, D]) or per token ([B, S, D]); weight: optional [D]. Math is fp32 inside.

This module holds the fp32 references, the argument checks, the functional ops (with their fake
implementations and autograd formulas), the public API, and the Python backends that
pure-Python (Triton) variants register for the `*_out` ops.
"""

import torch

from ._checks import (
    SUPPORTED_DTYPES,
    check_out_tensor,
    check_same,
    check_tensor_arg,
    grad_or_zeros,
    out_op_fake,
    triton_runs_on_cpu,
)
from ._ops import BACKEND, add_op_namespace_prefix, ops
from ._register import FIRST_LOAD

NORMS = ("rms", "layer")


# ---------------------------------------------------------------- references


def _modulation(t: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
    """scale/shift/gate in the compute dtype, broadcastable against [B, S, D]."""
    t = t.to(compute)
    return t.unsqueeze(1) if t.dim() == 2 else t


def adaln_reference(x, scale, shift, weight=None, eps: float = 1e-6, norm: str = "rms"):
    """Pure PyTorch AdaLN computed in fp32 (fp64 stays fp64); returns x's dtype."""
    compute = torch.promote_types(x.dtype, torch.float32)
    z = x.to(compute)
    centered = z - z.mean(-1, keepdim=True) if norm == "layer" else z
    n = centered * torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        n = n * weight.to(compute)
    y = n * (1 + _modulation(scale, compute)) + _modulation(shift, compute)
    return y.to(x.dtype)


def adaln_gated_reference(x, branch, gate, scale, shift, weight=None, eps: float = 1e-6,
                          norm: str = "rms"):
    """z = x + gate * branch rounded to x's dtype (what the kernels store), then
    (adaln_reference(z, ...), z)."""
    compute = torch.promote_types(x.dtype, torch.float32)
    z = (x.to(compute) + _modulation(gate, compute) * branch.to(compute)).to(x.dtype)
    return adaln_reference(z, scale, shift, weight, eps, norm), z


# ---------------------------------------------------------------- public API


def adaln(x, scale, shift, weight=None, eps: float = 1e-6, norm: str = "rms"):
    """norm(x) [* weight] * (1 + scale) + shift over the last dim of x [B, S, D].

    scale and shift are each [B, D] / [B, 1, D] (per sample) or [B, S, D] (per token); norm is
    "rms" or "layer". Differentiable in x, scale, shift and weight.
    """
    _check_public("adaln", x=x, scale=scale, shift=shift)
    y, _mean, _rstd = ops.adaln(x, scale, shift, weight, _check_eps("adaln", eps),
                                _check_norm("adaln", norm))
    return y


def adaln_gated(x, branch, gate, scale, shift, weight=None, eps: float = 1e-6, norm: str = "rms"):
    """Returns (adaln(z, scale, shift, weight, eps, norm), z) with z = x + gate * branch (rounded
    to x's dtype): the gated residual update fused with the next norm. gate is per sample or per
    token like scale and shift. Differentiable in every tensor argument."""
    _check_public("adaln_gated", x=x, branch=branch, gate=gate, scale=scale, shift=shift)
    y, z, _mean, _rstd = ops.adaln_gated(x, branch, gate, scale, shift, weight,
                                         _check_eps("adaln_gated", eps),
                                         _check_norm("adaln_gated", norm))
    return y, z


# ---------------------------------------------------------------- argument checks


def _check_public(op: str, **tensors) -> None:
    for name, t in tensors.items():
        check_tensor_arg(op, name, t)


def _check_eps(op: str, eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    return float(eps)


def _check_norm(op: str, norm) -> str:
    if not isinstance(norm, str):
        raise TypeError(f"{op}: norm must be a str ('rms' or 'layer'), got {type(norm).__name__}")
    if norm not in NORMS:
        raise ValueError(f"{op}: norm must be 'rms' or 'layer', got '{norm}'")
    return norm


def _is_per_token(t: torch.Tensor) -> bool:
    """[B, S, D] with S != 1 is per token; [B, D] and [B, 1, D] are per sample."""
    return t.dim() == 3 and t.shape[1] != 1


def _modulation_rows(t: torch.Tensor) -> torch.Tensor:
    """The [B, D] or [B, S, D] contiguous form the out ops take."""
    return (t if _is_per_token(t) else t.reshape(t.shape[0], t.shape[-1])).contiguous()


def _check_modulation(op: str, name: str, t, x) -> None:
    check_same(op, name, t, x)
    batch, seq, hidden = x.shape
    shape = tuple(t.shape)
    if shape not in ((batch, hidden), (batch, 1, hidden), (batch, seq, hidden)):
        raise ValueError(
            f"{op}: {name} must have shape [{batch}, {hidden}], [{batch}, 1, {hidden}] or "
            f"{list(x.shape)} (x is [batch, seq, hidden]), got {list(shape)}"
        )


def _check_args(op: str, x, scale, shift, weight, branch=None, gate=None, eps=0.0,
                norm="rms") -> None:
    """The functional ops' checks (the C++ binding's check_adaln_inputs)."""
    check_tensor_arg(op, "x", x)
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() != 3 or x.shape[2] == 0:
        raise ValueError(
            f"{op}: x must be 3-D [batch, seq, hidden] with hidden >= 1, got shape "
            f"{tuple(x.shape)}"
        )
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps}")
    _check_norm(op, norm)
    _check_modulation(op, "scale", scale, x)
    if shift is not None:
        _check_modulation(op, "shift", shift, x)
    if branch is not None:
        check_same(op, "branch", branch, x)
        if branch.shape != x.shape:
            raise ValueError(
                f"{op}: branch must have x's shape {tuple(x.shape)}, got {tuple(branch.shape)}"
            )
    if gate is not None:
        _check_modulation(op, "gate", gate, x)
    if weight is not None:
        check_same(op, "weight", weight, x)
        if tuple(weight.shape) != (x.shape[2],):
            raise ValueError(
                f"{op}: weight must have shape ({x.shape[2]},) (the last dim of x), "
                f"got {tuple(weight.shape)}"
            )


# ---------------------------------------------------------------- functional ops and fakes


def _stats(x):
    return torch.empty(x.shape[:2], dtype=torch.float32, device=x.device)


def _adaln(x, scale, shift, weight, eps, norm):
    _check_args("adaln", x, scale, shift, weight, eps=eps, norm=norm)
    x3 = x.contiguous()
    y, mean, rstd = torch.empty_like(x3), _stats(x3), _stats(x3)
    ops.adaln_fwd_out(y, None, mean, rstd, x3, None, None, _modulation_rows(scale),
                      _modulation_rows(shift), _maybe_contiguous(weight), eps, norm)
    return y, mean, rstd


def _adaln_fake(x, scale, shift, weight, eps, norm):
    _check_args("adaln", x, scale, shift, weight, eps=eps, norm=norm)
    return x.new_empty(x.shape), _fake_stats(x), _fake_stats(x)


def _adaln_gated(x, branch, gate, scale, shift, weight, eps, norm):
    _check_args("adaln_gated", x, scale, shift, weight, branch, gate, eps, norm)
    x3 = x.contiguous()
    y, z, mean, rstd = torch.empty_like(x3), torch.empty_like(x3), _stats(x3), _stats(x3)
    ops.adaln_fwd_out(y, z, mean, rstd, x3, branch.contiguous(), _modulation_rows(gate),
                      _modulation_rows(scale), _modulation_rows(shift),
                      _maybe_contiguous(weight), eps, norm)
    return y, z, mean, rstd


def _adaln_gated_fake(x, branch, gate, scale, shift, weight, eps, norm):
    _check_args("adaln_gated", x, scale, shift, weight, branch, gate, eps, norm)
    return x.new_empty(x.shape), x.new_empty(x.shape), _fake_stats(x), _fake_stats(x)


def _fake_stats(x):
    return x.new_empty(x.shape[:2], dtype=torch.float32)


def _check_backward_args(dy, dz, z, branch, gate, scale, weight, norm, want_dweight) -> None:
    op = "adaln_backward"
    if (branch is None) != (gate is None):
        raise ValueError(f"{op}: branch and gate must be given together")
    if want_dweight and weight is None:
        raise ValueError(f"{op}: want_dweight=True needs a weight")
    _check_args(op, z, scale, None, weight, branch, gate, 0.0, norm)
    for name, t in (("dy", dy), ("dz", dz)):
        if t is not None:
            check_same(op, name, t, z)
            if t.shape != z.shape:
                raise ValueError(f"{op}: {name} must have z's shape {tuple(z.shape)}, "
                                 f"got {tuple(t.shape)}")


def _backward_outputs(z, gate, scale, shift_per_token, weight, want_dweight, new):
    """(dx, dscale, dshift, dweight, dbranch, dgate) allocated with `new(shape)`; dshift is
    empty for a per-token shift, whose gradient is dy itself (autograd passes dy on)."""
    batch, _seq, hidden = z.shape
    gated = gate is not None
    return (
        new(z.shape),
        new(scale.shape),
        new((0,) if shift_per_token else (batch, hidden)),
        new(weight.shape if want_dweight else (0,)),
        new(z.shape if gated else (0,)),
        new(gate.shape if gated else (0,)),
    )


def _adaln_backward(dy, dz, z, branch, gate, scale, shift_per_token, weight, mean, rstd, norm,
                    want_dweight):
    _check_backward_args(dy, dz, z, branch, gate, scale, weight, norm, want_dweight)
    z3 = z.contiguous()
    gated = branch is not None
    dx, dscale, dshift, dweight, dbranch, dgate = _backward_outputs(
        z3, gate, scale, shift_per_token, weight, want_dweight,
        lambda shape: torch.empty(shape, dtype=z.dtype, device=z.device),
    )
    scale_rows = _modulation_rows(scale)
    gate_rows = _modulation_rows(gate) if gated else None
    stats_shape = tuple(z.shape[:2])
    ops.adaln_bwd_out(
        dx, dscale.view(scale_rows.shape), dshift, dweight if want_dweight else None,
        dbranch if gated else None, dgate.view(gate_rows.shape) if gated else None,
        dy.contiguous(), _maybe_contiguous(dz), z3, _maybe_contiguous(branch), gate_rows,
        scale_rows, _maybe_contiguous(weight), mean.reshape(stats_shape).contiguous(),
        rstd.reshape(stats_shape).contiguous(), norm,
    )
    return dx, dscale, dshift, dweight, dbranch, dgate


def _adaln_backward_fake(dy, dz, z, branch, gate, scale, shift_per_token, weight, mean, rstd,
                         norm, want_dweight):
    _check_backward_args(dy, dz, z, branch, gate, scale, weight, norm, want_dweight)
    return _backward_outputs(z, gate, scale, shift_per_token, weight, want_dweight, z.new_empty)


def _maybe_contiguous(t):
    return None if t is None else t.contiguous()


# ---------------------------------------------------------------- autograd (Python variants)


def _save_shift_and_norm(ctx, shift, norm) -> None:
    ctx.norm = norm
    ctx.shift_per_token = _is_per_token(shift)
    ctx.shift_shape = shift.shape


def _dshift_is_dy(dshift) -> bool:
    """An empty 1-D dshift handed to adaln_bwd_out: shift is per token and its gradient, dy
    itself, is not copied."""
    return dshift.dim() == 1 and dshift.numel() == 0


def _shift_grad(ctx, dy, dshift):
    """shift's gradient: dy itself when per token (the backward op returns dshift empty)."""
    return dy if ctx.shift_per_token else dshift.view(ctx.shift_shape)


def _setup_adaln(ctx, inputs, output):
    x, scale, shift, weight, _eps, norm = inputs
    _y, mean, rstd = output
    ctx.save_for_backward(x, scale, weight, mean, rstd)
    _save_shift_and_norm(ctx, shift, norm)
    ctx.set_materialize_grads(False)


def _grad_adaln(ctx, dy, _dmean, _drstd):
    x, scale, weight, mean, rstd = ctx.saved_tensors
    dy = grad_or_zeros(dy, x)
    want_dweight = weight is not None and ctx.needs_input_grad[3]
    dx, dscale, dshift, dweight, _, _ = ops.adaln_backward(
        dy, None, x, None, None, scale, ctx.shift_per_token, weight, mean, rstd, ctx.norm,
        want_dweight,
    )
    return dx, dscale, _shift_grad(ctx, dy, dshift), (dweight if want_dweight else None), None, None


def _setup_adaln_gated(ctx, inputs, output):
    _x, branch, gate, scale, shift, weight, _eps, norm = inputs
    _y, z, mean, rstd = output
    ctx.save_for_backward(z, branch, gate, scale, weight, mean, rstd)
    _save_shift_and_norm(ctx, shift, norm)
    ctx.set_materialize_grads(False)


def _grad_adaln_gated(ctx, dy, dz, _dmean, _drstd):
    z, branch, gate, scale, weight, mean, rstd = ctx.saved_tensors
    dy = grad_or_zeros(dy, z)
    want_dweight = weight is not None and ctx.needs_input_grad[5]
    dx, dscale, dshift, dweight, dbranch, dgate = ops.adaln_backward(
        dy, dz, z, branch, gate, scale, ctx.shift_per_token, weight, mean, rstd, ctx.norm,
        want_dweight,
    )
    return (dx, dbranch, dgate, dscale, _shift_grad(ctx, dy, dshift),
            (dweight if want_dweight else None), None, None)


def _register_fakes() -> None:
    for name, fake in (
        ("adaln", _adaln_fake),
        ("adaln_gated", _adaln_gated_fake),
        ("adaln_backward", _adaln_backward_fake),
        ("adaln_fwd_out", out_op_fake),
        ("adaln_bwd_out", out_op_fake),
    ):
        torch.library.register_fake(add_op_namespace_prefix(name))(fake)


def _register_python_functional_ops() -> None:
    """Python versions of what the C++ binding registers for the functional ops: used by
    pure-Python (Triton) variants, which have no extension."""
    for name, impl in (
        ("adaln", _adaln),
        ("adaln_gated", _adaln_gated),
        ("adaln_backward", _adaln_backward),
    ):
        torch.library.impl(add_op_namespace_prefix(name), "CompositeExplicitAutograd")(impl)
    torch.library.register_autograd(
        add_op_namespace_prefix("adaln"), _grad_adaln, setup_context=_setup_adaln
    )
    torch.library.register_autograd(
        add_op_namespace_prefix("adaln_gated"), _grad_adaln_gated, setup_context=_setup_adaln_gated
    )


# ---------------------------------------------------------------- Python out-op backends


def _reference_fwd(y, z_out, mean, rstd, x, branch, gate, scale, shift, weight, eps, layer):
    """The out op by the fp32 reference (a Triton variant's CPU key without the interpreter)."""
    norm = "layer" if layer else "rms"
    if branch is not None:
        out, z = adaln_gated_reference(x, branch, gate, scale, shift, weight, eps, norm)
        z_out.copy_(z)
    else:
        out, z = adaln_reference(x, scale, shift, weight, eps, norm), x
    zf = z.float()
    m = zf.mean(-1) if layer else torch.zeros_like(zf[..., 0])
    mean.copy_(m)
    rstd.copy_(torch.rsqrt((zf - m.unsqueeze(-1)).pow(2).mean(-1) + eps))
    y.copy_(out)


def _reference_bwd(dx, dscale, dshift, dweight, dbranch, dgate, dy, dz, z, branch, gate, scale,
                   weight, mean, rstd, layer):
    f32 = torch.float32
    rstd3 = rstd.unsqueeze(-1)
    xhat = (z.float() - mean.unsqueeze(-1)) * rstd3
    dyf = dy.float()
    w = weight.float() if weight is not None else 1.0
    dn = dyf * (1 + _modulation(scale, f32))
    g = dn * w
    centered_g = g - g.mean(-1, keepdim=True) if layer else g
    dzt = rstd3 * (centered_g - xhat * (g * xhat).mean(-1, keepdim=True))
    if dz is not None:
        dzt = dzt + dz.float()
    dx.copy_(dzt)

    def per_layout(full, out):
        out.copy_(full if out.dim() == 3 else full.sum(1))

    per_layout(dyf * xhat * w, dscale)
    if dshift is not None:
        per_layout(dyf, dshift)
    if dweight is not None:
        dweight.copy_((dn * xhat).sum((0, 1)))
    if branch is not None:
        dbranch.copy_(dzt * _modulation(gate, f32))
        per_layout(dzt * branch.float(), dgate)


def _check_fwd_out(y, z_out, mean, rstd, x, branch, gate, scale, shift, weight, eps, norm):
    op = "adaln_fwd_out"
    _check_x_out(op, "x", x)
    check_out_tensor(op, "y", y, x, x.dtype, x.shape)
    for name, t in (("mean", mean), ("rstd", rstd)):
        check_out_tensor(op, name, t, x, torch.float32, x.shape[:2])
    if weight is not None:
        check_out_tensor(op, "weight", weight, x, x.dtype, x.shape[2:])
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    _check_norm(op, norm)
    if len({branch is None, gate is None, z_out is None}) != 1:
        raise ValueError(f"{op}: branch, gate and z must be given together")
    _check_modulation_out(op, "scale", scale, x)
    _check_modulation_out(op, "shift", shift, x)
    if branch is not None:
        check_out_tensor(op, "branch", branch, x, x.dtype, x.shape)
        check_out_tensor(op, "z", z_out, x, x.dtype, x.shape)
        _check_modulation_out(op, "gate", gate, x)


def _check_bwd_out(dx, dscale, dshift, dweight, dbranch, dgate, dy, dz, z, branch, gate, scale,
                   weight, mean, rstd, norm):
    op = "adaln_bwd_out"
    _check_x_out(op, "z", z)
    for name, t in (("dx", dx), ("dy", dy), ("dz", dz)):
        if t is not None:
            check_out_tensor(op, name, t, z, z.dtype, z.shape)
    for name, t in (("mean", mean), ("rstd", rstd)):
        check_out_tensor(op, name, t, z, torch.float32, z.shape[:2])
    if weight is not None:
        check_out_tensor(op, "weight", weight, z, z.dtype, z.shape[2:])
    if dweight is not None:
        if weight is None:
            raise ValueError(f"{op}: dweight was given but weight is None")
        check_out_tensor(op, "dweight", dweight, z, z.dtype, z.shape[2:])
    _check_norm(op, norm)
    _check_modulation_out(op, "scale", scale, z)
    check_out_tensor(op, "dscale", dscale, z, z.dtype, scale.shape)
    if _dshift_is_dy(dshift):
        check_out_tensor(op, "dshift", dshift, z, z.dtype, dshift.shape)
    else:
        _check_modulation_out(op, "dshift", dshift, z)
    gated = branch is not None
    if len({gated, gate is not None, dbranch is not None, dgate is not None}) != 1:
        raise ValueError(f"{op}: branch, gate, dbranch and dgate must be given together")
    if gated:
        check_out_tensor(op, "branch", branch, z, z.dtype, z.shape)
        _check_modulation_out(op, "gate", gate, z)
        check_out_tensor(op, "dbranch", dbranch, z, z.dtype, z.shape)
        check_out_tensor(op, "dgate", dgate, z, z.dtype, gate.shape)


def _check_x_out(op: str, name: str, x) -> None:
    check_tensor_arg(op, name, x)
    if x.dim() != 3 or x.shape[2] == 0:
        raise ValueError(f"{op}: {name} must be 3-D [batch, seq, hidden] with hidden >= 1, "
                         f"got shape {tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16, got {x.dtype}")
    check_out_tensor(op, name, x, x, x.dtype, x.shape)


def _check_modulation_out(op: str, name: str, t, x) -> None:
    """[B, D] or x's [B, S, D], contiguous, like x (what a kernel is handed)."""
    check_tensor_arg(op, name, t)
    batch, _seq, hidden = x.shape
    if tuple(t.shape) not in ((batch, hidden), tuple(x.shape)):
        raise ValueError(f"{op}: {name} must have shape [{batch}, {hidden}] or {list(x.shape)}, "
                         f"got {list(t.shape)}")
    check_out_tensor(op, name, t, x, x.dtype, t.shape)


def _register_python_backend(dispatch_key: str, fwd, bwd) -> None:
    def fwd_out(y, z, mean, rstd, x, branch, gate, scale, shift, weight, eps, norm):
        _check_fwd_out(y, z, mean, rstd, x, branch, gate, scale, shift, weight, eps, norm)
        fwd(y, z, mean, rstd, x, branch, gate, scale, shift, weight, eps, norm == "layer")

    def bwd_out(dx, dscale, dshift, dweight, dbranch, dgate, dy, dz, z, branch, gate, scale,
                weight, mean, rstd, norm):
        _check_bwd_out(dx, dscale, dshift, dweight, dbranch, dgate, dy, dz, z, branch, gate,
                       scale, weight, mean, rstd, norm)
        # The backends take None for the op's empty dshift (per-token shift, dy not copied).
        bwd(dx, dscale, None if _dshift_is_dy(dshift) else dshift, dweight, dbranch, dgate, dy,
            dz, z, branch, gate, scale, weight, mean, rstd, norm == "layer")

    torch.library.impl(add_op_namespace_prefix("adaln_fwd_out"), dispatch_key)(fwd_out)
    torch.library.impl(add_op_namespace_prefix("adaln_bwd_out"), dispatch_key)(bwd_out)


def _register_triton_backend() -> None:
    from . import adaln_triton

    _register_python_functional_ops()
    _register_python_backend("CUDA", adaln_triton.adaln_fwd, adaln_triton.adaln_bwd)
    if triton_runs_on_cpu():
        _register_python_backend("CPU", adaln_triton.adaln_fwd, adaln_triton.adaln_bwd)
    else:
        _register_python_backend("CPU", _reference_fwd, _reference_bwd)


if FIRST_LOAD:
    _register_fakes()
    if BACKEND == "triton":
        _register_triton_backend()
