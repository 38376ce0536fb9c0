"""Builds of our kernels A/B'd in one process, their times interleaved round by round.

    python -m benchmarks.ab BENCH BUILD [BUILD ...] NEW [--peer ours-cuda] [--rounds 4]
        [--shapes ...] [--dtype bf16] [--ops ...] [--direction fwd|bwd|both] [--warmup MS]
        [--rep MS] [--out FILE]

BENCH names a bench module (``flash_attn`` for ``benchmarks.bench_flash_attn``). Each build is
what ``kernel_hub.get_local_kernel`` takes: a build output directory (``kernel-builder build
--out DIR``; its best variant loads) or one variant directory. The builds' op namespaces come
from their content hashes, so any number of them load side by side. Per case and direction
every build's ``--peer`` is checked against the case's reference on the same inputs, then
timed once per round, in order on even rounds and in reverse on odd ones, so that a drift of
the GPU's clock or temperature over the call falls on every build alike: two builds
benchmarked one after the other (``scripts/gpu_ab.sh`` without TK_AB_ROUNDS) saw cuDNN's
unchanged kernel move by 0.960-1.009 between them (H100, 2026-12-07). Printed: each build's
median time and, for each build before the last, its time over the last's per round (above 1:
the last is faster), median and range.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import timing
from benchmarks.harness import (DTYPE_NAMES, SKIP_EXIT, Bench, Truth, add_selection_arguments,
                                describe_error, leaf_inputs, local_kernel, resolve_selection,
                                shape_str, timed_callable, timing_compile_config)


def summarize(times: list[list[float]]) -> dict[str, Any]:
    """times[build][round] (ms) -> each build's median, and each build's time over the last
    build's per round (median, min, max), for every build before the last."""
    summary: dict[str, Any] = {"median_ms": [statistics.median(t) for t in times], "ratios": []}
    for other in times[:-1]:
        ratios = [a / b for a, b in zip(other, times[-1])]
        summary["ratios"].append({"median": statistics.median(ratios), "min": min(ratios),
                                  "max": max(ratios)})
    return summary


def _peer(case: Any, name: str) -> Any:
    for peer in case.peers:
        if peer.name == name:
            return peer
    raise SystemExit(f"benchmarks.ab: {case.op} has no peer {name!r}; it has "
                     f"{[p.name for p in case.peers]}")


def ab_case(cases: Sequence[Any], peer_name: str, direction: str, rounds: int,
            time_ms: Callable[[Callable[[], Any]], float]) -> dict[str, Any]:
    """One case (built once per build) in one direction: checked, then timed in rounds."""
    first = cases[0]
    row: dict[str, Any] = {"op": first.op, "shape": shape_str(first.shape),
                           "dtype": DTYPE_NAMES[first.dtype], "direction": direction}
    inputs = leaf_inputs(first)
    truth = Truth(first, inputs, [direction])
    fns = []
    for index, case in enumerate(cases):
        peer = _peer(case, peer_name)
        if peer.fn is None or direction not in peer.directions:
            reason = peer.skip or f"{peer_name} is measured in {peer.directions} only"
            return {**row, "status": "skipped", "reason": f"build {index}: {reason}"}
        try:
            check = truth.check(peer, inputs, direction)
        except Exception as exc:
            return {**row, "status": "error", "reason": f"build {index}: {describe_error(exc)}"}
        if not check.passed:
            return {**row, "status": "failed",
                    "reason": f"build {index}: max error {check.errors} over {check.limits}"}
        fns.append(timed_callable(peer, case, inputs, truth.dys, direction))
    times: list[list[float]] = [[] for _ in cases]
    for order in timing.round_orders(len(cases), rounds):
        for index in order:
            times[index].append(time_ms(fns[index]))
    return {**row, "status": "ok", "times_ms": times, **summarize(times)}


def format_rows(rows: Sequence[dict[str, Any]], builds: Sequence[str]) -> str:
    """A legend of the builds (A, B, ...), then a markdown row per case and direction."""
    names = [chr(ord("A") + i) for i in range(len(builds))]
    legend = [f"{n}: {b}" for n, b in zip(names, builds)]
    head = ["op", "shape", "dir", "dtype"] + [f"{n} us" for n in names]
    head += [f"{n} / {names[-1]} (min-max)" for n in names[:-1]]
    lines = legend + ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["op"], row["shape"], row["direction"], row["dtype"]]
        if row["status"] != "ok":
            lines.append("| " + " | ".join(cells + [f"{row['status']}: {row['reason']}"]) + " |")
            continue
        cells += [f"{1e3 * t:.1f}" for t in row["median_ms"]]
        cells += [f"{r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})" for r in row["ratios"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    p.add_argument("bench", help="a bench module's kernel, e.g. flash_attn")
    p.add_argument("builds", nargs="+",
                   help="build output or variant directories; the others are compared with the last")
    p.add_argument("--peer", default="ours", help="the peer timed in every build")
    p.add_argument("--rounds", type=int, default=4)
    add_selection_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if len(args.builds) < 2 or args.rounds < 1:
        p.error("needs two builds or more and at least one round")
    return args


def run(bench: Bench, kernels: Sequence[Any], args: argparse.Namespace,
        time_ms: Callable[[Callable[[], Any]], float]) -> list[dict[str, Any]]:
    resolve_selection(bench, args)
    rows = []
    with timing_compile_config():
        for shape in args.shapes_list:
            for dtype in args.dtypes:
                per_build = [bench.build_cases(k, shape, dtype) for k in kernels]
                for cases in zip(*per_build):
                    if args.op_filter is not None and cases[0].op not in args.op_filter:
                        continue
                    for direction in args.directions:
                        if direction == "bwd" and not cases[0].grad_inputs:
                            continue
                        print(f"  {cases[0].op} {shape_str(shape)} {DTYPE_NAMES[dtype]} "
                              f"{direction}", flush=True)
                        rows.append(ab_case(cases, args.peer, direction, args.rounds, time_ms))
                        torch.cuda.empty_cache()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.ab: no CUDA device here; nothing measured.", file=sys.stderr)
        return SKIP_EXIT
    bench = importlib.import_module(f"benchmarks.bench_{args.bench}").BENCH
    kernels = [local_kernel(Path(b)) for b in args.builds]
    rows = run(bench, kernels, args,
               lambda fn: timing.time_ms(fn, args.warmup, args.rep).median_ms)
    print(format_rows(rows, args.builds))
    if args.out is not None:
        args.out.write_text(json.dumps({"builds": args.builds, "peer": args.peer,
                                        "device": torch.cuda.get_device_name(), "rows": rows},
                                       indent=1))
    return 0 if all(r["status"] in ("ok", "skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
