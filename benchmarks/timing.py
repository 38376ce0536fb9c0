"""GPU timing with L2 flushed, and the machine's ceilings (copy bandwidth, bf16 matmul)."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

# Bytes zeroed before every timed call (what Triton's do_bench zeroes): over 4x the 60 MB L2 of
# an H200, the largest L2 the project targets; 4x this device's L2 where that is more.
MIN_FLUSH_BYTES = 256 * 1024 * 1024

# The GPU is held busy (torch.cuda._sleep) for this many times the host time of one call, before
# the call's start event, so the whole call is queued before its start event runs.
HOST_COVER_FACTOR = 2.0
MIN_COVER_MS = 0.02
MAX_COVER_MS = 10.0


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def flush_method() -> str:
    """How each timed call is isolated, as recorded in the results."""
    return f"zero {_flush_buffer().numel() * 4 >> 20} MB, then the GPU held busy while the call is queued"


@functools.cache
def _flush_buffer() -> torch.Tensor:
    l2 = int(torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size)
    return torch.empty(max(MIN_FLUSH_BYTES, 4 * l2) // 4, dtype=torch.int32, device="cuda")


@functools.cache
def _sleep_cycles_per_ms() -> float:
    """GPU clock cycles torch.cuda._sleep spins per millisecond, measured once."""
    cycles = 10_000_000
    torch.cuda._sleep(cycles // 10)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    return cycles / start.elapsed_time(end)


def _host_ms(fn: Callable[[], Any], calls: int = 5) -> float:
    """Host wall time to queue one call of fn (nothing synchronizes in between)."""
    torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = (time.perf_counter() - begin) * 1e3 / calls
    torch.cuda.synchronize()
    return elapsed


def call_isolation(fn: Callable[[], Any]) -> Callable[[], None]:
    """What runs before every timed call of ``fn``: the L2 flushed, then the GPU kept busy for
    about twice the host time of one call, so that a call queued right after it starts only once
    the host has queued all of it."""
    flush = _flush_buffer()
    fn()
    cover_ms = min(max(HOST_COVER_FACTOR * _host_ms(fn), MIN_COVER_MS), MAX_COVER_MS)
    cover_cycles = int(cover_ms * _sleep_cycles_per_ms())

    def isolate() -> None:
        flush.zero_()
        torch.cuda._sleep(cover_cycles)

    return isolate


def time_ms(fn: Callable[[], Any], warmup_ms: float, rep_ms: float) -> Timing:
    """Median (p20, p80) GPU time of ``fn`` in ms.

    Before every timed call the L2 is flushed and the GPU is then kept busy for about twice the
    host time of one call (call_isolation), so the start event runs only after the host has
    queued the whole call: what is timed is the GPU's work, with no idle time from Python,
    dispatch or dynamo guards in it. Without the cover, host time longer than the flush showed up
    in the timings: on an H100 host of 2026-12-06 the adaln-rms-sample 2x4096x3072 bf16 backward
    timed 166 us (80 us with the cover) and torch.compile's forward of it 151 us (47 us with the
    cover)."""
    isolate = call_isolation(fn)

    def timed_calls(n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            isolate()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        return sorted(s.elapsed_time(e) for s, e in zip(starts, ends))

    estimate = max(quantile(timed_calls(5), 0.5), 1e-3)
    timed_calls(max(1, int(warmup_ms / estimate)))
    times = timed_calls(max(1, int(rep_ms / estimate)))
    return Timing(*(quantile(times, q) for q in (0.5, 0.2, 0.8)))


def round_orders(count: int, rounds: int) -> list[list[int]]:
    """The order ``count`` things are timed in, per round: forward, then reversed, alternately,
    so that a drift of the GPU's clock or temperature over the rounds falls on each alike."""
    forward = list(range(count))
    return [forward if r % 2 == 0 else forward[::-1] for r in range(rounds)]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an ascending list."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@functools.cache
def measure_ceilings(warmup_ms: float, rep_ms: float) -> dict[str, Any]:
    """Device-to-device copy bandwidth (read + written) and the dense bf16 matmul rate."""
    nbytes = 1 << 30
    copy = _time_copy(nbytes, warmup_ms, rep_ms)
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


@functools.cache
def same_bytes_copy_gbps(nbytes: int, warmup_ms: float, rep_ms: float) -> float:
    """Bandwidth of a device-to-device copy moving ``nbytes`` in all (half read, half written):
    the ceiling at a kernel's own size, where launch and tail time weigh more than in the 1 GiB
    copy of measure_ceilings."""
    half = max(nbytes // 2, 1)
    return gbps(2 * half, _time_copy(half, warmup_ms, rep_ms).median_ms)


def _time_copy(nbytes: int, warmup_ms: float, rep_ms: float) -> Timing:
    """A device-to-device copy of ``nbytes`` random bytes (so 2 * nbytes moved)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    return time_ms(lambda: dst.copy_(src), warmup_ms, rep_ms)


def gbps(nbytes: int, ms: float) -> float:
    return nbytes / ms / 1e6


def tflops(flops: int, ms: float) -> float:
    return flops / ms / 1e9


