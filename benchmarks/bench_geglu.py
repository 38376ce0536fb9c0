"""GEGLU (tanh GELU), SwiGLU's silu_and_mul and the elementwise tanh GELU: ours beside eager,
torch.compile and Liger-Kernel.

    python -m benchmarks.bench_geglu [--quick] [--shapes small] [--dtype bf16] [--out DIR]

A shape is x of the gated ops ([..., 2H]); gelu runs on the gated output's shape [..., H] (the
projection output of LTX-Video's "gelu-approximate" feed-forward), so [8192, 22016] measures
gelu on [8192, 11008].
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import OURS, Bench, Case, Peer, main as harness_main, tensor_bytes

KERNEL = "geglu"
SHAPES = {
    # Llama-7B-sized MLP: 8192 tokens, intermediate 11008.
    "llm": [(8192, 2 * 11008)],
    # A diffusion transformer feed-forward: batch 4, 4096 tokens, inner dim 8192.
    "dit": [(4, 4096, 2 * 8192)],
}
QUICK_SHAPES = [(8192, 2 * 11008)]


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def gated_bytes(shape: tuple[int, ...], dtype: torch.dtype, direction: str) -> int:
    """x [..., 2H] -> y [..., H] with N = numel(y): fwd reads x (2N), writes y (N); bwd reads
    dy (N) and x (2N), writes dx (2N)."""
    n = _numel(shape) // 2
    if direction == "fwd":
        return tensor_bytes(dtype, 2 * n, n)
    return tensor_bytes(dtype, n, 2 * n, 2 * n)


def gelu_bytes(shape: tuple[int, ...], dtype: torch.dtype, direction: str) -> int:
    """fwd reads x, writes y; bwd reads dy and x, writes dx."""
    n = _numel(shape)
    if direction == "fwd":
        return tensor_bytes(dtype, n, n)
    return tensor_bytes(dtype, n, n, n)


def geglu_in_dtype(x: torch.Tensor) -> torch.Tensor:
    """The eager peer: gelu_tanh(a) * b in x's dtype (also the tolerance baseline)."""
    a, b = x.chunk(2, dim=-1)
    return F.gelu(a, approximate="tanh") * b


def silu_and_mul_in_dtype(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return F.silu(a) * b


def gelu_in_dtype(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype):
    def draw(device: str) -> dict[str, torch.Tensor]:
        return {"x": torch.randn(shape, device=device, dtype=dtype)}

    return draw


def references(kernel: Any):
    """The package's fp32 references: (geglu_reference, gelu_reference). The module is
    imported by name: the package's attribute `geglu` is the function."""
    module = importlib.import_module(f"{kernel.__name__}.geglu")
    return module.geglu_reference, module.gelu_reference


def build_cases(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> list[Case]:
    geglu_ref, gelu_ref = references(kernel)
    gelu_shape = (*shape[:-1], shape[-1] // 2)

    def peers(op: str, eager: Callable, liger: Peer | None) -> list[Peer]:
        out = [
            Peer("eager", eager),
            Peer("compile", torch.compile(eager, dynamic=False, fullgraph=True)),
        ]
        if liger is not None:
            out.append(liger)
        return out + [ours_peer(kernel, op)]

    common = dict(kernel=KERNEL, dtype=dtype, grad_inputs=("x",))
    return [
        Case(op="geglu", shape=shape, make_inputs=make_inputs(shape, dtype),
             reference=lambda x: geglu_ref(x, "gelu_tanh"), lowp=geglu_in_dtype,
             peers=peers("geglu", geglu_in_dtype, liger_gated("geglu", "LigerGELUMulFunction")),
             fwd_bytes=gated_bytes(shape, dtype, "fwd"),
             bwd_bytes=gated_bytes(shape, dtype, "bwd"), **common),
        Case(op="silu_and_mul", shape=shape, make_inputs=make_inputs(shape, dtype),
             reference=lambda x: geglu_ref(x, "silu"), lowp=silu_and_mul_in_dtype,
             peers=peers("silu_and_mul", silu_and_mul_in_dtype,
                         liger_gated("swiglu", "LigerSiLUMulFunction")),
             fwd_bytes=gated_bytes(shape, dtype, "fwd"),
             bwd_bytes=gated_bytes(shape, dtype, "bwd"), **common),
        Case(op="gelu", shape=gelu_shape, make_inputs=make_inputs(gelu_shape, dtype),
             reference=lambda x: gelu_ref(x, "tanh"), lowp=gelu_in_dtype,
             peers=peers("gelu", gelu_in_dtype, None),
             fwd_bytes=gelu_bytes(gelu_shape, dtype, "fwd"),
             bwd_bytes=gelu_bytes(gelu_shape, dtype, "bwd"), **common),
    ]


def ours_peer(kernel: Any, op: str) -> Peer:
    fn = getattr(kernel, op, None)
    if fn is None:
        return Peer(OURS, skip=f"{kernel.__name__} has no {op}")
    return Peer(OURS, lambda x: fn(x))


def liger_gated(module: str, cls: str) -> Peer:
    """Liger's gated activation on the two halves of x. Its Function takes a and b as separate
    tensors (forward(ctx, a, b), liger_kernel/ops/{geglu,swiglu}.py) and makes them contiguous,
    so the halves are copied first (part of its measured time, as in any caller holding the
    fused [..., 2H] projection); its backward writes da, db into those copies."""
    try:
        function = getattr(importlib.import_module(f"liger_kernel.ops.{module}"), cls)
    except Exception as exc:
        return Peer("liger", skip=f"liger_kernel.ops.{module}.{cls} not importable: "
                                  f"{type(exc).__name__}: {exc}")

    def run(x):
        a, b = x.chunk(2, dim=-1)
        return function.apply(a, b)

    return Peer("liger", run)


BENCH = Bench(kernel=KERNEL, shape_sets=SHAPES, quick_shapes=QUICK_SHAPES, build_cases=build_cases)


def main(argv: list[str] | None = None) -> int:
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
