"""`kernel-builder build`: plan, compile with ninja, stage, and report every variant."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from .config import BuildConfig
from kernel_hub.digest import variant_digests
from .ninja_gen import HOST_FLAGS, NVCC_FLAGS, kernel_capabilities, write_ninja
from .plan import PlannedVariant, plan_variants
from .sources import (
    content_hash,
    native_inputs,
    native_kernels,
    op_namespace,
    package_dir,
    package_files,
    python_kernel_files,
)
from .stage import StagedBuild, remove_stale_staging, stage_variant
from .toolchain import Toolchain

WORK_DIR_NAME = ".kernel-builder"

# ptxas advisories, printed without -v, that a kernel runs far slower than its source reads: its
# wgmma instructions serialized (C7518) or a wait injected before accumulator registers are read
# (C7517). A flash_attn forward that drew C7518 measured 0.81x its predecessor on an H100.
SLOW_CODE_ADVISORY = re.compile(r"\((C7517|C7518)\)")
# ninja's status line for an edge (NINJA_STATUS below), naming the source it compiles.
NINJA_EDGE = re.compile(r"^\[[^\]]*\] (?:NVCC|CXX|CC|LINK) (\S+)")


class BuildFailed(RuntimeError):
    """A compiler or ninja failed; the message carries the end of its output."""


@dataclass(frozen=True)
class VariantResult:
    name: str
    status: str          # built | up to date | skipped | failed
    detail: str
    seconds: float = 0.0
    path: Path | None = None


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path
    only: list[str] | None = None
    jobs: int | None = None
    cuda_archs: tuple[str, ...] | None = None


def build_all(
    config: BuildConfig, toolchain: Toolchain, options: BuildOptions, log: TextIO = sys.stdout
) -> list[VariantResult]:
    planned, skipped = plan_variants(config, toolchain, options.only)
    remove_stale_staging(options.out_dir)
    results = []
    for variant in planned:
        start = time.monotonic()
        try:
            status, path = build_variant(config, toolchain, variant, options, log)
            detail = f"{path.relative_to(options.out_dir.parent)}"
            results.append(VariantResult(variant.name, status, detail, time.monotonic() - start, path))
        except BuildFailed as error:
            results.append(VariantResult(variant.name, "failed", str(error), time.monotonic() - start))
    results += [VariantResult(s.name, "skipped", s.reason) for s in skipped]
    return results


def build_variant(
    config: BuildConfig,
    toolchain: Toolchain,
    variant: PlannedVariant,
    options: BuildOptions,
    log: TextIO,
) -> tuple[str, Path]:
    """Returns ("built" | "up to date", variant dir)."""
    staged = _describe(config, toolchain, variant, options)
    if variant.is_arch:
        work_dir = config.root / WORK_DIR_NAME / variant.name
        plan = write_ninja(
            config, variant.kernel_backends, toolchain, staged.namespace, options.cuda_archs, work_dir
        )
        print(f"==> {variant.name}: ninja in {work_dir}", file=log, flush=True)
        run_ninja(work_dir, options.jobs, log)
        staged = replace(staged, library=plan.library)
    final = options.out_dir / variant.name
    if _is_current(final, staged):
        return "up to date", final
    return "built", stage_variant(config, staged, options.out_dir)


def _describe(config, toolchain: Toolchain, variant: PlannedVariant, options) -> StagedBuild:
    """Everything about a variant that is known before compiling: its namespace above all."""
    files = package_files(config) + python_kernel_files(config, variant.kernel_backends)
    identity: dict = {"python-kernels-only": True}
    flags: dict = {}
    archs = None
    if variant.is_arch:
        files += native_inputs(config, variant.kernel_backends)
        identity = toolchain.identity()
        cuda_kernels = [k for k in native_kernels(config, variant.kernel_backends) if k.backend == "cuda"]
        flags = {k.name: list(kernel_capabilities(k, options.cuda_archs)) for k in cuda_kernels}
        flags["host"] = HOST_FLAGS
        flags["nvcc"] = NVCC_FLAGS
        archs = _metadata_archs([kernel_capabilities(k, options.cuda_archs) for k in cuda_kernels])
    digest = content_hash(config, files, identity, flags)
    return StagedBuild(
        planned=variant,
        namespace=op_namespace(config, variant.namespace_label, digest),
        source_hash=digest,
        library=None,
        archs=archs,
        toolchain=identity,
    )


def _metadata_archs(per_kernel: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The capabilities every CUDA kernel has SASS for; +PTX on the highest (see gencode).

    SASS for "9.0a" runs on a 9.0 GPU, so it covers "9.0" here: a variant whose attention
    kernels are built for 9.0a and the rest for 9.0 is a 9.0 variant.
    """
    if not per_kernel:
        return None
    covered = [{cap.replace("+PTX", "").rstrip("a") for cap in caps} for caps in per_kernel]
    common = sorted(set.intersection(*covered), key=_cap_key)
    return tuple(common[:-1]) + (f"{common[-1]}+PTX",) if common else None


def _cap_key(cap: str) -> tuple[int, int]:
    major, minor = cap.rstrip("af").split(".")
    return int(major), int(minor)


def _is_current(final: Path, staged: StagedBuild) -> bool:
    """The staged variant already holds exactly this build (same hash, intact files)."""
    meta_path = final / "metadata.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    if meta.get("id") != staged.namespace:
        return False
    if staged.library is not None:
        shipped = final / f"{staged.namespace}.abi3.so"
        if not shipped.is_file() or shipped.read_bytes() != staged.library.read_bytes():
            return False
    return meta.get("digest", {}).get("files") == variant_digests(final)


def find_ninja() -> str:
    found = shutil.which("ninja")
    if found:
        return found
    try:
        import ninja
    except ImportError as error:
        raise BuildFailed("ninja not found: pip install ninja") from error
    return str(Path(ninja.BIN_DIR) / "ninja")


def run_ninja(work_dir: Path, jobs: int | None, log: TextIO) -> None:
    cmd = [find_ninja(), "-C", str(work_dir)]
    if jobs:
        cmd += ["-j", str(jobs)]
    env = {**os.environ, "NINJA_STATUS": "[%f/%t %es] "}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"    {line}", end="", file=log, flush=True)
        lines.append(line.rstrip())
    if proc.wait() != 0:
        raise BuildFailed("ninja failed:\n" + "\n".join(lines[-40:]))
    reject_slow_code(work_dir, slow_code_advisories(lines))


def slow_code_advisories(lines: list[str]) -> dict[str, list[str]]:
    """SLOW_CODE_ADVISORY lines of ninja's output, by the source whose compile printed them."""
    found: dict[str, list[str]] = {}
    source = "(unknown source)"
    for line in lines:
        edge = NINJA_EDGE.match(line)
        if edge:
            source = edge.group(1)
        elif SLOW_CODE_ADVISORY.search(line):
            found.setdefault(source, []).append(line.strip())
    return found


def reject_slow_code(work_dir: Path, advisories: dict[str, list[str]]) -> None:
    """Fails the build on ptxas's slow-code advisories. Removes those sources' objects first, so
    that the next build compiles them again (and reports again) instead of finding them current."""
    if not advisories:
        return
    for source in advisories:
        for obj in work_dir.glob(f"obj/*/{Path(source).name}.o"):
            obj.unlink()
    report = "\n".join(f"{source}:\n  " + "\n  ".join(found)
                       for source, found in advisories.items())
    raise BuildFailed("ptxas says these kernels will run slower than written (wgmma serialized "
                      "or waits injected: a branch, or a read of a wgmma accumulator, while "
                      "that warpgroup's wgmma is in flight):\n" + report)


def format_table(results: list[VariantResult]) -> str:
    width = max([len(r.name) for r in results] + [len("variant")])
    rows = [f"{'variant':<{width}}  {'status':<10}  {'seconds':>7}  detail"]
    for r in results:
        seconds = f"{r.seconds:7.1f}" if r.status != "skipped" else " " * 7
        detail = r.detail.splitlines()[0] if r.detail else ""
        rows.append(f"{r.name:<{width}}  {r.status:<10}  {seconds}  {detail}")
    return "\n".join(rows)


def install_in_place(config: BuildConfig, results: list[VariantResult]) -> Path | None:
    """Makes `import transformer_kernels` (the source package) use the best variant built:
    a compiled GPU variant, else the CPU one, else a pure-Python one."""
    usable = [r for r in results if r.status in ("built", "up to date") and r.path]
    if not usable:
        return None
    best = min(usable, key=_in_place_rank)
    pkg = package_dir(config)
    for old in pkg.glob(f"_{config.general.python_name}_*.abi3.so"):
        old.unlink()
    for generated in ["_ops.py", *(p.name for p in python_kernel_files(config, tuple(config.general.backends)))]:
        (pkg / generated).unlink(missing_ok=True)
    for src in best.path.iterdir():
        if src.name == "_ops.py" or src.suffix == ".so" or not (pkg / src.name).exists():
            if src.is_file() and src.name != "metadata.json":
                shutil.copy2(src, pkg / src.name)
    return best.path


def _in_place_rank(result: VariantResult) -> int:
    name = result.name
    if name.startswith("torch-"):
        return 3
    return 2 if "-cpu-" in name else 1
