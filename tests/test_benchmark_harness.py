"""CPU tests of the benchmark harness: accounting, correctness rule, results JSON, table, plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # benchmarks/ is a folder of the checkout, not an installed package.
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import bench_rmsnorm, harness, plot, report, run_all, timing  # noqa: E402


def reference_fp32(x, weight, eps):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)


def reference_add_fp32(x, residual, weight, eps):
    z = (x.float() + residual.float()).to(x.dtype)
    return reference_fp32(z, weight, eps), z


def fake_kernel(with_add: bool = True):
    """A stand-in for transformer_kernels whose ops are the reference itself."""
    module = types.SimpleNamespace(__name__="fake_kernels")
    module.rmsnorm = types.SimpleNamespace(rms_norm_reference=reference_fp32,
                                           rms_norm_add_reference=reference_add_fp32)
    module.rms_norm = lambda x, weight=None, eps=1e-6: reference_fp32(x, weight, eps)
    if with_add:
        def rms_norm_add(x, residual, weight=None, eps=1e-6):
            h = x + residual
            return reference_fp32(h, weight, eps), h
        module.rms_norm_add = rms_norm_add
    return module


# ----------------------------------------------------------------------------- accounting


def test_rms_norm_bytes_count_each_input_and_output_once():
    n, h = 4096 * 4096, 4096
    assert bench_rmsnorm.rms_norm_bytes((4096, 4096), torch.bfloat16, "fwd") == 2 * (2 * n + h)
    assert bench_rmsnorm.rms_norm_bytes((4096, 4096), torch.bfloat16, "fwd") == 67_117_056
    assert bench_rmsnorm.rms_norm_bytes((4096, 4096), torch.float16, "bwd") == 2 * (3 * n + 2 * h)


def test_rms_norm_add_bytes():
    n, h = 4 * 4096 * 3072, 3072
    shape = (4, 4096, 3072)
    assert bench_rmsnorm.rms_norm_add_bytes(shape, torch.bfloat16, "fwd") == 2 * (4 * n + h)
    assert bench_rmsnorm.rms_norm_add_bytes(shape, torch.bfloat16, "bwd") == 2 * (4 * n + 2 * h)


def test_rates():
    assert timing.gbps(3_000_000_000, 1.0) == pytest.approx(3000.0)
    assert timing.tflops(2 * 8192**3, 1.0) == pytest.approx(1099.5, rel=1e-3)
    assert harness.tensor_bytes(torch.float32, 10, 6) == 64


def test_quantile():
    assert timing.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert timing.quantile([1.0, 2.0], 0.5) == 1.5
    assert timing.quantile([7.0], 0.2) == 7.0


def test_rounds_alternate_the_order():
    assert timing.round_orders(2, 4) == [[0, 1], [1, 0], [0, 1], [1, 0]]
    assert timing.round_orders(3, 2) == [[0, 1, 2], [2, 1, 0]]
    assert timing.round_orders(2, 1) == [[0, 1]]


# ----------------------------------------------------------------------------- names and flags


def test_gpu_slug():
    assert report.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert report.gpu_slug("NVIDIA H200") == "nvidia-h200"
    assert report.gpu_slug("  ") == "unknown-gpu"


def test_parse_shape():
    assert harness.parse_shape("1x1024x2048") == (1, 1024, 2048)
    assert harness.shape_str((4096, 4096)) == "4096x4096"
    with pytest.raises(ValueError, match="positive"):
        harness.parse_shape("0x8")
    with pytest.raises(ValueError, match="joined by 'x'"):
        harness.parse_shape("4096,4096")


def test_shape_and_dtype_selection():
    bench = bench_rmsnorm.BENCH
    everything = harness.select_shapes(bench, "all")
    assert everything == [(1, 1024, 2048), (4096, 4096), (4, 4096, 3072), (16384, 8192),
                          (32768, 4096)]
    assert harness.select_shapes(bench, "small") == [(1, 1024, 2048), (4096, 4096)]
    assert harness.select_shapes(bench, "64x128,2x3x4") == [(64, 128), (2, 3, 4)]
    assert harness.select_dtypes("bf16") == [torch.bfloat16]
    assert harness.select_dtypes("all") == [torch.bfloat16, torch.float16, torch.float32]
    with pytest.raises(SystemExit):
        harness.select_dtypes("int8")


def test_parse_args_defaults_and_quick(tmp_path):
    args = harness.parse_args(bench_rmsnorm.BENCH, [])
    assert args.dtypes == [torch.bfloat16, torch.float16]
    assert args.directions == ["fwd", "bwd"]
    assert len(args.shapes_list) == 5 and args.peer_filter is None
    quick = harness.parse_args(bench_rmsnorm.BENCH, ["--quick", "--out", str(tmp_path), "--peers",
                                                      "eager,ours", "--direction", "fwd"])
    assert quick.dtypes == [torch.bfloat16]
    assert quick.shapes_list == bench_rmsnorm.QUICK_SHAPES
    assert quick.rep <= 40 and quick.out == tmp_path
    assert quick.peer_filter == {"eager", "ours"} and quick.directions == ["fwd"]
    assert args.rounds == 1
    assert harness.parse_args(bench_rmsnorm.BENCH, ["--rounds", "5"]).rounds == 5
    with pytest.raises(SystemExit):
        harness.parse_args(bench_rmsnorm.BENCH, ["--rounds", "0"])


# ----------------------------------------------------------------------------- correctness


def test_tolerance_rule():
    assert harness.within_tolerance(0.02, 0.01, 1e-3)
    assert not harness.within_tolerance(0.03, 0.01, 1e-3)
    assert not harness.within_tolerance(float("nan"), 0.01, 1e-3)


def _cpu_case(dtype=torch.bfloat16, shape=(64, 256)):
    [case, _] = bench_rmsnorm.build_cases(fake_kernel(), shape, dtype)
    inputs = case.make_inputs("cpu")
    for name in case.grad_inputs:
        inputs[name].requires_grad_(True)
    return case, inputs


def test_inputs_are_random_not_zero():
    case, inputs = _cpu_case()
    assert set(inputs) == {"x", "weight"}
    assert all(t.dtype == torch.bfloat16 and t.abs().min() >= 0 and t.std() > 0.05
               for t in inputs.values())
    again = case.make_inputs("cpu")
    assert not torch.equal(again["x"], inputs["x"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reference_peers_pass_and_wrong_peers_fail(dtype):
    torch.manual_seed(0)
    case, inputs = _cpu_case(dtype)
    truth = harness.Truth(case, inputs, ["fwd", "bwd"])
    peers = {p.name: p for p in case.peers}
    for name in ("eager", "F.rms_norm", "ours"):
        for direction in ("fwd", "bwd"):
            check = truth.check(peers[name], inputs, direction)
            assert check.passed, (name, direction, check)

    scaled = harness.Peer("scaled", lambda x, weight: reference_fp32(x, weight, 1e-6) * 1.05)
    assert not truth.check(scaled, inputs, "fwd").passed
    nan = harness.Peer("nan", lambda x, weight: torch.full_like(x, float("nan")))
    assert not truth.check(nan, inputs, "fwd").passed

    class DoubleGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    wrong_grad = harness.Peer("wrong_grad",
                              lambda x, weight: reference_fp32(DoubleGrad.apply(x), weight, 1e-6))
    assert truth.check(wrong_grad, inputs, "fwd").passed
    assert not truth.check(wrong_grad, inputs, "bwd").passed


def test_rms_norm_add_case_checks_both_outputs():
    torch.manual_seed(0)
    [_, case] = bench_rmsnorm.build_cases(fake_kernel(), (32, 128), torch.bfloat16)
    inputs = case.make_inputs("cpu")
    for name in case.grad_inputs:
        inputs[name].requires_grad_(True)
    truth = harness.Truth(case, inputs, ["fwd", "bwd"])
    assert len(truth.fwd) == 2 and len(truth.bwd) == 3
    ours = next(p for p in case.peers if p.name == "ours")
    assert truth.check(ours, inputs, "fwd").passed and truth.check(ours, inputs, "bwd").passed
    no_residual = harness.Peer("bad", lambda x, residual, weight: (
        reference_fp32(x + residual, weight, 1e-6), x.clone()))
    assert not truth.check(no_residual, inputs, "fwd").passed


def test_build_cases_peers_and_skips():
    norm, add = bench_rmsnorm.build_cases(fake_kernel(with_add=False), (8, 64), torch.bfloat16)
    names = ["eager", "F.rms_norm", "compile", "liger", "ours"]
    assert [p.name for p in norm.peers] == names and [p.name for p in add.peers] == names
    ours_add = add.peers[-1]
    assert ours_add.skip == "fake_kernels has no rms_norm_add"
    liger = norm.peers[3]
    assert (liger.skip is None) == (liger.fn is not None)
    if liger.skip is not None:
        assert "not importable" in liger.skip
    assert norm.grad_inputs == ("x", "weight") and add.grad_inputs == ("x", "residual", "weight")


# ----------------------------------------------------------------------------- records


def _records():
    base = dict(kernel="rmsnorm", op="rms_norm", direction="fwd", shape="4096x4096", dtype="bf16",
                bytes=67_117_056, flops=0)
    recs = [
        dict(base, peer="eager", status="ok", time_ms=0.060, gbps=1118.6, pct_of_copy=37.3),
        dict(base, peer="liger", status="ok", time_ms=0.030, gbps=2237.2, pct_of_copy=74.6),
        dict(base, peer="compile", status="failed", reason="max error over the tolerance rule",
             max_err=[0.5], err_limit=[0.02]),
        dict(base, peer="F.rms_norm", status="skipped", reason="not wanted"),
        dict(base, peer="ours", status="ok", time_ms=0.020, gbps=3355.8, pct_of_copy=111.9),
        dict(base, peer="ours", status="ok", time_ms=0.040, gbps=1.0, pct_of_copy=1.0,
             direction="bwd"),
    ]
    report.add_speedups(recs)
    return recs


def test_speedups_stay_within_one_case():
    recs = _records()
    ours = recs[4]
    assert ours["speedup_vs"] == {"eager": pytest.approx(3.0), "liger": pytest.approx(1.5)}
    assert recs[5]["speedup_vs"] == {}
    assert "speedup_vs" not in recs[2]


def test_format_table():
    table = report.format_table(_records(), {"copy_gbps": 3000.0, "matmul_tflops": 790.0})
    lines = table.splitlines()
    assert "copy 3000 GB/s" in lines[0]
    assert lines[1].split() == ["op", "shape", "dtype", "dir", "eager", "liger", "compile",
                                "F.rms_norm", "ours", "ours/best"]
    fwd = next(line for line in lines if " fwd " in line)
    assert "1119 (37%)" in fwd and "FAIL" in fwd and fwd.rstrip().endswith("1.50x")
    bwd = next(line for line in lines if " bwd " in line)
    assert bwd.rstrip().endswith("-")


def test_format_notes():
    notes = report.format_notes(_records())
    assert "compile FAILED rms_norm fwd 4096x4096 bf16: max err 0.5>0.02" in notes
    assert "F.rms_norm skipped (rms_norm): not wanted" in notes


def test_merge_results_replaces_same_key(tmp_path):
    path = tmp_path / "out" / "nvidia-h100.json"
    recs = _records()
    report.merge_results(path, {"device": "A", "ceilings": {"copy_gbps": 1.0}}, recs)
    newer = dict(recs[0], time_ms=0.05, status="ok")
    other_kernel = dict(recs[0], kernel="geglu", op="geglu")
    data = report.merge_results(path, {"device": "B"}, [newer, other_kernel])
    on_disk = json.loads(path.read_text())
    assert on_disk == data
    assert data["device"] == "B" and data["ceilings"] == {"copy_gbps": 1.0}
    assert len(data["records"]) == len(recs) + 1
    eager = [r for r in data["records"] if r["peer"] == "eager" and r["kernel"] == "rmsnorm"]
    assert len(eager) == 1 and eager[0]["time_ms"] == 0.05
    assert not list(tmp_path.glob("out/*.tmp"))


def test_git_commit_prefers_env_then_git(monkeypatch):
    monkeypatch.setenv("TK_GIT_COMMIT", "abc123")
    assert report.git_commit() == "abc123"

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.delenv("TK_GIT_COMMIT")
    monkeypatch.setattr(report.subprocess, "run", no_git)
    assert report.git_commit() == "unknown"


def test_describe_error():
    assert harness.describe_error(RuntimeError("CUDA out of memory.\nmore")) == \
        "RuntimeError: CUDA out of memory."
    assert harness.describe_error(ValueError()) == "ValueError"


# ----------------------------------------------------------------------------- loading ours


def test_load_kernel_records_variant(monkeypatch, tmp_path):
    variant_dir = tmp_path / "build" / "torch-cuda"
    variant_dir.mkdir(parents=True)
    module = types.SimpleNamespace(__file__=str(variant_dir / "__init__.py"))
    monkeypatch.setattr(harness, "local_kernel", lambda root: module)
    got, info = harness.load_kernel(tmp_path)
    assert got is module
    assert info == {"via": "kernel_hub.get_local_kernel", "variant": "torch-cuda",
                    "path": str(variant_dir), "error": None}


def test_load_kernel_falls_back_to_import(monkeypatch, tmp_path):
    def broken(root):
        raise FileNotFoundError("no build/ directory")

    fallback = types.ModuleType("transformer_kernels")
    fallback.__file__ = str(tmp_path / "site-packages" / "transformer_kernels" / "__init__.py")
    monkeypatch.setattr(harness, "local_kernel", broken)
    monkeypatch.setitem(sys.modules, "transformer_kernels", fallback)
    got, info = harness.load_kernel(tmp_path)
    assert got is fallback
    assert info["via"] == "import transformer_kernels" and info["variant"] == "transformer_kernels"


def test_load_kernel_reports_both_failures(monkeypatch, tmp_path):
    def broken(root):
        raise FileNotFoundError("no build/ directory")

    monkeypatch.setattr(harness, "local_kernel", broken)
    monkeypatch.setitem(sys.modules, "transformer_kernels", None)
    got, info = harness.load_kernel(tmp_path)
    assert got is None
    assert "kernel_hub.get_local_kernel: FileNotFoundError" in info["error"]
    assert "import transformer_kernels: ModuleNotFoundError" in info["error"]


# ----------------------------------------------------------------------------- plot


def test_plot_kernel_writes_png(tmp_path):
    recs = _records()
    fp16 = [dict(r, dtype="fp16", shape="1x1024x2048") for r in recs]
    data = {"device": "NVIDIA H100 80GB HBM3", "git_commit": "abc",
            "ceilings": {"copy_gbps": 3000.0}, "records": recs + fp16}
    out = plot.plot_kernel(data, "rmsnorm", tmp_path / "h100-rmsnorm.png")
    assert out == tmp_path / "h100-rmsnorm.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.plot_kernel(data, "geglu", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_plot_cli(tmp_path):
    path = tmp_path / "nvidia-h200.json"
    path.write_text(json.dumps({"device": "NVIDIA H200", "records": _records()}))
    assert plot.main([str(path)]) == 0
    assert (tmp_path / "nvidia-h200-rmsnorm.png").exists()


# ----------------------------------------------------------------------------- entry points


def test_run_all_finds_bench_modules():
    assert "bench_rmsnorm" in run_all.bench_modules()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit path")
def test_no_cuda_exits_with_skip_code(capsys):
    assert bench_rmsnorm.main(["--quick"]) == harness.SKIP_EXIT
    assert "no CUDA device" in capsys.readouterr().err
    assert run_all.main(["--quick"]) == harness.SKIP_EXIT


@pytest.mark.parametrize("command", [["-m", "benchmarks.bench_rmsnorm"],
                                     ["benchmarks/bench_rmsnorm.py"]])
def test_entry_points_run_without_cuda(command):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, *command, "--quick"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == harness.SKIP_EXIT, proc.stderr
    assert "no CUDA device" in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="timing needs a CUDA device")
def test_time_ms_on_cuda():
    x = torch.randn(1 << 20, device="cuda")
    t = timing.time_ms(lambda: x.mul(2.0), warmup_ms=5, rep_ms=20)
    assert 0 < t.p20_ms <= t.median_ms <= t.p80_ms


@pytest.mark.skipif(not torch.cuda.is_available(), reason="timing needs a CUDA device")
def test_time_ms_leaves_host_time_out():
    """A call that spends 2 ms on the host before a tiny kernel times as the kernel."""
    import time

    x = torch.randn(1 << 16, device="cuda")

    def slow_host_call():
        time.sleep(0.002)
        x.mul(2.0)

    t = timing.time_ms(slow_host_call, warmup_ms=5, rep_ms=20)
    assert t.median_ms < 0.2, t


@pytest.mark.skipif(not torch.cuda.is_available(), reason="timing needs a CUDA device")
def test_a_small_copy_runs_below_the_large_copy_ceiling():
    """Launch and tail time weigh on a 1 MB copy: well under the 1 GiB copy's bandwidth."""
    large = timing.measure_ceilings(5, 20)["copy_gbps"]
    small = timing.same_bytes_copy_gbps(1 << 20, 5, 20)
    assert 0 < small < 0.8 * large, (small, large)


# ----------------------------------------------------------------------------- faked device


CEILINGS = {"copy_gbps": 3000.0, "matmul_tflops": 800.0}


@pytest.fixture
def cpu_run(monkeypatch):
    """run_case on CPU tensors with a fake clock: every timed call takes 0.1 ms."""
    timed = []

    def fake_time(fn, warmup_ms, rep_ms):
        fn()
        timed.append(fn)
        return timing.Timing(0.1, 0.09, 0.11)

    monkeypatch.setattr(harness, "DEVICE", "cpu")
    monkeypatch.setattr(timing, "time_ms", fake_time)
    # A copy of any size runs at 2000 GB/s.
    monkeypatch.setattr(timing, "same_bytes_copy_gbps", lambda nbytes, warmup, rep: 2000.0)
    return timed


def test_run_case_checks_times_and_skips(cpu_run):
    torch.manual_seed(0)
    [case, _] = bench_rmsnorm.build_cases(fake_kernel(), (16, 128), torch.bfloat16)
    case.peers.append(harness.Peer("wrong", lambda x, weight: x.clone()))
    case.peers.append(harness.Peer("raises", lambda x, weight: 1 / 0))
    peers = {"eager", "F.rms_norm", "liger", "ours", "wrong", "raises"}
    recs = harness.run_case(case, ["fwd", "bwd"], CEILINGS, 1, 1, peer_filter=peers)
    by = {(r["peer"], r["direction"]): r for r in recs}
    assert {p for p, _ in by} == peers
    for peer in ("eager", "F.rms_norm", "ours"):
        for direction in ("fwd", "bwd"):
            r = by[peer, direction]
            assert r["status"] == "ok", r
            assert r["gbps"] == pytest.approx(r["bytes"] / 0.1 / 1e6)
            assert r["pct_of_copy"] == pytest.approx(100 * r["gbps"] / 3000.0)
            assert r["same_bytes_copy_gbps"] == 2000.0
            assert r["pct_of_same_bytes_copy"] == pytest.approx(100 * r["gbps"] / 2000.0)
    assert by["ours", "fwd"]["speedup_vs"] == {"eager": 1.0, "F.rms_norm": 1.0} | (
        {"liger": 1.0} if by["liger", "fwd"]["status"] == "ok" else {})
    assert by["wrong", "fwd"]["status"] == "failed"
    assert by["raises", "bwd"]["status"] == "error"
    assert "ZeroDivisionError" in by["raises", "bwd"]["reason"]
    n_ok = sum(r["status"] == "ok" for r in recs)
    assert len(cpu_run) == n_ok, "a failing or raising peer must not be timed"


def test_run_case_measures_a_peer_only_in_its_directions(cpu_run):
    torch.manual_seed(0)
    [case, _] = bench_rmsnorm.build_cases(fake_kernel(), (16, 128), torch.bfloat16)
    ours = next(p for p in case.peers if p.name == "ours")
    case.peers.append(harness.Peer("ours-bwd-only", ours.fn, directions=("bwd",)))
    recs = harness.run_case(case, ["fwd", "bwd"], CEILINGS, 1, 1,
                            peer_filter={"ours", "ours-bwd-only"})
    assert sorted((r["peer"], r["direction"], r["status"]) for r in recs) == [
        ("ours", "bwd", "ok"), ("ours", "fwd", "ok"), ("ours-bwd-only", "bwd", "ok")]
    assert len(cpu_run) == 3


def test_run_case_times_peers_in_alternating_rounds(monkeypatch, cpu_run):
    """Every peer is checked before any is timed; then each round times every passed peer once,
    the order reversed every other round, and a peer's time is the median over its rounds. The
    fake clock drifts (each call 0.01 ms slower than the last) as a warming GPU might."""
    calls = []

    def drifting_time(fn, warmup_ms, rep_ms):
        fn()
        calls.append(fn)
        ms = 0.1 + 0.01 * len(calls)
        return timing.Timing(ms, ms - 0.005, ms + 0.005)

    monkeypatch.setattr(timing, "time_ms", drifting_time)
    torch.manual_seed(0)
    [case, _] = bench_rmsnorm.build_cases(fake_kernel(), (16, 128), torch.bfloat16)
    case.peers.append(harness.Peer("wrong", lambda x, weight: x.clone()))
    raised = []

    def raises_in_round_two(x, weight):
        if len(calls) >= 2:
            raised.append(True)
            raise RuntimeError("lost")
        return fake_kernel().rms_norm(x, weight, 1e-6)

    case.peers.append(harness.Peer("flaky", raises_in_round_two))
    recs = harness.run_case(case, ["fwd"], CEILINGS, 1, 1,
                            peer_filter={"eager", "ours", "wrong", "flaky"}, rounds=4)
    by = {r["peer"]: r for r in recs}
    assert by["wrong"]["status"] == "failed" and "round_ms" not in by["wrong"]
    assert raised and by["flaky"]["status"] == "error" and "RuntimeError" in by["flaky"]["reason"]
    # Passed order: eager, ours, flaky. Round 1: eager (call 1), ours (2), flaky raises in its
    # first timed call. Round 2, reversed: ours (3), eager (4). Round 3: 5, 6. Round 4: 8, 7.
    assert [round(t, 3) for t in by["eager"]["round_ms"]] == [0.11, 0.14, 0.15, 0.18]
    assert [round(t, 3) for t in by["ours"]["round_ms"]] == [0.12, 0.13, 0.16, 0.17]
    assert by["eager"]["time_ms"] == pytest.approx(0.145)
    assert by["ours"]["time_ms"] == pytest.approx(0.145)
    assert by["ours"]["p20_ms"] == pytest.approx(0.14)
    assert by["ours"]["speedup_vs"] == {"eager": pytest.approx(1.0)}
    assert len(calls) == 8


def test_main_writes_json_plot_and_table(cpu_run, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(harness.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(harness, "load_kernel", lambda: (fake_kernel(), {
        "via": "test", "variant": "torch-cuda", "path": "/x", "error": None}))
    monkeypatch.setattr(timing, "measure_ceilings", lambda warmup, rep: CEILINGS)
    monkeypatch.setattr(report, "environment", lambda info: {
        "device": "NVIDIA H100 80GB HBM3", "gpu": "nvidia-h100-80gb-hbm3", "flush": "triton",
        "date": "2026-01-01T00:00:00+00:00", "ours": info})
    code = bench_rmsnorm.main(["--shapes", "8x64", "--dtype", "bf16",
                               "--peers", "eager,F.rms_norm,ours", "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "nvidia-h100-80gb-hbm3.json").read_text())
    assert data["ceilings"] == CEILINGS and data["ours"]["variant"] == "torch-cuda"
    assert len(data["records"]) == 2 * 2 * 3  # ops x directions x peers
    assert all(r["variant"] == "torch-cuda" for r in data["records"] if r["peer"] == "ours")
    assert (tmp_path / "nvidia-h100-80gb-hbm3-rmsnorm.png").exists()
    out = capsys.readouterr().out
    assert "rms_norm_add  8x64" in out and out.rstrip().endswith("1.00x")


def test_summary_table_rows_and_ratios():
    from benchmarks import summary

    def rec(peer, time_ms, direction="fwd", status="ok"):
        return {"kernel": "k", "op": "op", "shape": "8x8", "dtype": "bf16",
                "direction": direction, "peer": peer, "status": status, "time_ms": time_ms,
                "gbps": 100.0 / time_ms, "pct_of_copy": 10.0 / time_ms}

    records = [rec("ours", 1.0), rec("compile", 2.0), rec("liger", 4.0), rec("eager", 0.5,
               status="failed"), rec("ours", 1.0, "bwd"), rec("compile", 3.0, "bwd")]
    lines = summary.kernel_table(records, "k", "bf16").splitlines()
    assert len(lines) == 4
    fwd, bwd = lines[2].split(" | "), lines[3].split(" | ")
    assert fwd[2:] == ["fwd", "100 (10%)", "50 (5%)", "25 (2%) liger", "2.00x", "4.00x |"]
    assert bwd[2:] == ["bwd", "100 (10%)", "33 (3%)", "-", "3.00x", "- |"]

    records[0]["pct_of_same_bytes_copy"] = 87.4
    lines = summary.kernel_table(records, "k", "bf16").splitlines()
    assert lines[0].endswith("| ours % of a same-bytes copy |") and lines[1].count("|") == 10
    assert lines[2].endswith("| 4.00x | 87% |") and lines[3].endswith("| - | - |")


def test_compare_lines_up_one_peer_of_two_runs(tmp_path, capsys):
    from benchmarks import compare

    def rec(shape, peer, time_ms, status="ok"):
        return {"kernel": "k", "op": "op", "shape": shape, "dtype": "bf16", "direction": "fwd",
                "peer": peer, "status": status, "time_ms": time_ms}

    base = [rec("1x8", "ours", 2.0), rec("2x8", "ours", 1.0), rec("3x8", "ours", 1.0),
            rec("1x8", "compile", 9.0)]
    new = [rec("1x8", "ours", 1.0), rec("2x8", "ours", 2.0), rec("3x8", "ours", 1.0, "failed"),
           rec("4x8", "ours", 1.0)]
    paths = []
    for name, records in (("base", base), ("new", new)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"records": records}))
    assert compare.main([str(p) for p in paths]) == 0
    out = capsys.readouterr().out.splitlines()
    # Only shapes ours passed in both runs: 1x8 (2.0 -> 1.0) and 2x8 (1.0 -> 2.0).
    assert out[2] == "| k | op | 1x8 | fwd | bf16 | 2000.0 | 1000.0 | 2.000 |"
    assert out[3] == "| k | op | 2x8 | fwd | bf16 | 1000.0 | 2000.0 | 0.500 |"
    assert out[-1] == "geometric mean of base / new over 2 rows: 1.000"
    assert compare.main([str(p) for p in paths] + ["--peer", "liger"]) == 1


def test_summary_gives_a_second_build_of_ours_its_own_row():
    from benchmarks import summary

    def rec(peer, time_ms):
        return {"kernel": "k", "op": "op", "shape": "8x8", "dtype": "bf16", "direction": "fwd",
                "peer": peer, "status": "ok", "time_ms": time_ms, "tflops": 10.0 / time_ms,
                "pct_of_matmul": 100.0 / time_ms}

    records = [rec("ours", 1.0), rec("ours-cuda", 2.0), rec("compile", 4.0), rec("sdpa", 1.0)]
    lines = summary.kernel_table(records, "k", "bf16").splitlines()
    assert len(lines) == 4
    triton, cuda = lines[2].split(" | "), lines[3].split(" | ")
    assert triton[0] == "| op" and cuda[0] == "| op (ours-cuda)"
    assert triton[3:] == ["10 (100%)", "2 (25%)", "10 (100%) sdpa", "4.00x", "1.00x |"]
    assert cuda[3:] == ["5 (50%)", "2 (25%)", "10 (100%) sdpa", "2.00x", "0.50x |"]

    only_cuda = summary.kernel_table(records[1:], "k", "bf16").splitlines()
    assert len(only_cuda) == 3 and only_cuda[2].startswith("| op (ours-cuda) |")


def test_plot_title_names_the_ceilings_of_every_run_plotted():
    """Merged records come from runs that measured different ceilings: the title spans them."""
    measured = [r for r in _records() if "gbps" in r][:3]
    recs = [dict(r, pct_of_copy=100 * r["gbps"] / ceiling)
            for r, ceiling in zip(measured, (3000.0, 3100.0, 3000.0))]
    data = {"ceilings": {"copy_gbps": 2900.0}, "records": recs}
    title = plot._ceilings(recs, data, "pct_of_copy")
    assert title == "% of measured copy bandwidth (3000-3100 GB/s)"
    older = [{k: v for k, v in recs[0].items() if k != "gbps"}]
    assert plot._ceilings(recs + older, data, "pct_of_copy").endswith("(2900-3100 GB/s)")
    flops = [dict(r, tflops=700.0, pct_of_matmul=100.0) for r in recs]
    title = plot._ceilings(flops, {}, "pct_of_matmul")
    assert title == "% of measured bf16 matmul rate (700 TFLOP/s)"
