"""AdaLN (plain and gated-residual, rms and layer norm, per-sample and per-token modulation):
ours beside the eager reference and torch.compile of it. Liger-Kernel has no AdaLN op, so it
is recorded as skipped.

    python -m benchmarks.bench_adaln [--quick] [--shapes flux] [--dtype bf16] [--ops ...]

Ops are named <function>-<norm>-<modulation>, e.g. adaln-rms-sample, adaln_gated-layer-token.
There is no affine weight (DiT blocks have none).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import OURS, Bench, Case, Peer, main as harness_main, tensor_bytes

KERNEL = "adaln"
EPS = 1e-6
SHAPES = {
    "flux": [(2, 4096, 3072)],
    "video": [(1, 32760, 2048)],
}
QUICK_SHAPES = [(2, 4096, 3072)]
NORMS = ("rms", "layer")
MODULATIONS = ("sample", "token")


def adaln_bytes(shape: tuple[int, ...], dtype: torch.dtype, direction: str, gated: bool,
                per_token: bool) -> int:
    """Each input read once, each output written once; scale, shift and gate at their real size
    ([B, D] per sample, [B, S, D] per token); mean and rstd (fp32 per row) not counted.

    plain fwd: x, scale, shift -> y.  bwd: dy, x, scale -> dx, dscale, dshift.
    gated fwd: x, branch, gate, scale, shift -> y, z.
    gated bwd: dy, dz, z, branch, gate, scale -> dx (= the gradient of x, counted once),
    dbranch, dgate, dscale, dshift.
    A per-token dshift is not counted: it is dy itself, which autograd passes on (eager and
    torch.compile as for any addition; ours since the backward op stopped copying it).
    """
    batch, _seq, hidden = shape
    n = math.prod(shape)
    m = n if per_token else batch * hidden
    dshift = 0 if per_token else m
    if direction == "fwd":
        return tensor_bytes(dtype, n, n, n, m, m, m, n) if gated else tensor_bytes(dtype, n, m, m, n)
    if gated:
        return tensor_bytes(dtype, n, n, n, n, m, m, n, n, m, m, dshift)
    return tensor_bytes(dtype, n, n, m, n, m, dshift)


def references(kernel: Any):
    """The package's fp32 references: (adaln_reference, adaln_gated_reference)."""
    return kernel.adaln_reference, kernel.adaln_gated_reference


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    return t.unsqueeze(1) if t.dim() == 2 else t


def in_dtype(norm: str):
    """The reference's math with every intermediate in the input dtype (sets the tolerance)."""

    def normalize(z):
        centered = z - z.mean(-1, keepdim=True) if norm == "layer" else z
        return centered * torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + EPS)

    def plain(x, scale, shift):
        return normalize(x) * (1 + _broadcast(scale)) + _broadcast(shift)

    def gated(x, branch, gate, scale, shift):
        z = x + _broadcast(gate) * branch
        return plain(z, scale, shift), z

    return plain, gated


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype, gated: bool, per_token: bool):
    batch, _seq, hidden = shape
    mod_shape = shape if per_token else (batch, hidden)

    def draw(device: str) -> dict[str, torch.Tensor]:
        inputs = {"x": torch.randn(shape, device=device, dtype=dtype)}
        if gated:
            inputs["branch"] = torch.randn(shape, device=device, dtype=dtype)
            inputs["gate"] = torch.randn(mod_shape, device=device, dtype=dtype)
        inputs["scale"] = 0.5 * torch.randn(mod_shape, device=device, dtype=dtype)
        inputs["shift"] = 0.5 * torch.randn(mod_shape, device=device, dtype=dtype)
        return inputs

    return draw


def build_cases(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> list[Case]:
    ref, ref_gated = references(kernel)
    cases = []
    for gated in (False, True):
        for norm in NORMS:
            for modulation in MODULATIONS:
                per_token = modulation == "token"
                name = "adaln_gated" if gated else "adaln"
                if gated:
                    def eager(x, branch, gate, scale, shift, norm=norm):
                        return ref_gated(x, branch, gate, scale, shift, None, EPS, norm)
                    grad_inputs = ("x", "branch", "gate", "scale", "shift")
                else:
                    def eager(x, scale, shift, norm=norm):
                        return ref(x, scale, shift, None, EPS, norm)
                    grad_inputs = ("x", "scale", "shift")
                peers = [
                    Peer("eager", eager),
                    Peer("compile", torch.compile(eager, dynamic=False, fullgraph=True)),
                    Peer("liger", skip="Liger-Kernel has no AdaLN op"),
                    ours_peer(kernel, name, norm),
                ]
                plain_lowp, gated_lowp = in_dtype(norm)
                cases.append(Case(
                    kernel=KERNEL, op=f"{name}-{norm}-{modulation}", shape=shape, dtype=dtype,
                    make_inputs=make_inputs(shape, dtype, gated, per_token), reference=eager,
                    lowp=gated_lowp if gated else plain_lowp, peers=peers,
                    grad_inputs=grad_inputs,
                    fwd_bytes=adaln_bytes(shape, dtype, "fwd", gated, per_token),
                    bwd_bytes=adaln_bytes(shape, dtype, "bwd", gated, per_token),
                ))
    return cases


def ours_peer(kernel: Any, op: str, norm: str) -> Peer:
    fn = getattr(kernel, op, None)
    if fn is None:
        return Peer(OURS, skip=f"{kernel.__name__} has no {op}")
    if op == "adaln":
        return Peer(OURS, lambda x, scale, shift: fn(x, scale, shift, None, EPS, norm))
    return Peer(OURS, lambda x, branch, gate, scale, shift:
                fn(x, branch, gate, scale, shift, None, EPS, norm))


BENCH = Bench(kernel=KERNEL, shape_sets=SHAPES, quick_shapes=QUICK_SHAPES, build_cases=build_cases)


def main(argv: list[str] | None = None) -> int:
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
