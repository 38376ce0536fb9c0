"""RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, plus the fused residual-add form.

This module holds the fp32 reference, the argument checks, the functional ops (with their
fake implementations and autograd formulas), the public API, and the Python backends that
pure-Python (Triton) variants register for the `*_out` ops.
"""

import torch

from ._checks import (
    SUPPORTED_DTYPES,
    check_out_tensor,
    check_same,
    grad_or_zeros,
    out_op_fake,
    triton_runs_on_cpu,
)
from ._ops import BACKEND, add_op_namespace_prefix, ops
from ._register import FIRST_LOAD


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6):
    """Pure PyTorch RMSNorm computed in fp32 (fp64 stays fp64); returns x's dtype."""
    compute = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(compute)
    y = xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(compute)
    return y.to(x.dtype)


def rms_norm_add_reference(x, residual, weight=None, eps: float = 1e-6):
    """z = x + residual rounded to x's dtype (what the kernels store), then rms_norm(z)."""
    compute = torch.promote_types(x.dtype, torch.float32)
    z = (x.to(compute) + residual.to(compute)).to(x.dtype)
    return rms_norm_reference(z, weight, eps), z


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6):
    """RMSNorm over the last dimension of x (any leading dims). Differentiable in x and weight."""
    y, _rstd = ops.rms_norm(x, weight, _check_eps("rms_norm", eps))
    return y


def rms_norm_add(x, residual, weight=None, eps: float = 1e-6):
    """Returns (rms_norm(x + residual), x + residual): the pre-norm residual stream update."""
    y, residual_out, _rstd = ops.rms_norm_add(x, residual, weight, _check_eps("rms_norm_add", eps))
    return y, residual_out


def _check_eps(op: str, eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    return float(eps)


def _check_args(op: str, x, weight, residual=None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(
            f"{op}: x needs a non-empty last (hidden) dimension, got shape {tuple(x.shape)}"
        )
    if residual is not None:
        check_same(op, "residual", residual, x)
        if residual.shape != x.shape:
            raise ValueError(
                f"{op}: residual must have x's shape {tuple(x.shape)}, got {tuple(residual.shape)}"
            )
    if weight is not None:
        check_same(op, "weight", weight, x)
        if tuple(weight.shape) != (x.shape[-1],):
            raise ValueError(
                f"{op}: weight must have shape ({x.shape[-1]},) (the last dim of x), "
                f"got {tuple(weight.shape)}"
            )


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1]).contiguous()


def _maybe_contiguous(t):
    return None if t is None else t.contiguous()


def _rms_norm(x, weight, eps):
    _check_args("rms_norm", x, weight)
    x2 = _rows(x)
    y = torch.empty_like(x2)
    rstd = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
    ops.rms_norm_fwd_out(y, rstd, x2, _maybe_contiguous(weight), eps)
    return y.view(x.shape), rstd.view(x.shape[:-1])


def _rms_norm_fake(x, weight, eps):
    _check_args("rms_norm", x, weight)
    return x.new_empty(x.shape), x.new_empty(x.shape[:-1], dtype=torch.float32)


def _rms_norm_add(x, residual, weight, eps):
    _check_args("rms_norm_add", x, weight, residual)
    x2 = _rows(x)
    y = torch.empty_like(x2)
    residual_out = torch.empty_like(x2)
    rstd = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
    ops.rms_norm_add_fwd_out(
        y, residual_out, rstd, x2, _rows(residual), _maybe_contiguous(weight), eps
    )
    return y.view(x.shape), residual_out.view(x.shape), rstd.view(x.shape[:-1])


def _rms_norm_add_fake(x, residual, weight, eps):
    _check_args("rms_norm_add", x, weight, residual)
    rstd = x.new_empty(x.shape[:-1], dtype=torch.float32)
    return x.new_empty(x.shape), x.new_empty(x.shape), rstd


def _rms_norm_backward(dy, z, weight, rstd, dresidual, want_dweight):
    z2 = _rows(z)
    dx = torch.empty_like(z2)
    dweight = _new_dweight(z, weight, want_dweight)
    ops.rms_norm_bwd_out(
        dx,
        dweight if want_dweight else None,
        _rows(dy.to(z.dtype)),
        z2,
        _maybe_contiguous(weight),
        rstd.reshape(-1).contiguous(),
        None if dresidual is None else _rows(dresidual.to(z.dtype)),
    )
    return dx.view(z.shape), dweight


def _rms_norm_backward_fake(dy, z, weight, rstd, dresidual, want_dweight):
    return z.new_empty(z.shape), _new_dweight(z, weight, want_dweight)


def _new_dweight(z, weight, want_dweight):
    if want_dweight and weight is None:
        raise ValueError("rms_norm_backward: want_dweight=True needs a weight")
    return z.new_empty(weight.shape if want_dweight else (0,))


def _setup_rms_norm(ctx, inputs, output):
    x, weight, _eps = inputs
    _y, rstd = output
    ctx.save_for_backward(x, weight, rstd)
    ctx.set_materialize_grads(False)


def _grad_rms_norm(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    want_dweight = weight is not None and ctx.needs_input_grad[1]
    dx, dweight = ops.rms_norm_backward(grad_or_zeros(dy, x), x, weight, rstd, None, want_dweight)
    return dx, (dweight if want_dweight else None), None


def _setup_rms_norm_add(ctx, inputs, output):
    _x, _residual, weight, _eps = inputs
    _y, residual_out, rstd = output
    ctx.save_for_backward(residual_out, weight, rstd)
    ctx.set_materialize_grads(False)


def _grad_rms_norm_add(ctx, dy, dresidual_out, _drstd):
    z, weight, rstd = ctx.saved_tensors
    want_dweight = weight is not None and ctx.needs_input_grad[2]
    dz, dweight = ops.rms_norm_backward(grad_or_zeros(dy, z), z, weight, rstd, dresidual_out,
                                        want_dweight)
    return dz, dz, (dweight if want_dweight else None), None


def _register_fakes() -> None:
    for name, fake in (
        ("rms_norm", _rms_norm_fake),
        ("rms_norm_add", _rms_norm_add_fake),
        ("rms_norm_backward", _rms_norm_backward_fake),
        ("rms_norm_fwd_out", out_op_fake),
        ("rms_norm_add_fwd_out", out_op_fake),
        ("rms_norm_bwd_out", out_op_fake),
    ):
        torch.library.register_fake(add_op_namespace_prefix(name))(fake)


def _register_python_functional_ops() -> None:
    """Python versions of what the C++ binding registers for the functional ops: used by
    pure-Python (Triton) variants, which have no extension."""
    for name, impl in (
        ("rms_norm", _rms_norm),
        ("rms_norm_add", _rms_norm_add),
        ("rms_norm_backward", _rms_norm_backward),
    ):
        torch.library.impl(add_op_namespace_prefix(name), "CompositeExplicitAutograd")(impl)
    torch.library.register_autograd(
        add_op_namespace_prefix("rms_norm"), _grad_rms_norm, setup_context=_setup_rms_norm
    )
    torch.library.register_autograd(
        add_op_namespace_prefix("rms_norm_add"),
        _grad_rms_norm_add,
        setup_context=_setup_rms_norm_add,
    )


def _reference_fwd_out(y, rstd, x, weight, residual, residual_out, eps):
    z = x if residual is None else rms_norm_add_reference(x, residual)[1]
    if residual_out is not None:
        residual_out.copy_(z)
    zf = z.float()
    rstd.copy_(torch.rsqrt(zf.pow(2).mean(-1) + eps))
    y.copy_(rms_norm_reference(z, weight, eps))


def _reference_bwd_out(dx, dweight, dy, z, weight, rstd, dresidual):
    zhat = z.float() * rstd.unsqueeze(-1)
    g = dy.float() if weight is None else dy.float() * weight.float()
    dz = rstd.unsqueeze(-1) * (g - zhat * (g * zhat).mean(-1, keepdim=True))
    if dresidual is not None:
        dz = dz + dresidual.float()
    dx.copy_(dz)
    if dweight is not None:
        dweight.copy_((dy.float() * zhat).sum(0))


def _check_out_op(op: str, x, tensors: dict) -> None:
    """x: 2-D [rows, hidden], contiguous; `tensors`: name -> (tensor or None, dtype, shape)."""
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{op}: x must be 2-D [rows, hidden] with hidden >= 1, got {list(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: x must be float32, float16 or bfloat16, got {x.dtype}")
    check_out_tensor(op, "x", x, x, x.dtype, x.shape)
    for name, (t, dtype, shape) in tensors.items():
        if t is not None:
            check_out_tensor(op, name, t, x, dtype, shape)


def _register_python_backend(dispatch_key: str, fwd, bwd) -> None:
    def fwd_out(y, rstd, x, weight, eps):
        _check_out_op("rms_norm_fwd_out", x, _fwd_tensors(x, y, rstd, weight))
        fwd(y, rstd, x, weight, None, None, eps)

    def add_fwd_out(y, residual_out, rstd, x, residual, weight, eps):
        tensors = _fwd_tensors(x, y, rstd, weight)
        tensors.update(residual=(residual, x.dtype, x.shape), residual_out=(residual_out, x.dtype, x.shape))
        _check_out_op("rms_norm_add_fwd_out", x, tensors)
        fwd(y, rstd, x, weight, residual, residual_out, eps)

    def bwd_out(dx, dweight, dy, z, weight, rstd, dresidual):
        if dweight is not None and weight is None:
            raise ValueError("rms_norm_bwd_out: dweight was given but weight is None")
        tensors = _fwd_tensors(z, dx, rstd, weight)
        tensors.update(
            dy=(dy, z.dtype, z.shape),
            dweight=(dweight, z.dtype, z.shape[1:]),
            dresidual=(dresidual, z.dtype, z.shape),
        )
        _check_out_op("rms_norm_bwd_out", z, tensors)
        bwd(dx, dweight, dy, z, weight, rstd, dresidual)

    torch.library.impl(add_op_namespace_prefix("rms_norm_fwd_out"), dispatch_key)(fwd_out)
    torch.library.impl(add_op_namespace_prefix("rms_norm_add_fwd_out"), dispatch_key)(add_fwd_out)
    torch.library.impl(add_op_namespace_prefix("rms_norm_bwd_out"), dispatch_key)(bwd_out)


def _fwd_tensors(x, out, rstd, weight) -> dict:
    return {
        "y": (out, x.dtype, x.shape),
        "rstd": (rstd, torch.float32, x.shape[:1]),
        "weight": (weight, x.dtype, x.shape[1:]),
    }


def _register_triton_backend() -> None:
    from . import rmsnorm_triton

    _register_python_functional_ops()
    _register_python_backend("CUDA", rmsnorm_triton.rms_norm_fwd, rmsnorm_triton.rms_norm_bwd)
    if triton_runs_on_cpu():
        _register_python_backend("CPU", rmsnorm_triton.rms_norm_fwd, rmsnorm_triton.rms_norm_bwd)
    else:
        _register_python_backend("CPU", _reference_fwd_out, _reference_bwd_out)


if FIRST_LOAD:
    _register_fakes()
    if BACKEND == "triton":
        _register_triton_backend()
