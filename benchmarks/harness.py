"""One benchmark harness for every kernel.

A ``bench_<kernel>.py`` module only describes its cases (inputs, byte/FLOP counts, the fp32
reference, the same math in the input dtype, and the peers). This module checks each peer
against the reference, then times forward and backward (``timing``: L2 flushed, ceilings
measured in the same process) and writes ``results/<gpu>.json`` and the table (``report``).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from benchmarks import report, timing
from benchmarks.report import OURS

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEVICE = "cuda"
# Exit code when there is no CUDA device: nothing was measured (the automake "skipped" code).
SKIP_EXIT = 77

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
DIRECTIONS = ("fwd", "bwd")

Shape = tuple[int, ...]


# ----------------------------------------------------------------------------- descriptions


@dataclass
class Peer:
    """One implementation of a case's op, called as ``fn(**inputs)``.

    ``skip`` is the reason it cannot run here (not importable, op missing); it is recorded.
    ``variant`` names the variant directory of one of ours loaded apart from the default one
    (recorded instead of the default's name). ``directions`` are those it is measured in: a
    peer whose forward is another peer's (only its backward differs) names "bwd" alone, so
    that the same forward is not timed twice.
    """

    name: str
    fn: Callable[..., Any] | None = None
    skip: str | None = None
    variant: str | None = None
    directions: tuple[str, ...] = ("fwd", "bwd")


@dataclass
class Case:
    """One (op, shape, dtype) to measure, with everything the harness needs to know about it.

    ``make_inputs(device)`` draws fresh random inputs (a dict of keyword arguments).
    ``reference`` is the fp32 reference: called on fp32 copies of the inputs it gives the truth.
    ``lowp`` is the same PyTorch computation done in the input dtype; its error sets the
    tolerance (max error <= 2x its error + atol). ``grad_inputs`` names the inputs that get
    gradients; empty means the op has no backward to measure.
    """

    kernel: str
    op: str
    shape: Shape
    dtype: torch.dtype
    make_inputs: Callable[[str], dict[str, torch.Tensor]]
    reference: Callable[..., Any]
    lowp: Callable[..., Any]
    peers: list[Peer]
    grad_inputs: tuple[str, ...] = ()
    fwd_bytes: int = 0
    bwd_bytes: int = 0
    fwd_flops: int = 0
    bwd_flops: int = 0

    def work(self, direction: str) -> tuple[int, int]:
        """(bytes, flops) of one call in ``direction``."""
        if direction == "fwd":
            return self.fwd_bytes, self.fwd_flops
        return self.bwd_bytes, self.bwd_flops


@dataclass
class Bench:
    """What a bench_<kernel>.py module hands to ``main``."""

    kernel: str
    shape_sets: dict[str, list[Shape]]
    quick_shapes: list[Shape]
    build_cases: Callable[[Any, Shape, torch.dtype], list[Case]]
    default_dtypes: tuple[str, ...] = ("bf16", "fp16")


def tensor_bytes(dtype: torch.dtype, *numels: int) -> int:
    """Bytes of tensors with these element counts in ``dtype``."""
    return sum(numels) * torch.empty((), dtype=dtype).element_size()


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def parse_shape(text: str) -> Shape:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r}: expected sizes joined by 'x', e.g. 4096x4096") from None
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"shape {text!r}: every size must be a positive integer")
    return shape


# ----------------------------------------------------------------------------- loading ours


def load_kernel(root: Path = REPO_ROOT) -> tuple[Any, dict[str, Any]]:
    """Our kernel package and where it came from.

    Tries ``kernel_hub.get_local_kernel(root)`` (best built variant in ``root/build``), then a
    plain ``import transformer_kernels``. Returns (module or None, info); info names the variant
    (the module's directory) or, when both fail, both reasons.
    """
    errors = []
    try:
        module = local_kernel(root)
        return module, _kernel_info(module, "kernel_hub.get_local_kernel")
    except Exception as exc:
        errors.append(f"kernel_hub.get_local_kernel: {type(exc).__name__}: {exc}")
    try:
        module = importlib.import_module("transformer_kernels")
        return module, _kernel_info(module, "import transformer_kernels")
    except Exception as exc:
        errors.append(f"import transformer_kernels: {type(exc).__name__}: {exc}")
    return None, {"via": None, "variant": None, "path": None, "error": "; ".join(errors)}


def local_kernel(path: Path) -> Any:
    """kernel_hub.get_local_kernel(path): the best variant built under a repository, or one
    variant directory; the loader is taken from loader/ in a checkout that never installed it."""
    try:
        kernel_hub = importlib.import_module("kernel_hub")
    except ImportError:
        # A source checkout that was never pip-installed: the loader lives in loader/.
        sys.path.insert(0, str(REPO_ROOT / "loader"))
        kernel_hub = importlib.import_module("kernel_hub")
    return kernel_hub.get_local_kernel(path)


def _kernel_info(module: Any, via: str) -> dict[str, Any]:
    path = Path(module.__file__).resolve().parent
    return {"via": via, "variant": path.name, "path": str(path), "error": None}


# ----------------------------------------------------------------------------- correctness


def as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def within_tolerance(err: float, lowp_err: float, atol: float) -> bool:
    """The project's rule: max error <= 2x the input-dtype PyTorch error + atol (NaN fails)."""
    return err <= 2.0 * lowp_err + atol


# The atol of the tolerance rule, the same values as tests/tolerance.py.
ATOL = {torch.bfloat16: 1e-2, torch.float16: 1e-3, torch.float32: 1e-5}


def atol_for(dtype: torch.dtype) -> float:
    return ATOL[dtype]


def max_abs_errors(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor]) -> list[float]:
    if len(got) != len(want):
        raise ValueError(f"returned {len(got)} tensors, expected {len(want)}")
    errs = []
    for g, w in zip(got, want):
        if tuple(g.shape) != tuple(w.shape):
            raise ValueError(f"returned shape {tuple(g.shape)}, expected {tuple(w.shape)}")
        errs.append(float((g.detach().float() - w.float()).abs().max()) if g.numel() else 0.0)
    return errs


def _upcast(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in inputs.items():
        leaf = t.detach().float() if t.is_floating_point() else t.detach()
        out[name] = leaf.requires_grad_(t.requires_grad)
    return out


def _grads(fn: Callable[..., Any], inputs: dict[str, torch.Tensor], names: Sequence[str],
           dys: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    outs = as_tuple(fn(**inputs))
    dys = [dy.to(o.dtype) for o, dy in zip(outs, dys)]
    return torch.autograd.grad(outs, [inputs[n] for n in names], dys)


@dataclass
class Check:
    passed: bool
    errors: list[float] = field(default_factory=list)
    limits: list[float] = field(default_factory=list)


class Truth:
    """The fp32 truth of one case and the error budget of each output (or gradient)."""

    def __init__(self, case: Case, inputs: dict[str, torch.Tensor], directions: Sequence[str]):
        self.case = case
        atol = atol_for(case.dtype)
        with torch.no_grad():
            self.fwd = [t.float() for t in as_tuple(case.reference(**_upcast(inputs)))]
            lowp = as_tuple(case.lowp(**inputs))
        self.fwd_limits = [2.0 * e + atol for e in max_abs_errors(lowp, self.fwd)]
        self.dys = [torch.randn_like(t).to(case.dtype) for t in self.fwd]
        self.bwd, self.bwd_limits = [], []
        if "bwd" in directions:
            self.bwd = [g.float() for g in
                        _grads(case.reference, _upcast(inputs), case.grad_inputs, self.dys)]
            lowp_grads = _grads(case.lowp, inputs, case.grad_inputs, self.dys)
            self.bwd_limits = [2.0 * e + atol for e in max_abs_errors(lowp_grads, self.bwd)]

    def check(self, peer: Peer, inputs: dict[str, torch.Tensor], direction: str) -> Check:
        if direction == "fwd":
            got = as_tuple(peer.fn(**inputs))
            want, limits = self.fwd, self.fwd_limits
        else:
            got = _grads(peer.fn, inputs, self.case.grad_inputs, self.dys)
            want, limits = self.bwd, self.bwd_limits
        errs = max_abs_errors(got, want)
        return Check(all(e <= lim for e, lim in zip(errs, limits)), errs, limits)


# ----------------------------------------------------------------------------- running


def timed_callable(peer: Peer, case: Case, inputs: dict[str, torch.Tensor], dys, direction: str):
    """What the harness times: the forward, or torch.autograd.grad after one forward."""
    if direction == "fwd":
        return lambda: peer.fn(**inputs)
    outs = as_tuple(peer.fn(**inputs))
    leaves = [inputs[n] for n in case.grad_inputs]
    grads = [dy.to(o.dtype) for o, dy in zip(outs, dys)]
    return lambda: torch.autograd.grad(outs, leaves, grads, retain_graph=True)


def _base_record(case: Case, peer: Peer, direction: str) -> dict[str, Any]:
    nbytes, flops = case.work(direction)
    rec = {
        "kernel": case.kernel, "op": case.op, "direction": direction,
        "shape": shape_str(case.shape), "dtype": DTYPE_NAMES[case.dtype], "peer": peer.name,
        "bytes": nbytes, "flops": flops,
    }
    if peer.variant is not None:
        rec["variant"] = peer.variant
    return rec


def leaf_inputs(case: Case) -> dict[str, torch.Tensor]:
    """Fresh random inputs of ``case`` on the GPU, those in ``grad_inputs`` requiring grad."""
    inputs = case.make_inputs(DEVICE)
    for name in case.grad_inputs:
        inputs[name].requires_grad_(True)
    return inputs


def timing_compile_config():
    """The torch.compile setting every timed call runs under: a compiled backward with donated
    buffers refuses retain_graph=True, which the backward timing needs; without donation the
    backward moves the same bytes, it only reuses less memory."""
    # A submodule that `import torch` alone does not load.
    import torch._functorch.config as functorch_config

    return functorch_config.patch(donated_buffer=False)


def run_case(case: Case, directions: Sequence[str], ceilings: dict[str, Any],
             warmup_ms: float, rep_ms: float, peer_filter: set[str] | None = None,
             rounds: int = 1) -> list[dict]:
    """Check every peer of ``case``, then time those that passed; one record per (peer,
    direction). With ``rounds`` > 1 the peers are timed in turn, once per round, in order on even
    rounds and in reverse on odd ones, so that a drift of the GPU's clock or temperature over
    the case falls on every peer alike; each time recorded is the median over the rounds."""
    with timing_compile_config():
        records = _run_case(case, directions, ceilings, warmup_ms, rep_ms, peer_filter, rounds)
    torch.cuda.empty_cache()
    return records


def _run_case(case: Case, directions: Sequence[str], ceilings: dict[str, Any],
              warmup_ms: float, rep_ms: float, peer_filter: set[str] | None,
              rounds: int) -> list[dict]:
    # Compile peers are compiled once per case: forget the graphs of earlier shapes/dtypes so
    # that dynamo's recompile limit never sends a compiled peer back to eager.
    torch._dynamo.reset()
    directions = [d for d in directions if d == "fwd" or case.grad_inputs]
    inputs = leaf_inputs(case)
    try:
        truth = Truth(case, inputs, directions)
        no_truth = None
    except Exception as exc:
        no_truth = f"the reference raised: {describe_error(exc)}"
    records, passed = [], []
    for peer in case.peers:
        if peer_filter is not None and peer.name not in peer_filter:
            continue
        for direction in (d for d in directions if d in peer.directions):
            rec = _base_record(case, peer, direction)
            records.append(rec)
            if no_truth is not None:
                rec.update(status="error", reason=no_truth)
            elif peer.skip is not None or peer.fn is None:
                rec.update(status="skipped", reason=peer.skip or "no callable")
            elif _checked(rec, truth, peer, inputs, direction):
                passed.append((rec, peer, direction))
    timings = _time_in_rounds(passed, case, inputs, truth, warmup_ms, rep_ms, rounds)
    for (rec, _, _), times in zip(passed, timings):
        if rec.get("status") == "error":
            continue
        rec.update(_measurement(_over_rounds(times), rec, ceilings))
        if rounds > 1:
            rec["round_ms"] = [t.median_ms for t in times]
        if rec["bytes"]:
            rec.update(_same_bytes_copy(rec["bytes"], rec["gbps"], warmup_ms, rep_ms))
    report.add_speedups(records)
    return records


def _checked(rec: dict[str, Any], truth: Truth, peer: Peer, inputs: dict[str, torch.Tensor],
             direction: str) -> bool:
    """Check one peer against the truth; on failure or error say so in ``rec``."""
    try:
        check = truth.check(peer, inputs, direction)
    except Exception as exc:
        rec.update(status="error", reason=describe_error(exc))
        return False
    finally:
        torch.cuda.empty_cache()
    rec.update(max_err=check.errors, err_limit=check.limits)
    if not check.passed:
        rec.update(status="failed", reason="max error over the tolerance rule")
    return check.passed


def _time_in_rounds(passed: Sequence[tuple[dict, Peer, str]], case: Case,
                    inputs: dict[str, torch.Tensor], truth: Truth, warmup_ms: float,
                    rep_ms: float, rounds: int) -> list[list[timing.Timing]]:
    """Each passed (record, peer, direction) timed once per round, in timing.round_orders.
    A callable lives for one measurement only (a backward's holds its forward's graph), so
    peers never hold memory side by side. A peer that raises is marked in its record and
    timed no more."""
    times: list[list[timing.Timing]] = [[] for _ in passed]
    for order in timing.round_orders(len(passed), rounds):
        for index in order:
            rec, peer, direction = passed[index]
            if rec.get("status") == "error":
                continue
            try:
                fn = timed_callable(peer, case, inputs, truth.dys, direction)
                times[index].append(timing.time_ms(fn, warmup_ms, rep_ms))
                del fn
            except Exception as exc:
                rec.update(status="error", reason=describe_error(exc))
            torch.cuda.empty_cache()
    return times


def _over_rounds(times: Sequence[timing.Timing]) -> timing.Timing:
    """One timing from a peer's rounds: the median of each statistic over the rounds."""
    return timing.Timing(*(statistics.median(getattr(t, f) for t in times)
                           for f in ("median_ms", "p20_ms", "p80_ms")))


def describe_error(exc: BaseException) -> str:
    """'Type: first line of the message'."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _measurement(t: timing.Timing, rec: dict[str, Any], ceilings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "ok", "time_ms": t.median_ms, "p20_ms": t.p20_ms,
                           "p80_ms": t.p80_ms}
    if rec["bytes"]:
        out["gbps"] = timing.gbps(rec["bytes"], t.median_ms)
        out["pct_of_copy"] = 100.0 * out["gbps"] / ceilings["copy_gbps"]
    if rec["flops"]:
        out["tflops"] = timing.tflops(rec["flops"], t.median_ms)
        out["pct_of_matmul"] = 100.0 * out["tflops"] / ceilings["matmul_tflops"]
    return out


def _same_bytes_copy(nbytes: int, peer_gbps: float, warmup_ms: float,
                     rep_ms: float) -> dict[str, float]:
    copy_gbps = timing.same_bytes_copy_gbps(nbytes, warmup_ms, rep_ms)
    return {"same_bytes_copy_gbps": copy_gbps,
            "pct_of_same_bytes_copy": 100.0 * peer_gbps / copy_gbps}


# ----------------------------------------------------------------------------- command line


def add_selection_arguments(p: argparse.ArgumentParser, bench: Bench | None = None) -> None:
    """What to run and how long to time it: the flags of every bench module, and of
    benchmarks.ab (which learns its bench from an argument, so has none here)."""
    sets = f"a named set ({', '.join(sorted(bench.shape_sets))})" if bench else "a named set"
    p.add_argument("--shapes", default="all",
                   help=f"'all', {sets}, or sizes like 4096x4096,1x1024x2048")
    p.add_argument("--dtype", default=None,
                   help="bf16, fp16, fp32, 'all', or a comma list (default: the bench's)")
    p.add_argument("--ops", default=None, help="comma list of ops to run (default: all)")
    p.add_argument("--direction", choices=["fwd", "bwd", "both"], default="both")
    p.add_argument("--warmup", type=float, default=25.0, help="warm-up per measurement, ms")
    p.add_argument("--rep", type=float, default=100.0,
                   help="timed repetitions per measurement (per round with --rounds), ms")


def resolve_selection(bench: Bench, args: argparse.Namespace) -> None:
    """add_selection_arguments' flags as lists: shapes_list, dtypes, directions, op_filter."""
    args.shapes_list = select_shapes(bench, args.shapes)
    args.dtypes = select_dtypes(args.dtype or ",".join(bench.default_dtypes))
    args.directions = list(DIRECTIONS) if args.direction == "both" else [args.direction]
    args.op_filter = set(args.ops.split(",")) if args.ops else None


def parse_args(bench: Bench, argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.bench_{bench.kernel}",
                                description=f"Benchmark {bench.kernel} against its peers.")
    add_selection_arguments(p, bench)
    p.add_argument("--peers", default=None, help="comma list of peer names to run (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="bf16, a short shape list, shorter timing (for a fast look)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1,
                   help="time the peers of each case in turn this many times, the order "
                        "reversed every other round; each time is the median over the rounds")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds: at least 1")
    resolve_selection(bench, args)
    if args.quick:
        args.shapes_list = list(bench.quick_shapes)
        args.dtypes = [torch.bfloat16]
        args.warmup, args.rep = min(args.warmup, 10.0), min(args.rep, 40.0)
    args.peer_filter = set(args.peers.split(",")) if args.peers else None
    return args


def select_shapes(bench: Bench, text: str) -> list[Shape]:
    if text == "all":
        out: list[Shape] = []
        for shapes in bench.shape_sets.values():
            out += [s for s in shapes if s not in out]
        return out
    if text in bench.shape_sets:
        return list(bench.shape_sets[text])
    return [parse_shape(s) for s in text.split(",") if s]


def select_dtypes(text: str) -> list[torch.dtype]:
    names = list(DTYPES) if text == "all" else [s for s in text.split(",") if s]
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise SystemExit(f"--dtype: unknown {unknown}; expected some of {list(DTYPES)} or 'all'")
    return [DTYPES[n] for n in names]


def main(bench: Bench, argv: Sequence[str] | None = None) -> int:
    """Run one bench module. 0: done; 1: ours failed or could not load; SKIP_EXIT: no CUDA."""
    args = parse_args(bench, argv)
    if not torch.cuda.is_available():
        print(f"benchmarks: no CUDA device here (torch.cuda.is_available() is False); "
              f"nothing measured, exit code {SKIP_EXIT}.", file=sys.stderr)
        return SKIP_EXIT
    kernel, kernel_info = load_kernel()
    if kernel is None:
        print(f"benchmarks: cannot load transformer_kernels: {kernel_info['error']}",
              file=sys.stderr)
        return 1
    print(f"{bench.kernel}: ours = {kernel_info['variant']} via {kernel_info['via']}", flush=True)
    torch.manual_seed(args.seed)
    ceilings = timing.measure_ceilings(args.warmup, args.rep)
    meta = report.environment(kernel_info)
    meta["ceilings"] = ceilings
    print(f"{meta['device']}: copy {ceilings['copy_gbps']:.0f} GB/s, "
          f"matmul {ceilings['matmul_tflops']:.0f} TFLOP/s (flush: {meta['flush']})", flush=True)

    records: list[dict] = []
    for shape in args.shapes_list:
        for dtype in args.dtypes:
            for case in bench.build_cases(kernel, shape, dtype):
                if args.op_filter is not None and case.op not in args.op_filter:
                    continue
                print(f"  {case.op} {shape_str(shape)} {DTYPE_NAMES[dtype]}", flush=True)
                records += run_case(case, args.directions, ceilings, args.warmup, args.rep,
                                    args.peer_filter, args.rounds)
    for rec in records:
        rec["date"] = meta["date"]
        rec["git_commit"] = meta.get("git_commit")
        if rec["peer"] == OURS:
            rec.setdefault("variant", kernel_info["variant"])

    path = args.out / f"{meta['gpu']}.json"
    data = report.merge_results(path, meta, records)
    print(f"results: {path}")
    if not args.no_plot:
        from benchmarks import plot

        png = plot.plot_kernel(data, bench.kernel, args.out / f"{meta['gpu']}-{bench.kernel}.png")
        print(f"plot: {png}")
    notes = report.format_notes(records)
    if notes:
        print(notes)
    print(report.format_table(records, ceilings))
    ours_bad = any(r["peer"] == OURS and r.get("status") in ("failed", "error") for r in records)
    return 1 if ours_bad else 0
