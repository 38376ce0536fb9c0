"""Two results files side by side: the time of one peer in each, row by row (an A/B of two builds).

    python -m benchmarks.compare BASE.json NEW.json [--peer ours] [--kernel K] [--dtype bf16]

Made for the device machine, where one command builds a variant, benchmarks it with
``--out /tmp/a``, swaps in the other sources, rebuilds and benchmarks again with ``--out /tmp/b``:
both runs then share the GPU, the host and the driver, which runs on different days do not. A row
per (kernel, op, shape, direction, dtype) that the peer passed in both files, with both times and
base time / new time (above 1: the new build is faster), then the geometric mean of that ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

Key = tuple[str, str, str, str, str]


def peer_times(records: list[dict], peer: str, kernel: str | None, dtype: str | None
               ) -> dict[Key, float]:
    """(kernel, op, shape, direction, dtype) -> time_ms of `peer`'s passing records."""
    times = {}
    for r in records:
        if r["peer"] != peer or r.get("status") != "ok":
            continue
        if (kernel and r["kernel"] != kernel) or (dtype and r["dtype"] != dtype):
            continue
        times[(r["kernel"], r["op"], r["shape"], r["direction"], r["dtype"])] = r["time_ms"]
    return times


def comparison(base: dict[Key, float], new: dict[Key, float]) -> tuple[list[str], float | None]:
    """Markdown rows for the keys of both, and the geometric mean of base / new (None if none)."""
    lines = ["| kernel | op | shape | dir | dtype | base us | new us | base / new |",
             "|---|---|---|---|---|---|---|---|"]
    logs = []
    for key in sorted(base.keys() & new.keys()):
        ratio = base[key] / new[key]
        logs.append(math.log(ratio))
        lines.append("| " + " | ".join(key) +
                     f" | {base[key] * 1e3:.1f} | {new[key] * 1e3:.1f} | {ratio:.3f} |")
    return lines, (math.exp(sum(logs) / len(logs)) if logs else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("base", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--peer", default="ours", help="peer whose times are compared")
    parser.add_argument("--kernel", help="only this kernel")
    parser.add_argument("--dtype", help="only this dtype (bf16, fp16, fp32)")
    args = parser.parse_args(argv)
    times = [peer_times(json.loads(path.read_text())["records"], args.peer, args.kernel,
                        args.dtype) for path in (args.base, args.new)]
    lines, mean = comparison(*times)
    if mean is None:
        print(f"no row of peer {args.peer!r} passed in both files", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print(f"\ngeometric mean of base / new over {len(lines) - 2} rows: {mean:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
