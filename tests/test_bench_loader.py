"""The loader benchmark runs on CPU and its warm locked load makes no Hub request."""

from __future__ import annotations

import json

import pytest

from support import ROOT

CPU = "torch214-cxx11-cpu-x86_64-linux"


@pytest.mark.skipif(not (ROOT / "build" / CPU).is_dir(), reason=f"build/{CPU} has not been built")
def test_bench_loader_warm_locked_load_makes_no_request(tmp_path):
    from benchmarks.bench_loader import format_table, run

    out = tmp_path / "loader.json"
    results = run(runs=1, backend="cpu", out=out)
    assert json.loads(out.read_text()) == results
    assert results["warm_locked"]["requests"] == [0]
    assert results["cold"]["max_requests"] > 0
    assert results["module"].startswith("_transformer_kernels_cpu_")
    assert "warm locked" in format_table(results)
