"""Bar charts of % of measured copy bandwidth, one PNG per kernel.

    python -m benchmarks.plot benchmarks/results/<gpu>.json [--kernel rmsnorm]

Rows: (op, dtype); columns: forward, backward; groups: shapes; bars: peers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DTYPE_ORDER = ("bf16", "fp16", "fp32")
DIRECTION_TITLES = {"fwd": "forward", "bwd": "backward"}


def _ordered(values, order=()) -> list:
    seen: list = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return sorted(seen, key=lambda v: (order.index(v) if v in order else len(order), seen.index(v)))


def _commits(records: list[dict], data: dict[str, Any]) -> str:
    """The commit(s) the plotted records were measured at (older files: the file's commit)."""
    return ", ".join(sorted({str(r.get("git_commit", data.get("git_commit", "?")))[:12]
                             for r in records}))


def _ceilings(records: list[dict], data: dict[str, Any], metric: str) -> str:
    """What the percentages are of: each record's own run measured its ceiling, so records merged
    from several runs span those runs' ceilings (rate / percentage; older records without the
    rate: the file's ceiling, which is the latest run's)."""
    rate, name, unit, key = (("gbps", "copy bandwidth", "GB/s", "copy_gbps")
                             if metric == "pct_of_copy" else
                             ("tflops", "bf16 matmul rate", "TFLOP/s", "matmul_tflops"))
    measured = [r for r in records if r.get(rate) and r.get(metric)]
    values = {round(r[rate] * 100 / r[metric]) for r in measured}
    file_ceiling = data.get("ceilings", {}).get(key)
    if file_ceiling and len(measured) < len(records):
        values.add(round(file_ceiling))
    if not values:
        return f"% of measured {name}"
    values = sorted(values)
    span = f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"
    return f"% of measured {name} ({span} {unit})"


def plot_kernel(data: dict[str, Any], kernel: str, path: Path) -> Path | None:
    """Write the chart of ``kernel``'s ok records in ``data`` to ``path``; None when it has none."""
    records = [r for r in data.get("records", [])
               if r["kernel"] == kernel and r.get("status") == "ok"
               and ("pct_of_copy" in r or "pct_of_matmul" in r)]
    if not records:
        return None
    # Memory-bound kernels report bytes (% of copy bandwidth), matmul-bound ones FLOPs.
    metric = "pct_of_copy" if any("pct_of_copy" in r for r in records) else "pct_of_matmul"
    records = [r for r in records if metric in r]
    rows = [(op, dt) for op in _ordered(r["op"] for r in records)
            for dt in _ordered((r["dtype"] for r in records), DTYPE_ORDER)
            if any(r["op"] == op and r["dtype"] == dt for r in records)]
    directions = _ordered((r["direction"] for r in records), tuple(DIRECTION_TITLES))
    peers = _ordered(r["peer"] for r in records)
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(peers)}

    height = 3.2 * len(rows) + 0.8
    fig, axes = plt.subplots(len(rows), len(directions), squeeze=False,
                             figsize=(6.5 * len(directions), height))
    for (op, dtype), row_axes in zip(rows, axes):
        for direction, ax in zip(directions, row_axes):
            cell = [r for r in records
                    if r["op"] == op and r["dtype"] == dtype and r["direction"] == direction]
            _bars(ax, cell, peers, colors, metric)
            ax.set_title(f"{op} {dtype} {DIRECTION_TITLES.get(direction, direction)}",
                         fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[p]) for p in peers]
    fig.legend(handles, peers, loc="upper center", ncol=len(peers), frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.3 / height))
    ceiling = _ceilings(records, data, metric)
    fig.suptitle(f"{kernel} on {data.get('device', '?')}: {ceiling}, L2 flushed; "
                 f"commit {_commits(records, data)}",
                 y=1 - 0.05 / height, va="top", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(ax, cell: list[dict], peers: list[str], colors: dict, metric: str) -> None:
    shapes = _ordered(r["shape"] for r in cell)
    present = [p for p in peers if any(r["peer"] == p for r in cell)]
    width = 0.8 / max(len(present), 1)
    for i, peer in enumerate(present):
        xs, ys = [], []
        for j, shape in enumerate(shapes):
            match = [r for r in cell if r["peer"] == peer and r["shape"] == shape]
            if match:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(match[0][metric])
        ax.bar(xs, ys, width, color=colors[peer])
    ax.axhline(100.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(shapes)))
    ax.set_xticklabels(shapes, fontsize=8)
    ax.set_ylabel("% of copy BW" if metric == "pct_of_copy" else "% of bf16 matmul")
    ax.set_ylim(0, max([110.0] + [r[metric] * 1.1 for r in cell]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plot",
                                description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="a results/<gpu>.json file")
    p.add_argument("--kernel", default=None, help="only this kernel (default: every kernel)")
    args = p.parse_args(argv)
    data = json.loads(args.results.read_text())
    kernels = [args.kernel] if args.kernel else _ordered(r["kernel"] for r in data["records"])
    for kernel in kernels:
        out = plot_kernel(data, kernel, args.results.with_name(f"{args.results.stem}-{kernel}.png"))
        print(out if out else f"{kernel}: no successful records to plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
