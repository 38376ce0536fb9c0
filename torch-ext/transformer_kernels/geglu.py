"""Gated activations (GEGLU, SwiGLU) and the elementwise GELU.

    geglu(x):  x [..., 2H] -> act(a) * b [..., H],  (a, b) = (x[..., :H], x[..., H:]), or
               (x[..., H:], x[..., :H]) with swap_halves (diffusers' GEGLU gates the second half)
    gelu(x):   act(x) elementwise

act: "gelu_tanh" 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))), "gelu" 0.5 a (1 + erf(a /
sqrt(2))), "silu" a * sigmoid(a). Math is fp32 inside; outputs are rounded to x's dtype once.

This module holds the fp32 references, the argument checks, the functional ops' fake
implementations and autograd formulas, the public API, and the Python backends that pure-Python
(Triton) variants register for the `*_out` ops.
"""

import torch
import torch.nn.functional as F

from ._checks import (
    check_float_dtype,
    check_out_tensor,
    check_same,
    check_tensor_arg,
    out_op_fake,
    triton_runs_on_cpu,
)
from ._ops import BACKEND, add_op_namespace_prefix, ops
from ._register import FIRST_LOAD

ACTIVATIONS = ("gelu_tanh", "gelu", "silu")
APPROXIMATIONS = ("tanh", "none")
# geglu's `approximate` argument names the GELU form, the ops' `activation` names the function.
_GELU_ACTIVATION = {"tanh": "gelu_tanh", "none": "gelu"}


# ---------------------------------------------------------------- references


def _activation_reference(a: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "gelu_tanh":
        return F.gelu(a, approximate="tanh")
    if activation == "gelu":
        return F.gelu(a)
    return F.silu(a)


def geglu_reference(x: torch.Tensor, activation: str = "gelu_tanh", swap_halves: bool = False):
    """Pure PyTorch act(a) * b computed in fp32 (fp64 stays fp64); returns x's dtype."""
    _check_activation("geglu_reference", activation)
    _check_geglu_x("geglu_reference", x)
    compute = torch.promote_types(x.dtype, torch.float32)
    a, b = x.to(compute).chunk(2, dim=-1)
    if swap_halves:
        a, b = b, a
    return (_activation_reference(a, activation) * b).to(x.dtype)


def gelu_reference(x: torch.Tensor, approximate: str = "tanh"):
    """Pure PyTorch GELU computed in fp32 (fp64 stays fp64); returns x's dtype."""
    _check_approximate("gelu_reference", approximate)
    compute = torch.promote_types(x.dtype, torch.float32)
    return F.gelu(x.to(compute), approximate=approximate).to(x.dtype)


# ---------------------------------------------------------------- public API


def geglu(x: torch.Tensor, approximate: str = "tanh", swap_halves: bool = False) -> torch.Tensor:
    """GEGLU over the last dim of x [..., 2H] -> [..., H]: gelu(a) * b, with the tanh GELU
    (approximate="tanh") or the exact erf GELU ("none"). (a, b) are the first and second halves,
    or the second and first with swap_halves=True. Differentiable in x."""
    _check_approximate("geglu", approximate)
    return ops.geglu(x, _GELU_ACTIVATION[approximate], _check_swap("geglu", swap_halves))


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """SwiGLU's silu(x[..., :H]) * x[..., H:] for x [..., 2H] -> [..., H]. Differentiable in x."""
    return ops.geglu(x, "silu", False)


def gelu(x: torch.Tensor, approximate: str = "tanh") -> torch.Tensor:
    """Elementwise GELU, tanh form (approximate="tanh") or exact erf form ("none").
    Differentiable in x."""
    _check_approximate("gelu", approximate)
    return ops.gelu(x, approximate)


# ---------------------------------------------------------------- argument checks


def _check_choice(op: str, name: str, value, allowed) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{op}: {name} must be one of {choices}, got {value!r}")


def _check_activation(op: str, activation) -> None:
    _check_choice(op, "activation", activation, ACTIVATIONS)


def _check_approximate(op: str, approximate) -> None:
    _check_choice(op, "approximate", approximate, APPROXIMATIONS)


def _check_swap(op: str, swap_halves) -> bool:
    if not isinstance(swap_halves, bool):
        raise TypeError(f"{op}: swap_halves must be a bool, got {type(swap_halves).__name__}")
    return swap_halves


def _check_geglu_x(op: str, x) -> int:
    """x is [..., 2H] with H >= 1; returns H."""
    check_tensor_arg(op, "x", x)
    if x.dim() == 0 or x.shape[-1] == 0 or x.shape[-1] % 2:
        raise ValueError(
            f"{op}: x's last dim must be even and non-zero (x is [..., 2 * hidden]), "
            f"got shape {tuple(x.shape)}"
        )
    return x.shape[-1] // 2


def _check_geglu_args(op: str, x, activation) -> int:
    _check_activation(op, activation)
    check_tensor_arg(op, "x", x)
    check_float_dtype(op, "x", x)
    return _check_geglu_x(op, x)


def _check_gelu_args(op: str, x, approximate) -> None:
    _check_approximate(op, approximate)
    check_tensor_arg(op, "x", x)
    check_float_dtype(op, "x", x)


def _check_dy(op: str, dy, x, shape) -> None:
    check_same(op, "dy", dy, x)
    if tuple(dy.shape) != tuple(shape):
        raise ValueError(f"{op}: dy must have shape {tuple(shape)}, got {tuple(dy.shape)}")


# ---------------------------------------------------------------- functional ops (Python)


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1]).contiguous()


def _geglu(x, activation, swap_halves):
    hidden = _check_geglu_args("geglu", x, activation)
    x2 = _rows(x)
    y = x2.new_empty((x2.shape[0], hidden))
    ops.geglu_fwd_out(y, x2, activation, swap_halves)
    return y.view(*x.shape[:-1], hidden)


def _geglu_fake(x, activation, swap_halves):
    hidden = _check_geglu_args("geglu", x, activation)
    return x.new_empty((*x.shape[:-1], hidden))


def _geglu_backward(dy, x, activation, swap_halves):
    hidden = _check_geglu_args("geglu_backward", x, activation)
    _check_dy("geglu_backward", dy, x, (*x.shape[:-1], hidden))
    x2 = _rows(x)
    dx = torch.empty_like(x2)
    ops.geglu_bwd_out(dx, _rows(dy), x2, activation, swap_halves)
    return dx.view(x.shape)


def _geglu_backward_fake(dy, x, activation, swap_halves):
    hidden = _check_geglu_args("geglu_backward", x, activation)
    _check_dy("geglu_backward", dy, x, (*x.shape[:-1], hidden))
    return x.new_empty(x.shape)


def _gelu(x, approximate):
    _check_gelu_args("gelu", x, approximate)
    xc = x.contiguous()
    y = torch.empty_like(xc)
    ops.gelu_fwd_out(y, xc, approximate)
    return y


def _gelu_fake(x, approximate):
    _check_gelu_args("gelu", x, approximate)
    return x.new_empty(x.shape)


def _gelu_backward(dy, x, approximate):
    _check_gelu_args("gelu_backward", x, approximate)
    _check_dy("gelu_backward", dy, x, x.shape)
    xc = x.contiguous()
    dx = torch.empty_like(xc)
    ops.gelu_bwd_out(dx, dy.contiguous(), xc, approximate)
    return dx


def _gelu_backward_fake(dy, x, approximate):
    _check_gelu_args("gelu_backward", x, approximate)
    _check_dy("gelu_backward", dy, x, x.shape)
    return x.new_empty(x.shape)


def _setup_geglu(ctx, inputs, output):
    x, activation, swap_halves = inputs
    ctx.save_for_backward(x)
    ctx.activation = activation
    ctx.swap_halves = swap_halves


def _grad_geglu(ctx, dy):
    (x,) = ctx.saved_tensors
    return ops.geglu_backward(dy, x, ctx.activation, ctx.swap_halves), None, None


def _setup_gelu(ctx, inputs, output):
    x, approximate = inputs
    ctx.save_for_backward(x)
    ctx.approximate = approximate


def _grad_gelu(ctx, dy):
    (x,) = ctx.saved_tensors
    return ops.gelu_backward(dy, x, ctx.approximate), None


def _register_fakes() -> None:
    for name, fake in (
        ("geglu", _geglu_fake),
        ("geglu_backward", _geglu_backward_fake),
        ("gelu", _gelu_fake),
        ("gelu_backward", _gelu_backward_fake),
        ("geglu_fwd_out", out_op_fake),
        ("geglu_bwd_out", out_op_fake),
        ("gelu_fwd_out", out_op_fake),
        ("gelu_bwd_out", out_op_fake),
    ):
        torch.library.register_fake(add_op_namespace_prefix(name))(fake)


def _register_python_functional_ops() -> None:
    """Python versions of what the C++ binding registers for the functional ops: used by
    pure-Python (Triton) variants, which have no extension."""
    for name, impl in (
        ("geglu", _geglu),
        ("geglu_backward", _geglu_backward),
        ("gelu", _gelu),
        ("gelu_backward", _gelu_backward),
    ):
        torch.library.impl(add_op_namespace_prefix(name), "CompositeExplicitAutograd")(impl)
    torch.library.register_autograd(
        add_op_namespace_prefix("geglu"), _grad_geglu, setup_context=_setup_geglu
    )
    torch.library.register_autograd(
        add_op_namespace_prefix("gelu"), _grad_gelu, setup_context=_setup_gelu
    )


# ---------------------------------------------------------------- Python out-op backends


def _activation_and_grad(a: torch.Tensor, activation: str):
    """(act(a), act'(a)) in a's (float) dtype, the formulas of kernel_src/geglu/activation.h."""
    if activation == "gelu_tanh":
        k = 1.5957691216057308  # 2 * sqrt(2 / pi)
        s = torch.sigmoid(k * a * (1.0 + 0.044715 * a * a))
        return a * s, s + a * s * (1.0 - s) * (k * (1.0 + 3.0 * 0.044715 * a * a))
    if activation == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(a * 0.7071067811865476))
        return a * cdf, cdf + a * 0.3989422804014327 * torch.exp(-0.5 * a * a)
    s = torch.sigmoid(a)
    return a * s, s * (1.0 + a * (1.0 - s))


def _halves(x2: torch.Tensor, swap_halves: bool):
    a, b = x2.float().chunk(2, dim=-1)
    return (b, a) if swap_halves else (a, b)


def _reference_geglu_fwd(y, x, activation, swap_halves):
    y.copy_(geglu_reference(x, activation, swap_halves))


def _reference_geglu_bwd(dx, dy, x, activation, swap_halves):
    a, b = _halves(x, swap_halves)
    act, grad = _activation_and_grad(a, activation)
    g = dy.float()
    da, db = g * b * grad, g * act
    dx.copy_(torch.cat((db, da) if swap_halves else (da, db), dim=-1))


def _reference_gelu_fwd(y, x, approximate):
    y.copy_(gelu_reference(x, approximate))


def _reference_gelu_bwd(dx, dy, x, approximate):
    _act, grad = _activation_and_grad(x.float(), _GELU_ACTIVATION[approximate])
    dx.copy_(dy.float() * grad)


def _check_gated_out_op(op: str, x, activation, tensors: dict) -> None:
    """x: 2-D [rows, 2H], contiguous; `tensors`: name -> (tensor, shape), all of x's dtype."""
    _check_activation(op, activation)
    check_tensor_arg(op, "x", x)
    check_float_dtype(op, "x", x)
    if x.dim() != 2 or x.shape[1] == 0 or x.shape[1] % 2:
        raise ValueError(
            f"{op}: x must be 2-D [rows, 2 * hidden] with hidden >= 1, got {list(x.shape)}"
        )
    check_out_tensor(op, "x", x, x, x.dtype, x.shape)
    for name, (t, shape) in tensors.items():
        check_out_tensor(op, name, t, x, x.dtype, shape)


def _check_flat_out_op(op: str, x, approximate, tensors: dict) -> None:
    """x: contiguous, any shape; every tensor of `tensors` has x's shape, dtype and device."""
    _check_approximate(op, approximate)
    check_tensor_arg(op, "x", x)
    check_float_dtype(op, "x", x)
    check_out_tensor(op, "x", x, x, x.dtype, x.shape)
    for name, t in tensors.items():
        check_out_tensor(op, name, t, x, x.dtype, x.shape)


def _register_python_backend(dispatch_key: str, geglu_fwd, geglu_bwd, gelu_fwd, gelu_bwd) -> None:
    def geglu_fwd_out(y, x, activation, swap_halves):
        rows_hidden = (x.shape[0], x.shape[-1] // 2) if x.dim() == 2 else None
        _check_gated_out_op("geglu_fwd_out", x, activation, {"y": (y, rows_hidden)})
        geglu_fwd(y, x, activation, swap_halves)

    def geglu_bwd_out(dx, dy, x, activation, swap_halves):
        rows_hidden = (x.shape[0], x.shape[-1] // 2) if x.dim() == 2 else None
        _check_gated_out_op(
            "geglu_bwd_out", x, activation, {"dx": (dx, x.shape), "dy": (dy, rows_hidden)}
        )
        geglu_bwd(dx, dy, x, activation, swap_halves)

    def gelu_fwd_out(y, x, approximate):
        _check_flat_out_op("gelu_fwd_out", x, approximate, {"y": y})
        gelu_fwd(y, x, approximate)

    def gelu_bwd_out(dx, dy, x, approximate):
        _check_flat_out_op("gelu_bwd_out", x, approximate, {"dx": dx, "dy": dy})
        gelu_bwd(dx, dy, x, approximate)

    for name, impl in (
        ("geglu_fwd_out", geglu_fwd_out),
        ("geglu_bwd_out", geglu_bwd_out),
        ("gelu_fwd_out", gelu_fwd_out),
        ("gelu_bwd_out", gelu_bwd_out),
    ):
        torch.library.impl(add_op_namespace_prefix(name), dispatch_key)(impl)


def _register_triton_backend() -> None:
    from . import geglu_triton

    _register_python_functional_ops()
    triton_impls = (
        geglu_triton.geglu_fwd, geglu_triton.geglu_bwd, geglu_triton.gelu_fwd, geglu_triton.gelu_bwd
    )
    _register_python_backend("CUDA", *triton_impls)
    if triton_runs_on_cpu():
        _register_python_backend("CPU", *triton_impls)
    else:
        _register_python_backend(
            "CPU", _reference_geglu_fwd, _reference_geglu_bwd, _reference_gelu_fwd,
            _reference_gelu_bwd,
        )


if FIRST_LOAD:
    _register_fakes()
    if BACKEND == "triton":
        _register_triton_backend()
