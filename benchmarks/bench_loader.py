"""Loader benchmark: cold load from the test Hub and warm locked load, times and Hub requests.

    python -m benchmarks.bench_loader [--runs N] [--backend cpu] [--out PATH]

The test Hub (tests/hub_server.py) runs in this process on 127.0.0.1 and counts requests; our
build/ is uploaded to it as branch v1 and locked with `kernel-hub lock`. Each load runs in a fresh
Python process, so nothing imported or memoized by an earlier load hides its cost. The time is
measured inside that process around the load call only: torch and kernel_hub are imported
before the clock starts (a program that loads a torch kernel has imported torch already).

- cold: an empty cache, `get_kernel(repo, version=1)`: resolve v1, list build/, fetch the
  candidates' metadata.json and the chosen variant's files, verify digests, import.
- warm locked: the cache filled by a cold load, `load_kernel(repo, lockfile=kernels.lock)`: read
  the lock, find the cached variant, check the metadata digests and the lock hash, import. It
  should make no request (target: 0) and take under 50 ms (median).

Results go to benchmarks/results/loader.json (CPU-side; no GPU is used).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Not part of `python -m benchmarks.run_all` (the GPU kernel benches): it runs anywhere.
IN_RUN_ALL = False

ROOT = Path(__file__).resolve().parents[1]
REPO = "transformer-kernels/transformer-kernels"
RESULTS = ROOT / "benchmarks" / "results" / "loader.json"
TARGET_WARM_MS = 50.0

_CHILD = """
import json, sys, time
import torch
from kernel_hub.hub import get_kernel
from kernel_hub.lock import load_kernel
mode, repo, backend, lockfile = sys.argv[1:5]
backend = backend or None
start = time.perf_counter()
if mode == "cold":
    kernel = get_kernel(repo, version=1, backend=backend, trust_remote_code=True)
else:
    kernel = load_kernel(repo, lockfile=lockfile, backend=backend)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "module": kernel.__name__}))
"""


def run(runs: int = 10, backend: str | None = "cpu", build: Path = ROOT / "build",
        out: Path | None = RESULTS) -> dict:
    """Measure and return the results; write them to `out` unless it is None."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hub_server import HubServer

    server = HubServer().start()
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as temporary:
        work = Path(temporary)
        try:
            _publish(server, build, work / "upload")
            env = _child_env(server.endpoint, work / "hf_home")
            lockfile = _lock(env, work / "project")
            cold = [_measure(server, "cold", backend, lockfile,
                             _child_env(server.endpoint, work / f"cold{index}"))
                    for index in range(runs)]
            _measure(server, "cold", backend, lockfile, env)
            warm = [_measure(server, "warm", backend, lockfile, env) for _ in range(runs)]
        finally:
            server.stop()
    results = {
        "benchmark": "loader",
        "runs": runs,
        "backend": backend,
        "machine": {"python": platform.python_version(), "cpu": platform.machine(),
                    "cpus": os.cpu_count()},
        "module": warm[0]["module"],
        "cold": _summary(cold),
        "warm_locked": _summary(warm),
        "target": {"warm_locked_median_ms": TARGET_WARM_MS, "warm_locked_requests": 0},
    }
    results["target"]["met"] = (results["warm_locked"]["median_ms"] < TARGET_WARM_MS
                                and results["warm_locked"]["max_requests"] == 0)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _publish(server, build: Path, upload: Path) -> None:
    from huggingface_hub import HfApi

    shutil.copytree(build, upload / "build",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    api = HfApi(endpoint=server.endpoint, token=False)
    api.create_repo(REPO, repo_type="kernel")
    api.create_branch(REPO, branch="v1", repo_type="kernel")
    api.upload_folder(repo_id=REPO, folder_path=upload / "build", path_in_repo="build",
                      revision="v1", repo_type="kernel")


def _child_env(endpoint: str, hf_home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in (
        "HF_HUB_OFFLINE", "KERNEL_HUB_CACHE", "LOCAL_KERNELS", "HF_TOKEN",
        "KERNEL_HUB_TRUSTED_ORGS")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"),
               HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "loader"), env.get("PYTHONPATH", "")]))
    return env


def _lock(env: dict[str, str], project: Path) -> Path:
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text(f'[tool.kernel-hub.dependencies]\n"{REPO}" = 1\n')
    done = subprocess.run([sys.executable, "-m", "kernel_hub", "lock", str(project)], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"kernel-hub lock failed: {done.stderr.strip()}")
    return project / "kernels.lock"


def _measure(server, mode: str, backend: str | None, lockfile: Path, env: dict) -> dict:
    before = len(server.requests)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, REPO, backend or "", str(lockfile)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} load failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["requests"] = len(server.requests) - before
    return result


def _summary(samples: list[dict]) -> dict:
    milliseconds = [sample["seconds"] * 1000 for sample in samples]
    return {
        "median_ms": round(statistics.median(milliseconds), 2),
        "min_ms": round(min(milliseconds), 2),
        "max_ms": round(max(milliseconds), 2),
        "samples_ms": [round(value, 2) for value in milliseconds],
        "requests": [sample["requests"] for sample in samples],
        "max_requests": max(sample["requests"] for sample in samples),
    }


def format_table(results: dict) -> str:
    rows = [("load", "median ms", "min ms", "max ms", "requests/run")]
    for label, key in (("cold (test Hub)", "cold"), ("warm locked", "warm_locked")):
        summary = results[key]
        rows.append((label, f"{summary['median_ms']:.1f}", f"{summary['min_ms']:.1f}",
                     f"{summary['max_ms']:.1f}", str(summary["max_requests"])))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    verdict = "met" if results["target"]["met"] else "NOT met"
    lines.append(f"target (warm locked < {TARGET_WARM_MS:.0f} ms median, 0 requests): {verdict}"
                 f"; {results['runs']} runs, backend {results['backend']}, {results['module']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--backend", default="cpu",
                        help="variants for this backend; '' for torch's own")
    parser.add_argument("--out", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    results = run(arguments.runs, arguments.backend or None, out=arguments.out)
    print(format_table(results))
    print(f"written to {arguments.out}")
    return 0 if results["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
