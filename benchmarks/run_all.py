"""Run every benchmarks/bench_*.py module in one process; they merge into one results JSON.

    python -m benchmarks.run_all [the flags of any bench module, e.g. --quick --out DIR]

Exit code: 0 when every module finished, SKIP_EXIT when there is no CUDA device, else 1.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import SKIP_EXIT


def bench_modules() -> list[str]:
    """Names of the GPU kernel bench modules present, e.g. ['bench_rmsnorm']. A module that
    sets IN_RUN_ALL = False (bench_loader: the loader, on any machine, its own JSON) is left
    out; its source is read rather than imported, so listing stays cheap."""
    here = Path(__file__).resolve().parent
    return sorted(
        p.stem for p in here.glob("bench_*.py") if "IN_RUN_ALL = False" not in p.read_text()
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    codes: dict[str, int] = {}
    for name in bench_modules():
        print(f"== {name}", flush=True)
        try:
            codes[name] = importlib.import_module(f"benchmarks.{name}").main(argv)
        except SystemExit as exc:
            codes[name] = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            codes[name] = 1
        if codes[name] == SKIP_EXIT:
            break
    print("== " + ", ".join(f"{name}: exit {code}" for name, code in codes.items()))
    if codes and all(code == SKIP_EXIT for code in codes.values()):
        return SKIP_EXIT
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
