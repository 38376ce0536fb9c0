"""RMSNorm and fused residual-add RMSNorm: ours beside eager, F.rms_norm, torch.compile, Liger.

    python -m benchmarks.bench_rmsnorm [--quick] [--shapes small] [--dtype bf16] [--out DIR]
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import OURS, Bench, Case, Peer, main as harness_main, tensor_bytes

KERNEL = "rmsnorm"
EPS = 1e-6
SHAPES = {
    "small": [(1, 1024, 2048), (4096, 4096)],
    "large": [(4, 4096, 3072), (16384, 8192), (32768, 4096)],
}
QUICK_SHAPES = [(4096, 4096), (16384, 8192)]


def rows_hidden(shape: tuple[int, ...]) -> tuple[int, int]:
    return math.prod(shape[:-1]), shape[-1]


def rms_norm_bytes(shape: tuple[int, ...], dtype: torch.dtype, direction: str) -> int:
    """fwd reads x, w and writes y; bwd reads dy, x, w and writes dx, dw (rstd not counted)."""
    rows, hidden = rows_hidden(shape)
    n = rows * hidden
    if direction == "fwd":
        return tensor_bytes(dtype, n, hidden, n)
    return tensor_bytes(dtype, n, n, hidden, n, hidden)


def rms_norm_add_bytes(shape: tuple[int, ...], dtype: torch.dtype, direction: str) -> int:
    """fwd reads x, residual, w and writes y, residual_out.

    bwd reads dy, d(residual_out), residual_out (the saved sum), w and writes dx and dw; the
    gradients of x and residual are the same tensor, counted once.
    """
    rows, hidden = rows_hidden(shape)
    n = rows * hidden
    if direction == "fwd":
        return tensor_bytes(dtype, n, n, hidden, n, n)
    return tensor_bytes(dtype, n, n, n, hidden, n, hidden)


def rms_norm_in_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The reference's math with every intermediate in x.dtype (sets the tolerance)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * weight


def rms_norm_add_in_dtype(x, residual, weight):
    h = x + residual
    return rms_norm_in_dtype(h, weight), h


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype, residual: bool):
    hidden = shape[-1]

    def draw(device: str) -> dict[str, torch.Tensor]:
        inputs = {"x": torch.randn(shape, device=device, dtype=dtype)}
        if residual:
            inputs["residual"] = torch.randn(shape, device=device, dtype=dtype)
        inputs["weight"] = (1.0 + 0.1 * torch.randn(hidden, device=device)).to(dtype)
        return inputs

    return draw


def references(kernel: Any):
    """The package's fp32 references: (rms_norm_reference, rms_norm_add_reference)."""
    module = getattr(kernel, "rmsnorm", None)
    if module is None:
        module = importlib.import_module(f"{kernel.__name__}.rmsnorm")
    return module.rms_norm_reference, module.rms_norm_add_reference


def build_cases(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> list[Case]:
    ref, ref_add = references(kernel)
    hidden = shape[-1]

    def eager(x, weight):
        return ref(x, weight, EPS)

    def eager_add(x, residual, weight):
        return ref_add(x, residual, weight, EPS)

    def fused_torch(x, weight):
        return F.rms_norm(x, (hidden,), weight, EPS)

    def fused_torch_add(x, residual, weight):
        h = x + residual
        return F.rms_norm(h, (hidden,), weight, EPS), h

    norm_peers = [
        Peer("eager", eager),
        Peer("F.rms_norm", fused_torch),
        Peer("compile", torch.compile(eager, dynamic=False, fullgraph=True)),
        liger_rms_norm(),
        ours_peer(kernel, "rms_norm"),
    ]
    add_peers = [
        Peer("eager", eager_add),
        Peer("F.rms_norm", fused_torch_add),
        Peer("compile", torch.compile(eager_add, dynamic=False, fullgraph=True)),
        liger_rms_norm_add(),
        ours_peer(kernel, "rms_norm_add"),
    ]
    common = dict(kernel=KERNEL, shape=shape, dtype=dtype)
    return [
        Case(op="rms_norm", make_inputs=make_inputs(shape, dtype, residual=False),
             reference=eager, lowp=rms_norm_in_dtype, peers=norm_peers,
             grad_inputs=("x", "weight"),
             fwd_bytes=rms_norm_bytes(shape, dtype, "fwd"),
             bwd_bytes=rms_norm_bytes(shape, dtype, "bwd"), **common),
        Case(op="rms_norm_add", make_inputs=make_inputs(shape, dtype, residual=True),
             reference=eager_add, lowp=rms_norm_add_in_dtype, peers=add_peers,
             grad_inputs=("x", "residual", "weight"),
             fwd_bytes=rms_norm_add_bytes(shape, dtype, "fwd"),
             bwd_bytes=rms_norm_add_bytes(shape, dtype, "bwd"), **common),
    ]


def ours_peer(kernel: Any, op: str) -> Peer:
    fn = getattr(kernel, op, None)
    if fn is None:
        return Peer(OURS, skip=f"{kernel.__name__} has no {op}")
    if op == "rms_norm":
        return Peer(OURS, lambda x, weight: fn(x, weight, eps=EPS))
    return Peer(OURS, lambda x, residual, weight: fn(x, residual, weight, eps=EPS))


def liger_rms_norm() -> Peer:
    try:
        from liger_kernel.ops.rms_norm import LigerRMSNormFunction
    except Exception as exc:
        return Peer("liger", skip=f"liger_kernel.ops.rms_norm not importable: "
                                  f"{type(exc).__name__}: {exc}")
    # forward(ctx, X, W, eps, offset=0.0, casting_mode="llama", in_place=True, ...) in recent
    # releases; in_place=True would overwrite dy with dx on every timed backward.
    names = list(inspect.signature(LigerRMSNormFunction.forward).parameters)
    extra = (0.0, "llama", False) if names[4:7] == ["offset", "casting_mode", "in_place"] else ()
    return Peer("liger", lambda x, weight: LigerRMSNormFunction.apply(x, weight, EPS, *extra))


def liger_rms_norm_add() -> Peer:
    try:
        from liger_kernel.ops.fused_add_rms_norm import LigerFusedAddRMSNormFunction
    except Exception as exc:
        return Peer("liger", skip=f"liger_kernel.ops.fused_add_rms_norm not importable: "
                                  f"{type(exc).__name__}: {exc}")
    return Peer("liger", lambda x, residual, weight:
                LigerFusedAddRMSNormFunction.apply(x, residual, weight, EPS))


BENCH = Bench(kernel=KERNEL, shape_sets=SHAPES, quick_shapes=QUICK_SHAPES, build_cases=build_cases)


def main(argv: list[str] | None = None) -> int:
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
