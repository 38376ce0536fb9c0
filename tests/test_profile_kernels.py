"""CPU tests of benchmarks/profile_kernels.py: how kernel events become per-call figures, and the
errors for an op or peer that is not there (the profiling itself needs a GPU)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import harness, profile_kernels  # noqa: E402
from benchmarks.profile_kernels import KernelEvent  # noqa: E402


def two_kernel_calls(calls: int, gap_us: float) -> tuple[list[KernelEvent], float, float]:
    """Each call: kernel a, then kernel b starting gap_us after a ends; calls 100 us apart.
    Returns the events shuffled, a's and b's random durations being drawn per call."""
    rng = random.Random(1)
    events, a_total, b_total = [], 0.0, 0.0
    for i in range(calls):
        start = 100.0 * i
        a, b = rng.uniform(10, 20), rng.uniform(1, 5)
        a_total, b_total = a_total + a, b_total + b
        events += [KernelEvent("a", start, a), KernelEvent("b", start + a + gap_us, b)]
    rng.shuffle(events)
    return events, a_total / calls, b_total / calls


def test_split_calls_orders_and_cuts_evenly():
    events, _, _ = two_kernel_calls(4, gap_us=2.0)
    calls = profile_kernels.split_calls(events, 4)
    assert [[e.name for e in call] for call in calls] == [["a", "b"]] * 4
    assert [call[0].start_us for call in calls] == [0.0, 100.0, 200.0, 300.0]


def test_split_calls_refuses_an_uneven_count():
    events, _, _ = two_kernel_calls(3, gap_us=0.0)
    with pytest.raises(ValueError, match="6 kernel launches do not split into 4 calls"):
        profile_kernels.split_calls(events, 4)


def test_summarize_reports_means_span_and_busy_time():
    gap = 3.0
    events, a_mean, b_mean = two_kernel_calls(5, gap_us=gap)
    lines = profile_kernels.summarize(profile_kernels.split_calls(events, 5))
    rows = {line.split()[-1]: line.split() for line in lines[1:-1]}
    assert rows["a"][:2] == ["1.0", f"{a_mean:.2f}"]
    assert rows["b"][:2] == ["1.0", f"{b_mean:.2f}"]
    assert lines[-1] == (f"span of a call on the GPU: {a_mean + b_mean + gap:.2f} us; "
                         f"kernels' durations summed: {a_mean + b_mean:.2f} us")


def test_unknown_op_and_peer_are_named():
    case = harness.Case(kernel="k", op="op-a", shape=(2, 3), dtype=None, make_inputs=None,
                        reference=None, lowp=None,
                        peers=[harness.Peer("ours", lambda: None),
                               harness.Peer("liger", skip="not installed")])
    assert profile_kernels.select_case([case], "op-a") is case
    with pytest.raises(SystemExit, match=r"no case 'op-b'; this benchmark has \['op-a'\]"):
        profile_kernels.select_case([case], "op-b")
    with pytest.raises(SystemExit, match=r"--peer liger: cannot run here \(not installed\)"):
        profile_kernels.select_peer(case, "liger")
    with pytest.raises(SystemExit, match=r"no peer 'eager'; op-a has \['ours', 'liger'\]"):
        profile_kernels.select_peer(case, "eager")
