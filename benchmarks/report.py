"""Reporting: the environment record, the merged results JSON per GPU, the printed table."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from benchmarks import timing

REPO_ROOT = Path(__file__).resolve().parents[1]
OURS = "ours"


def gpu_slug(device_name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "unknown-gpu"


def add_speedups(records: list[dict]) -> None:
    """``speedup_vs[p]`` = p's time / this time, among ok records of the same case and direction."""
    for rec in records:
        if rec.get("status") != "ok":
            continue
        rec["speedup_vs"] = {
            other["peer"]: other["time_ms"] / rec["time_ms"]
            for other in records
            if other is not rec and other.get("status") == "ok"
            and _case_key(other) == _case_key(rec)
        }


def _case_key(rec: dict) -> tuple:
    return rec["kernel"], rec["op"], rec["direction"], rec["shape"], rec["dtype"]


def record_key(rec: dict) -> tuple:
    return _case_key(rec) + (rec["peer"],)


def environment(kernel_info: dict[str, Any]) -> dict[str, Any]:
    import triton

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "device": props.name,
        "gpu": gpu_slug(props.name),
        "capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "l2_bytes": int(props.L2_cache_size),
        "memory_bytes": int(props.total_memory),
        "nvidia_smi": _nvidia_smi(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "liger_kernel": _liger_version(),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "flush": timing.flush_method(),
        "forward_inputs_require_grad": True,
        "compile": "torch.compile(dynamic=False, fullgraph=True), donated_buffer=False",
        "ours": kernel_info,
    }


def git_commit(root: Path = REPO_ROOT) -> str:
    """$TK_GIT_COMMIT when set (the device machine's copy of the tree has no history of its
    own), else ``git rev-parse HEAD`` (+ '-dirty'), else 'unknown'."""
    if os.environ.get("TK_GIT_COMMIT"):
        return os.environ["TK_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _nvidia_smi() -> str | None:
    query = "driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.limit"
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _liger_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("liger-kernel")
    except Exception:
        pass
    try:
        return getattr(importlib.import_module("liger_kernel"), "__version__", "importable")
    except Exception:
        return None


def merge_results(path: Path, meta: dict[str, Any], records: Iterable[dict]) -> dict[str, Any]:
    """Write ``records`` into the JSON at ``path``, replacing records with the same key.

    The top-level fields (device, versions, ceilings) become those of this run.
    """
    data: dict[str, Any] = {}
    if path.exists():
        data = json.loads(path.read_text())
    merged = {record_key(r): r for r in data.get("records", [])}
    merged.update({record_key(r): r for r in records})
    data.update(meta)
    data["records"] = [merged[k] for k in sorted(merged)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return data


def format_table(records: Sequence[dict], ceilings: dict[str, Any] | None = None) -> str:
    """One row per (op, shape, dtype, direction): each peer's GB/s and % of copy, ours vs best."""
    peers = list(dict.fromkeys(r["peer"] for r in records))
    rows: dict[tuple, dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["op"], r["shape"], r["dtype"], r["direction"]), {})[r["peer"]] = r
    # Rows of one op, dtype and direction together, shapes in the order they ran.
    order = [list(dict.fromkeys(key[i] for key in rows)) for i in range(4)]

    def sort_key(key: tuple) -> tuple:
        return tuple(order[i].index(key[i]) for i in (0, 2, 3, 1))

    head = ["op", "shape", "dtype", "dir"] + peers + [f"{OURS}/best"]
    body = [[*key, *(_cell(rows[key].get(p)) for p in peers), _ours_vs_best(rows[key])]
            for key in sorted(rows, key=sort_key)]
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]
    lines = []
    if ceilings:
        lines.append(f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s, "
                     f"bf16 matmul {ceilings['matmul_tflops']:.0f} TFLOP/s; "
                     "cells: GB/s (% of copy); FAIL = over tolerance, ERR = raised, - = skipped")
    for row in [head] + body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _cell(rec: dict | None) -> str:
    if rec is None:
        return ""
    status = rec.get("status")
    if status == "ok":
        if "gbps" in rec:
            return f"{rec['gbps']:.0f} ({rec['pct_of_copy']:.0f}%)"
        if "tflops" in rec:
            return f"{rec['tflops']:.0f}TF ({rec['pct_of_matmul']:.0f}%)"
        return f"{rec['time_ms'] * 1e3:.1f}us"
    return {"failed": "FAIL", "error": "ERR"}.get(status, "-")


def _ours_vs_best(cells: dict[str, dict]) -> str:
    ours = cells.get(OURS)
    if not ours or ours.get("status") != "ok":
        return "-"
    others = list(ours.get("speedup_vs", {}).values())
    if not others:
        return "-"
    return f"{min(others):.2f}x"


def format_notes(records: Sequence[dict]) -> str:
    """The reasons behind every skip, failure and error, each distinct line once."""
    seen: dict[str, None] = {}
    for r in records:
        if r.get("status") in ("skipped", "error"):
            seen[f"{r['peer']} {r['status']} ({r['op']}): {r['reason']}"] = None
        elif r.get("status") == "failed":
            errs = ", ".join(f"{e:.3g}>{lim:.3g}" for e, lim in zip(r["max_err"], r["err_limit"])
                             if not e <= lim)
            seen[f"{r['peer']} FAILED {r['op']} {r['direction']} {r['shape']} {r['dtype']}: "
                 f"max err {errs}"] = None
    return "\n".join(seen)


