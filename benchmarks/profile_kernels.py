"""The GPU kernels one call of a benchmark case launches, and the time each takes.

    python -m benchmarks.profile_kernels bench_adaln --op adaln-rms-sample --shape 2x4096x3072
        [--dtype bf16] [--direction bwd] [--peer ours] [--calls 20]

Runs the peer's call (the same callable the harness times: the forward, or
``torch.autograd.grad`` after one forward) ``--calls`` times under ``torch.profiler`` and prints
each kernel's launches per call and mean duration, then the mean span of a call on the GPU (first
kernel start to last kernel end) beside the sum of its kernels' durations: the difference is the
time no kernel of the call ran (gaps between kernels), or the overlap of kernels that ran at once
(a kernel launched early that waits for the one before it). Each call is isolated as the
benchmarks isolate it, so the span is what they time, less the launch of the first kernel.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness, timing


@dataclass
class KernelEvent:
    name: str
    start_us: float
    duration_us: float


def select_case(cases: Sequence[harness.Case], op: str) -> harness.Case:
    """The case named ``op``; a clear error naming the ops there are otherwise."""
    for case in cases:
        if case.op == op:
            return case
    raise SystemExit(f"--op: no case {op!r}; this benchmark has {sorted(c.op for c in cases)}")


def select_peer(case: harness.Case, name: str) -> harness.Peer:
    for peer in case.peers:
        if peer.name == name:
            if peer.fn is None:
                raise SystemExit(f"--peer {name}: cannot run here ({peer.skip})")
            return peer
    raise SystemExit(f"--peer: no peer {name!r}; {case.op} has {[p.name for p in case.peers]}")


def split_calls(events: Sequence[KernelEvent], calls: int) -> list[list[KernelEvent]]:
    """Kernel events in start order, cut into ``calls`` equal runs (every call launches the same
    kernels); an error when the count does not divide, since the cut would then be a guess."""
    ordered = sorted(events, key=lambda e: e.start_us)
    if calls < 1 or len(ordered) % calls:
        raise ValueError(f"{len(ordered)} kernel launches do not split into {calls} calls")
    per_call = len(ordered) // calls
    return [ordered[i * per_call:(i + 1) * per_call] for i in range(calls)]


def summarize(calls: Sequence[Sequence[KernelEvent]]) -> list[str]:
    """Lines: per kernel name, launches per call and mean duration; then span against busy."""
    durations: dict[str, list[float]] = defaultdict(list)
    spans, busy = [], []
    for call in calls:
        for e in call:
            durations[e.name].append(e.duration_us)
        spans.append(max(e.start_us + e.duration_us for e in call) - call[0].start_us)
        busy.append(sum(e.duration_us for e in call))
    n = len(calls)
    lines = [f"{'launches/call':>13} {'mean us':>9}  kernel"]
    for name, ds in durations.items():
        lines.append(f"{len(ds) / n:>13.1f} {sum(ds) / len(ds):>9.2f}  {name[:110]}")
    lines.append(f"span of a call on the GPU: {sum(spans) / n:.2f} us; kernels' durations summed: "
                 f"{sum(busy) / n:.2f} us")
    return lines


def kernel_events(prof: torch.profiler.profile) -> list[KernelEvent]:
    events = []
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            events.append(KernelEvent(e.name, e.time_range.start, e.time_range.elapsed_us()))
    return events


def profiled_kernels(steps, calls: int) -> list[KernelEvent]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            steps()
        torch.cuda.synchronize()
    return kernel_events(prof)


def profile(call, calls: int) -> list[list[KernelEvent]]:
    """Each call isolated as the benchmarks isolate it (timing.call_isolation: L2 flushed, GPU
    held busy while the call is queued), so that the spans hold no host time; the isolation's
    own kernels, found by profiling it alone, are left out."""
    isolate = timing.call_isolation(call)

    def isolated_call():
        isolate()
        call()

    isolation_names = {e.name for e in profiled_kernels(isolate, 1)}
    events = profiled_kernels(isolated_call, calls)
    return split_calls([e for e in events if e.name not in isolation_names], calls)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_kernels",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("bench", help="a benchmark module, e.g. bench_adaln")
    p.add_argument("--op", required=True)
    p.add_argument("--shape", required=True, type=harness.parse_shape)
    p.add_argument("--dtype", default="bf16", choices=sorted(harness.DTYPES))
    p.add_argument("--direction", default="bwd", choices=harness.DIRECTIONS)
    p.add_argument("--peer", default=harness.OURS)
    p.add_argument("--calls", type=int, default=20)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.calls < 1:
        raise SystemExit("--calls must be at least 1")
    if not torch.cuda.is_available():
        print("profile_kernels: no CUDA device here", file=sys.stderr)
        return harness.SKIP_EXIT
    bench = importlib.import_module(f"benchmarks.{args.bench}").BENCH
    kernel, info = harness.load_kernel()
    if kernel is None:
        raise SystemExit(f"profile_kernels: cannot load transformer_kernels: {info['error']}")
    cases = bench.build_cases(kernel, args.shape, harness.DTYPES[args.dtype])
    case = select_case(cases, args.op)
    peer = select_peer(case, args.peer)
    inputs = harness.leaf_inputs(case)
    with harness.timing_compile_config():
        dys = None
        if args.direction == "bwd":
            outs = harness.as_tuple(peer.fn(**inputs))
            dys = [torch.randn_like(o) for o in outs]
        call = harness.timed_callable(peer, case, inputs, dys, args.direction)
        calls = profile(call, args.calls)
    print(f"{case.op} {harness.shape_str(case.shape)} {args.dtype} {args.direction}, "
          f"peer {peer.name} ({info['variant']}), {args.calls} calls")
    print("\n".join(summarize(calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
