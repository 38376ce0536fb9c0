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


# The stand-in builder's output: the speed of the sources it was given.
FAKE_BUILDER = """
import pathlib, shutil
pathlib.Path("build").mkdir(exist_ok=True)
shutil.copy("kernel_src/speed.txt", "build/speed.txt")
"""

# The stand-in interleaved A/B: records its arguments and the speed of each build it was given.
FAKE_AB = """
import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
builds = args[1:args.index("--peer")]
speeds = [float((pathlib.Path(b) / "speed.txt").read_text()) for b in builds]
out.write_text(json.dumps({"args": args, "speeds": speeds}))
print("checking")
print("A: " + builds[0])
"""


def stand_in_tree(tmp_path):
    """A tree with gpu_ab.sh, a builder that copies kernel_src/speed.txt into build/, the fake
    bench and A/B, and two base dirs of speeds 2.0 and 4.0 (the tree's own: 1.0)."""
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "gpu_ab.sh", tree / "scripts")
    (tree / "benchmarks").mkdir()
    (tree / "benchmarks" / "__init__.py").write_text("")
    shutil.copy(ROOT / "benchmarks" / "compare.py", tree / "benchmarks")
    (tree / "benchmarks" / "bench_fake.py").write_text(FAKE_BENCH)
    (tree / "benchmarks" / "ab.py").write_text(FAKE_AB)
    (tree / "builder" / "kernel_builder").mkdir(parents=True)
    (tree / "builder" / "kernel_builder" / "__init__.py").write_text("")
    (tree / "builder" / "kernel_builder" / "__main__.py").write_text(FAKE_BUILDER)
    (tree / "kernel_src").mkdir()
    (tree / "kernel_src" / "speed.txt").write_text("1.0")
    for base, speed in (("ab", "2.0"), ("ab2", "4.0")):
        (tree / base / "kernel_src").mkdir(parents=True)
        (tree / base / "kernel_src" / "speed.txt").write_text(speed)
    return tree


def run_gpu_ab(tmp_path, tree, extra_env=None):
    return subprocess.run(["bash", str(tree / "scripts" / "gpu_ab.sh"), "ab,ab2", "bench_fake",
                           "--dtype", "bf16"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "OUT": str(tmp_path / "out"),
                               "TK_AB_WORK": str(tmp_path / "work"), **(extra_env or {})},
                          timeout=120)


def test_gpu_ab_swaps_in_the_base_files_and_compares(tmp_path):
    tree = stand_in_tree(tmp_path)
    out = tmp_path / "out"
    result = run_gpu_ab(tmp_path, tree)
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


def test_gpu_ab_interleaved_keeps_every_build_and_times_them_in_one_process(tmp_path):
    tree = stand_in_tree(tmp_path)
    out = tmp_path / "out"
    result = run_gpu_ab(tmp_path, tree, {"TK_AB_ROUNDS": "3", "TK_AB_PEERS": "p1,p2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tree / "kernel_src" / "speed.txt").read_text() == "1.0"
    assert "benchmarked" not in result.stdout
    order = [result.stdout.index(f"kept {name} ") for name in ("ab", "ab2", "new")]
    assert order == sorted(order)
    for peer in ("p1", "p2"):
        run = json.loads((out / f"ab-{peer}.json").read_text())
        # Every build's own output, the bases first and the tree's last.
        assert run["speeds"] == [2.0, 4.0, 1.0]
        assert run["args"][0] == "fake"
        assert run["args"][run["args"].index("--peer") + 1] == peer
        assert run["args"][run["args"].index("--rounds") + 1] == "3"
        assert run["args"][-2:] == ["--dtype", "bf16"]
    assert sorted(p.name for p in out.iterdir()) == ["ab-p1.json", "ab-p2.json", "ab.txt"]
    summary = (out / "ab.txt").read_text()
    assert summary.count("interleaved rounds") == 2 and summary.count("A: ") == 2
    assert "checking" not in summary


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
