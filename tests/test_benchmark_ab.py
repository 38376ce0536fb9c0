"""benchmarks/ab.py: builds timed in alternating rounds, each checked first (on the CPU, with a
stand-in bench and scripted times)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # benchmarks/ is a folder of the checkout, not an installed package.
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import ab  # noqa: E402
from benchmarks.harness import Bench, Case, Peer  # noqa: E402


def test_summary_is_per_round_ratios():
    summary = ab.summarize([[2.0, 4.0, 3.0], [4.0, 4.0, 3.0], [1.0, 4.0, 2.0]])
    assert summary["median_ms"] == [3.0, 4.0, 2.0]
    assert summary["ratios"] == [{"median": 1.5, "min": 1.0, "max": 2.0},
                                 {"median": 1.5, "min": 1.0, "max": 4.0}]


def scale_by(factor):
    """A stand-in kernel module: `scale(x)` is factor * x."""
    return type("Kernel", (), {"scale": staticmethod(lambda x: factor * x)})


def stand_in_bench(shape=(8, 16)):
    def build_cases(kernel, shape, dtype):
        def make_inputs(_device):
            return {"x": torch.randn(shape, dtype=dtype)}

        return [Case(kernel="toy", op="double", shape=shape, dtype=dtype,
                     make_inputs=make_inputs, reference=lambda x: 2 * x, lowp=lambda x: 2 * x,
                     peers=[Peer("eager", lambda x: 2 * x), Peer("ours", kernel.scale)],
                     grad_inputs=("x",))]

    return Bench(kernel="toy", shape_sets={"one": [shape]}, quick_shapes=[shape],
                 build_cases=build_cases, default_dtypes=("fp32",))


def scripted(times):
    """time_ms that calls the timed function and returns the next scripted time."""
    calls = []

    def time_ms(fn):
        fn()
        calls.append(fn)
        return times[len(calls) - 1]

    return time_ms, calls


def test_run_checks_every_build_then_times_them_alternately():
    args = ab.parse_args(["toy", "a/v", "b/v", "--rounds", "2", "--direction", "fwd"])
    time_ms, calls = scripted([2.0, 1.0, 1.5, 3.0])
    rows = ab.run(stand_in_bench(), [scale_by(2.0), scale_by(2.0)], args, time_ms)
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    # Round 0 times build 0 then 1; round 1 build 1 then 0.
    assert rows[0]["times_ms"] == [[2.0, 3.0], [1.0, 1.5]]
    assert rows[0]["ratios"] == [{"median": 2.0, "min": 2.0, "max": 2.0}]
    assert len(calls) == 4
    table = ab.format_rows(rows, args.builds)
    assert table.startswith("A: a/v\nB: b/v\n")
    assert "| double | 8x16 | fwd | fp32 | 2500.0 | 1250.0 | 2.000 (2.000-2.000) |" in table


def test_a_build_that_fails_its_check_is_not_timed():
    args = ab.parse_args(["toy", "a/v", "b/v", "--direction", "both"])
    time_ms, calls = scripted([1.0] * 16)
    rows = ab.run(stand_in_bench(), [scale_by(2.0), scale_by(3.0)], args, time_ms)
    assert [r["direction"] for r in rows] == ["fwd", "bwd"]
    assert all(r["status"] == "failed" and r["reason"].startswith("build 1") for r in rows)
    assert calls == []


def test_a_peer_measured_in_one_direction_is_skipped_in_the_other():
    bench = stand_in_bench()
    build_cases = bench.build_cases

    def backward_only(kernel, shape, dtype):
        cases = build_cases(kernel, shape, dtype)
        cases[0].peers[1].directions = ("bwd",)
        return cases

    bench.build_cases = backward_only
    args = ab.parse_args(["toy", "a/v", "b/v", "--rounds", "1"])
    time_ms, calls = scripted([1.0, 1.0])
    rows = ab.run(bench, [scale_by(2.0), scale_by(2.0)], args, time_ms)
    assert [(r["direction"], r["status"]) for r in rows] == [("fwd", "skipped"), ("bwd", "ok")]
    assert len(calls) == 2


def test_an_unknown_peer_is_named_with_the_ones_there():
    args = ab.parse_args(["toy", "a/v", "b/v", "--peer", "ours-cuda"])
    with pytest.raises(SystemExit, match="has no peer 'ours-cuda'.*'eager', 'ours'"):
        ab.run(stand_in_bench(), [scale_by(2.0), scale_by(2.0)], args, scripted([])[0])


def test_needs_two_builds():
    with pytest.raises(SystemExit):
        ab.parse_args(["toy", "a/v"])
