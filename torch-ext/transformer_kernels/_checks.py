"""Argument checks and helpers shared by every kernel module.

Error messages name the op and the argument, the way the C++ binding's (torch-ext/binding.h)
do, so a variant's Python and C++ paths fail alike.
"""

import os

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor_arg(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_float_dtype(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")


def check_same(op: str, name: str, t, x) -> None:
    """t is a tensor on x's device with x's dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor or None, got {type(t).__name__}")
    if t.device != x.device:
        raise ValueError(f"{op}: {name} is on {t.device} but x is on {x.device}")
    if t.dtype != x.dtype:
        raise TypeError(f"{op}: {name} dtype {t.dtype} must match x dtype {x.dtype}")


def check_out_tensor(op: str, name: str, t, x, dtype, shape) -> None:
    """The checks the C++ binding makes on every tensor handed to a kernel."""
    check_tensor_arg(op, name, t)
    if t.device != x.device:
        raise ValueError(f"{op}: {name} is on {t.device} but x is on {x.device}")
    if t.dtype != dtype:
        raise TypeError(f"{op}: {name} must be {dtype}, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous")


def grad_or_zeros(grad, like: torch.Tensor) -> torch.Tensor:
    """An output's gradient, zeros when that output was unused. The autograd setups whose ops
    return outputs never differentiated (mean, rstd, lse) turn off materialize_grads, which
    would otherwise fill a zero gradient for each of them on every backward (binding.h)."""
    return grad if grad is not None else torch.zeros_like(like)


def out_op_fake(*args) -> None:
    """Fake of every `*_out` op: they return nothing."""
    return None


def triton_runs_on_cpu() -> bool:
    """Under TRITON_INTERPRET=1 Triton runs on CPU tensors (how CI tests the Triton kernels);
    otherwise a Triton variant's CPU key gets the fp32 reference."""
    return os.environ.get("TRITON_INTERPRET") == "1"
