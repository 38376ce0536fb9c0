"""GPU timing with L2 flushed, and the machine's ceilings (copy bandwidth, bf16 matmul)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

# Triton's own flush buffer must be at least this large, else we flush with our own buffer.
# 2x the L2 of an H200 (60 MB, the largest L2 the project targets).
MIN_FLUSH_BYTES = 2 * 60 * 1024 * 1024


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def _l2_bytes() -> int:
    return int(torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size)


@functools.cache
def flush_method() -> str:
    """'triton' when triton's do_bench flushes at least MIN_FLUSH_BYTES (and 2x this L2)."""
    import triton

    need = max(MIN_FLUSH_BYTES, 2 * _l2_bytes())
    try:
        buf = triton.runtime.driver.active.get_empty_cache_for_benchmark()
        have = buf.numel() * buf.element_size()
    except Exception:
        return "own"
    return "triton" if have >= need else "own"


@functools.cache
def _own_flush_buffer() -> torch.Tensor:
    nbytes = max(256 * 1024 * 1024, 4 * _l2_bytes())
    return torch.empty(nbytes // 4, dtype=torch.int32, device="cuda")


def time_ms(fn: Callable[[], Any], warmup_ms: float, rep_ms: float) -> Timing:
    """Median (p20, p80) GPU time of ``fn`` in ms, L2 flushed before every timed call."""
    if flush_method() == "triton":
        import triton.testing

        q = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
        return Timing(*q)
    return _time_own_flush(fn, warmup_ms, rep_ms)


def _time_own_flush(fn: Callable[[], Any], warmup_ms: float, rep_ms: float) -> Timing:
    """The do_bench method with our larger flush buffer."""
    flush = _own_flush_buffer()
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        flush.zero_()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = max(start.elapsed_time(end) / 5, 1e-3)
    for _ in range(max(1, int(warmup_ms / estimate))):
        fn()
    n = max(1, int(rep_ms / estimate))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        flush.zero_()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    return Timing(*(quantile(times, q) for q in (0.5, 0.2, 0.8)))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an ascending list."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@functools.cache
def measure_ceilings(warmup_ms: float, rep_ms: float) -> dict[str, Any]:
    """Device-to-device copy bandwidth (read + written) and the dense bf16 matmul rate."""
    nbytes = 1 << 30
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    copy = time_ms(lambda: dst.copy_(src), warmup_ms, rep_ms)
    del src, dst
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    mm = time_ms(lambda: torch.mm(a, b, out=c), warmup_ms, rep_ms)
    del a, b, c
    torch.cuda.empty_cache()
    return {
        "copy_bytes": 2 * nbytes,
        "copy_ms": copy.median_ms,
        "copy_gbps": gbps(2 * nbytes, copy.median_ms),
        "matmul_shape": [n, n, n],
        "matmul_dtype": "bf16",
        "matmul_ms": mm.median_ms,
        "matmul_tflops": tflops(2 * n**3, mm.median_ms),
    }


def gbps(nbytes: int, ms: float) -> float:
    return nbytes / ms / 1e6


def tflops(flops: int, ms: float) -> float:
    return flops / ms / 1e9


