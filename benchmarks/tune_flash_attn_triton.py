"""Times the Triton FlashAttention kernels of the built variant over tile configurations, with
SDPA's flash backend timed in the same process as the yardstick: the numbers behind
FWD_CONFIGS / DKDV_CONFIGS / DQ_CONFIGS in kernel_src/flash_attn/flash_attn_triton.py.

    python -m benchmarks.tune_flash_attn_triton --head-dims 256 --kernels fwd [--out DIR]

Per (kernel, head dim) it patches one table entry of the loaded variant's module, runs the
forward (fwd) or the whole backward (dkdv, dq: the other tables as they are) on the bench
shape of that head dim, bf16, non-causal, and prints TFLOP/s per configuration (FLOPs as in
bench_flash_attn). A configuration Triton cannot build (shared memory, registers) is listed
with its error. Writes tune_flash_attn_triton.json to --out when given.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_flash_attn import SHAPES, attention_flops
from benchmarks.harness import REPO_ROOT, local_kernel, shape_str
from benchmarks.timing import time_ms

TABLES = {"fwd": "FWD_CONFIGS", "dkdv": "DKDV_CONFIGS", "dq": "DQ_CONFIGS"}
# (BLOCK_M, BLOCK_N, num_warps, num_stages) tried per kernel.
CANDIDATES = {
    "fwd": list(itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3))),
    "dkdv": list(itertools.product((16, 32, 64), (64, 128), (8,), (2, 3))),
    "dq": list(itertools.product((64, 128), (32, 64), (4, 8), (2, 3))),
}
WARMUP_MS = 25
REP_MS = 100


def triton_module():
    """flash_attn_triton of the Triton variant (build/torch-cuda)."""
    package = local_kernel(REPO_ROOT / "build" / "torch-cuda")
    return importlib.import_module(package.__name__ + ".flash_attn_triton")


def bench_shape(head_dim: int) -> tuple[int, int, int, int]:
    """(batch, heads, seqlen, head_dim) of bench_flash_attn with this head dim."""
    for shape in itertools.chain(*SHAPES.values()):
        if shape[3] == head_dim:
            return shape
    raise ValueError(f"--head-dims: no bench shape has head dim {head_dim}")


def runners(module, shape):
    """{kernel: ours()}, sdpa forward, sdpa backward for one shape (inputs [B, S, H, D])."""
    batch, heads, seqlen, head_dim = shape
    q, k, v, dout = (torch.randn(batch, seqlen, heads, head_dim, device="cuda",
                                 dtype=torch.bfloat16) for _ in range(4))
    scale = head_dim ** -0.5
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, seqlen, device="cuda", dtype=torch.float32)
    grads = [torch.empty_like(t) for t in (q, k, v)]

    def forward():
        module.attention_fwd(out, lse, q, k, v, None, None, seqlen, seqlen, scale, False, -1, -1)

    def backward():
        module.attention_bwd(*grads, dout, q, k, v, out, lse, None, None, seqlen, seqlen, scale,
                             False, -1, -1, False)

    forward()
    leaves = [t.transpose(1, 2).detach().requires_grad_(True) for t in (q, k, v)]
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        sdpa_out = F.scaled_dot_product_attention(*leaves)

    def sdpa_forward():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(*leaves)

    def sdpa_backward():
        torch.autograd.grad(sdpa_out, leaves, dout.transpose(1, 2), retain_graph=True)

    ours = {"fwd": forward, "dkdv": backward, "dq": backward}
    return ours, {"fwd": sdpa_forward, "bwd": sdpa_backward}


def tflops(shape, direction: str, ms: float) -> float:
    return attention_flops(shape, False, direction) / ms / 1e9


def tune(module, kernel: str, head_dim: int) -> dict:
    shape = bench_shape(head_dim)
    direction = "fwd" if kernel == "fwd" else "bwd"
    ours, sdpa = runners(module, shape)
    table = getattr(module, TABLES[kernel])
    current = table[head_dim]
    result = {"kernel": kernel, "head_dim": head_dim, "shape": shape_str(shape),
              "current": list(current),
              "sdpa_flash_tflops": tflops(shape, direction,
                                          time_ms(sdpa[direction], WARMUP_MS, REP_MS).median_ms),
              "configs": []}
    try:
        for config in CANDIDATES[kernel]:
            table[head_dim] = config
            row = {"config": list(config)}
            try:
                row["tflops"] = tflops(shape, direction,
                                       time_ms(ours[kernel], WARMUP_MS, REP_MS).median_ms)
            except Exception as exc:  # Triton's out-of-resources and compile errors
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            result["configs"].append(row)
            print(f"  {kernel} hd{head_dim} {config}: "
                  + (f"{row['tflops']:.0f} TFLOP/s" if "tflops" in row else row["error"]),
                  flush=True)
    finally:
        table[head_dim] = current
    timed = [row for row in result["configs"] if "tflops" in row]
    if timed:
        result["best"] = max(timed, key=lambda row: row["tflops"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-dims", default="64,128,256",
                        help="comma list of head dims with a bench shape (64, 128, 256)")
    parser.add_argument("--kernels", default="fwd", help=f"comma list of {', '.join(TABLES)}")
    parser.add_argument("--out", type=Path, help="directory for tune_flash_attn_triton.json")
    args = parser.parse_args(argv)
    kernels = args.kernels.split(",")
    unknown = sorted(set(kernels) - set(TABLES))
    if unknown:
        parser.error(f"--kernels: unknown {unknown}; choose from {sorted(TABLES)}")
    try:
        head_dims = [int(d) for d in args.head_dims.split(",")]
        for head_dim in head_dims:
            bench_shape(head_dim)
    except ValueError as exc:
        parser.error(str(exc))
    if not torch.cuda.is_available():
        print("tune_flash_attn_triton: needs a CUDA GPU", file=sys.stderr)
        return 2
    module = triton_module()
    results = []
    for kernel in kernels:
        for head_dim in head_dims:
            result = tune(module, kernel, head_dim)
            results.append(result)
            best = result.get("best")
            print(f"{kernel} hd{head_dim} {result['shape']}: sdpa-flash "
                  f"{result['sdpa_flash_tflops']:.0f} TFLOP/s; current {result['current']}; best "
                  + (f"{best['config']} {best['tflops']:.0f} TFLOP/s" if best else "none built"),
                  flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"gpu": torch.cuda.get_device_name(), "triton": module.triton.__version__,
                   "results": results}
        (args.out / "tune_flash_attn_triton.json").write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
