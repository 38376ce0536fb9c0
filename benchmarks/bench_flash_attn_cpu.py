"""FlashAttention on the CPU: the CPU variant against torch's CPU SDPA in the same process, fp32.

    python -m benchmarks.bench_flash_attn_cpu [--shapes 1x1024x8x64,1x2048x8x128] [--reps 5]

Shapes are (batch, seqlen, heads, head_dim); ours takes [B, S, H, D], SDPA the transposed
[B, H, S, D] views. Times are wall-clock medians (ms) of forward and of forward+backward
(autograd, the sum of the output as the loss), after one untimed call; the thread count is
torch's. Ours is the first CPU variant built in build/ (kernel_hub.get_local_kernel).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import REPO_ROOT, local_kernel, parse_shape, shape_str

DEFAULT_SHAPES = "1x1024x8x64,1x2048x8x128"
# A CPU benchmark with its own printout: run_all (the GPU kernels' JSON) leaves it out.
IN_RUN_ALL = False


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cpu_variant():
    for path in sorted((REPO_ROOT / "build").glob("torch*-cpu-*")):
        return local_kernel(path)
    raise SystemExit("bench_flash_attn_cpu: no CPU variant in build/ (run kernel-builder build)")


def measure(kernel, shape, reps: int) -> dict:
    torch.manual_seed(0)
    q, k, v = (torch.randn(*shape) for _ in range(3))
    ours_leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    sdpa_leaves = [t.transpose(1, 2).clone().requires_grad_(True) for t in (q, k, v)]

    def ours_fwd_bwd():
        kernel.flash_attn(*ours_leaves).sum().backward()

    def sdpa_fwd_bwd():
        F.scaled_dot_product_attention(*sdpa_leaves).sum().backward()

    with torch.no_grad():
        ours_fwd = median_ms(lambda: kernel.flash_attn(q, k, v), reps)
        sdpa_fwd = median_ms(lambda: F.scaled_dot_product_attention(*sdpa_leaves), reps)
    return {"shape": shape_str(shape), "ours_fwd_ms": ours_fwd, "sdpa_fwd_ms": sdpa_fwd,
            "ours_fwd_bwd_ms": median_ms(ours_fwd_bwd, reps),
            "sdpa_fwd_bwd_ms": median_ms(sdpa_fwd_bwd, reps)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    except ValueError as exc:
        parser.error(str(exc))
    if any(len(shape) != 4 for shape in shapes):
        parser.error("--shapes: each shape is batch x seqlen x heads x head_dim")
    kernel = cpu_variant()
    print(f"fp32, {torch.get_num_threads()} threads, ms (median of {args.reps})")
    print("shape            ours fwd  sdpa fwd  ours fwd+bwd  sdpa fwd+bwd")
    for shape in shapes:
        r = measure(kernel, shape, args.reps)
        print(f"{r['shape']:<16} {r['ours_fwd_ms']:8.1f}  {r['sdpa_fwd_ms']:8.1f}  "
              f"{r['ours_fwd_bwd_ms']:12.1f}  {r['sdpa_fwd_bwd_ms']:12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
