"""scripts/gpu_ab.sh on a stand-in tree: a builder that does nothing and a benchmark whose time
is read from a source file, so the swap of the base files, the runs and the comparisons are
checked without a GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from support import ROOT

FAKE_BENCH = '''
import argparse, json, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--peers"); parser.add_argument("--out"); parser.add_argument("--no-plot",
    action="store_true"); parser.add_argument("--dtype")
args = parser.parse_args()
time_ms = float(pathlib.Path("kernel_src/speed.txt").read_text())
record = {"kernel": "k", "op": "op", "shape": "8x8", "dtype": args.dtype, "direction": "fwd",
          "peer": args.peers, "status": "ok", "time_ms": time_ms}
out = pathlib.Path(args.out); out.mkdir(parents=True, exist_ok=True)
(out / "gpu.json").write_text(json.dumps({"records": [record]}))
'''


def test_gpu_ab_swaps_in_the_base_files_and_compares(tmp_path):
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "gpu_ab.sh", tree / "scripts")
    (tree / "benchmarks").mkdir()
    (tree / "benchmarks" / "__init__.py").write_text("")
    shutil.copy(ROOT / "benchmarks" / "compare.py", tree / "benchmarks")
    (tree / "benchmarks" / "bench_fake.py").write_text(FAKE_BENCH)
    (tree / "builder" / "kernel_builder").mkdir(parents=True)
    (tree / "builder" / "kernel_builder" / "__init__.py").write_text("")
    (tree / "builder" / "kernel_builder" / "__main__.py").write_text("")
    (tree / "kernel_src").mkdir()
    (tree / "kernel_src" / "speed.txt").write_text("1.0")
    for base, speed in (("ab", "2.0"), ("ab2", "4.0")):
        (tree / base / "kernel_src").mkdir(parents=True)
        (tree / base / "kernel_src" / "speed.txt").write_text(speed)

    out = tmp_path / "out"
    result = subprocess.run(["bash", str(tree / "scripts" / "gpu_ab.sh"), "ab,ab2", "bench_fake",
                             "--dtype", "bf16"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "OUT": str(out),
                                 "TK_AB_WORK": str(tmp_path / "work")}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # The tree ends as it came (a later build must not keep the base objects).
    assert (tree / "kernel_src" / "speed.txt").read_text() == "1.0"
    order = [result.stdout.index(f"benchmarked {name} ") for name in ("ab", "ab2", "new")]
    assert order == sorted(order)
    times = {name: json.loads((out / f"ab-{name}.json").read_text())["records"][0]["time_ms"]
             for name in ("ab", "ab2", "new")}
    assert times == {"ab": 2.0, "ab2": 4.0, "new": 1.0}
    # The device tool brings back 8 files: the logs stay out of $OUT.
    assert sorted(p.name for p in out.iterdir()) == ["ab-ab.json", "ab-ab2.json", "ab-new.json",
                                                     "ab.txt"]
    comparison = (out / "ab.txt").read_text()
    assert "| k | op | 8x8 | fwd | bf16 | 2000.0 | 1000.0 | 2.000 |" in comparison
    assert "| k | op | 8x8 | fwd | bf16 | 4000.0 | 1000.0 | 4.000 |" in comparison


def test_gpu_ab_refuses_a_missing_base_dir(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_ab.sh"), str(tmp_path / "none"),
                             "bench_adaln"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"gpu_ab.sh: no directory {tmp_path / 'none'}" in result.stderr


def test_gpu_ab_refuses_two_builds_of_one_name(tmp_path):
    for base in ("a/new", "b/x", "c/x"):
        (tmp_path / base).mkdir(parents=True)
    for bases, name in (("a/new", "new"), ("b/x,c/x", "x")):
        result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_ab.sh"),
                                 ",".join(str(tmp_path / b) for b in bases.split(",")),
                                 "bench_adaln"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert f"two builds named {name}" in result.stderr
