"""The README's benchmark tables, printed from a results file (markdown, one table per kernel).

    python -m benchmarks.summary benchmarks/results/nvidia-h200.json [--dtype bf16] [--kernel K]

A row per (op, shape, direction) of the chosen dtype: ours (GB/s and % of copy, or TFLOP/s and
% of matmul), torch.compile, the fastest other peer, and ours over each of those two. Cells of a
peer that failed, raised or was skipped read FAIL / ERR / -. Memory-bound rows measured with a
copy of the same bytes get a last column: ours as % of that copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OURS = "ours"
COMPILE = "compile"


def _rate(rec: dict | None) -> str:
    if rec is None or rec.get("status") != "ok":
        return {"failed": "FAIL", "error": "ERR"}.get((rec or {}).get("status"), "-")
    if "gbps" in rec:
        return f"{rec['gbps']:.0f} ({rec['pct_of_copy']:.0f}%)"
    return f"{rec['tflops']:.0f} ({rec['pct_of_matmul']:.0f}%)"


def _ratio(ours: dict | None, other: dict | None) -> str:
    if not (ours and other and ours.get("status") == "ok" and other.get("status") == "ok"):
        return "-"
    return f"{other['time_ms'] / ours['time_ms']:.2f}x"


def _pct_of_same_bytes_copy(ours: dict | None) -> str:
    if not ours or ours.get("status") != "ok" or "pct_of_same_bytes_copy" not in ours:
        return "-"
    return f"{ours['pct_of_same_bytes_copy']:.0f}%"


def _fastest_other(cells: dict[str, dict]) -> tuple[str, dict | None]:
    """The fastest peer that passed its check, other than ours and torch.compile."""
    ok = [(rec["time_ms"], name) for name, rec in cells.items()
          if name not in (OURS, COMPILE) and name != "eager" and rec.get("status") == "ok"
          and not name.startswith(OURS)]
    if not ok:
        ok = [(rec["time_ms"], name) for name, rec in cells.items()
              if name == "eager" and rec.get("status") == "ok"]
    if not ok:
        return "-", None
    _, name = min(ok)
    return name, cells[name]


def kernel_table(records: list[dict], kernel: str, dtype: str) -> str:
    rows: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if r["kernel"] == kernel and r["dtype"] == dtype:
            rows.setdefault((r["op"], r["shape"], r["direction"]), {})[r["peer"]] = r
    unit = "GB/s (% copy)" if any("gbps" in r for c in rows.values() for r in c.values()) \
        else "TFLOP/s (% matmul)"
    same_bytes = any("pct_of_same_bytes_copy" in r for c in rows.values() for r in c.values())
    lines = [f"| op | shape | dir | ours {unit} | torch.compile | best other peer | "
             "ours / compile | ours / best other |"
             + (" ours % of a same-bytes copy |" if same_bytes else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if same_bytes else "")]
    ops = list(dict.fromkeys(key[0] for key in rows))
    order = sorted(rows, key=lambda k: (ops.index(k[0]), k[2] != "fwd", k[1]))
    for op, shape, direction in order:
        cells = rows[(op, shape, direction)]
        compiled = cells.get(COMPILE)
        best_name, best = _fastest_other(cells)
        best_cell = f"{_rate(best)} {best_name}" if best else "-"
        # A second build of ours (a peer named ours-<what>, e.g. flash_attn's CUDA kernels beside
        # its Triton ones) gets a row of its own, labelled with what it is.
        # A build of ours with no record here (not measured in this run) gets no row.
        builds = ([OURS] if OURS in cells else []) + sorted(
            n for n in cells if n.startswith(OURS + "-"))
        for name in builds:
            ours = cells[name]
            label = op if name == OURS else f"{op} ({name})"
            lines.append(f"| {label} | {shape} | {direction} | {_rate(ours)} | "
                         f"{_rate(compiled)} | {best_cell} | {_ratio(ours, compiled)} | "
                         f"{_ratio(ours, best)} |"
                         + (f" {_pct_of_same_bytes_copy(ours)} |" if same_bytes else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.summary",
                                description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--kernel", action="append", help="only these kernels (default: all)")
    args = p.parse_args(argv)
    data = json.loads(args.results.read_text())
    records = data["records"]
    kernels = args.kernel or list(dict.fromkeys(r["kernel"] for r in records))
    for kernel in kernels:
        commits = sorted({str(r.get("git_commit", data.get("git_commit")))[:12]
                          for r in records if r["kernel"] == kernel})
        print(f"\n{kernel} ({args.dtype}, commit {', '.join(commits)})\n")
        print(kernel_table(records, kernel, args.dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
