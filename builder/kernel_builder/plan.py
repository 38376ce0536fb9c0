"""Which variants to build here: the matrix (data) filtered by the active environment."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from kernel_hub.variants import ArchVariant, NoarchVariant, format_variant

from .config import BuildConfig
from .toolchain import Toolchain

MATRIX_PATH = Path(__file__).with_name("matrix.toml")

# Which build.toml kernel backends go into a variant of each backend. Arch variants carry the
# CPU kernels too, so CPU tensors work with every compiled variant.
ARCH_KERNEL_BACKENDS = {"cuda": ("cuda", "cpu"), "rocm": ("rocm", "cpu"), "cpu": ("cpu",)}
NOARCH_KERNEL_BACKENDS = {"cuda": ("triton",), "rocm": ("triton",), "npu": ("npu",)}


@dataclass(frozen=True)
class PlannedVariant:
    name: str
    variant: ArchVariant | NoarchVariant
    kernel_backends: tuple[str, ...]

    @property
    def is_arch(self) -> bool:
        return isinstance(self.variant, ArchVariant)

    @property
    def namespace_label(self) -> str:
        """The <backend> part of the op namespace: cuda, rocm, cpu, triton or npu."""
        return self.kernel_backends[0]


@dataclass(frozen=True)
class SkippedVariant:
    name: str
    reason: str


def load_matrix(path: Path = MATRIX_PATH) -> list[ArchVariant | NoarchVariant]:
    data = tomllib.loads(path.read_text())
    variants: list[ArchVariant | NoarchVariant] = []
    for entry in data.get("arch", []):
        version = entry.get("backend-version")
        variants.append(
            ArchVariant(
                torch=_major_minor(entry["torch"]),
                cxx11=True,
                backend=entry["backend"],
                backend_version=_major_minor(version) if version else None,
                cpu=entry["cpu"],
                os="linux",
            )
        )
    variants += [NoarchVariant(backend=entry["backend"]) for entry in data.get("noarch", [])]
    return variants


def environment_variants(toolchain: Toolchain) -> list[ArchVariant]:
    """The arch variants of the active torch: its GPU backend (if any) and its CPU."""
    def arch(backend: str, version: tuple[int, int] | None) -> ArchVariant:
        return ArchVariant(
            torch=toolchain.torch_major_minor,
            cxx11=toolchain.cxx11_abi,
            backend=backend,
            backend_version=version,
            cpu=toolchain.cpu,
            os=toolchain.os,
        )

    variants = []
    if toolchain.torch_cuda is not None:
        variants.append(arch("cuda", toolchain.cuda_version_tuple()))
    variants.append(arch("cpu", None))
    return variants


def plan_variants(
    config: BuildConfig, toolchain: Toolchain, only: list[str] | None = None
) -> tuple[list[PlannedVariant], list[SkippedVariant]]:
    candidates = environment_variants(toolchain)
    candidates += [v for v in load_matrix() if v not in candidates]
    planned: list[PlannedVariant] = []
    skipped: list[SkippedVariant] = []
    for variant in candidates:
        name = format_variant(variant)
        if only and name not in only:
            continue
        kernel_backends = _kernel_backends(variant, config)
        reason = _why_not_buildable(variant, kernel_backends, toolchain)
        if reason:
            skipped.append(SkippedVariant(name, reason))
        else:
            planned.append(PlannedVariant(name, variant, kernel_backends))
    for name in only or []:
        if name not in {p.name for p in planned} | {s.name for s in skipped}:
            skipped.append(SkippedVariant(name, "not in the matrix nor this environment's variants"))
    return planned, skipped


def _kernel_backends(variant, config: BuildConfig) -> tuple[str, ...]:
    table = ARCH_KERNEL_BACKENDS if isinstance(variant, ArchVariant) else NOARCH_KERNEL_BACKENDS
    wanted = table.get(variant.backend, ())
    return tuple(b for b in wanted if b in config.general.backends and config.kernels_for(b))


def _why_not_buildable(variant, kernel_backends, toolchain: Toolchain) -> str | None:
    if not kernel_backends:
        return f"build.toml declares no kernels for a {variant.backend} variant"
    if isinstance(variant, NoarchVariant):
        return None
    if variant.cpu != toolchain.cpu or variant.os != toolchain.os:
        return f"needs a {variant.cpu}-{variant.os} machine (this is {toolchain.cpu}-{toolchain.os})"
    if variant.torch != toolchain.torch_major_minor:
        want = ".".join(map(str, variant.torch))
        return f"needs torch {want} (this environment has torch {toolchain.torch_version})"
    if variant.cxx11 != toolchain.cxx11_abi:
        return "needs the other C++ ABI than this torch was built with"
    if variant.backend == "cuda":
        return _why_not_cuda(variant, toolchain)
    if variant.backend != "cpu":
        return f"the builder cannot build {variant.backend} arch variants in this environment"
    return None


def _why_not_cuda(variant: ArchVariant, toolchain: Toolchain) -> str | None:
    want = ".".join(map(str, variant.backend_version))
    if toolchain.torch_cuda is None:
        return f"needs a CUDA {want} build of torch (this torch is CPU-only)"
    if toolchain.cuda_version_tuple() != variant.backend_version:
        return f"needs torch built for CUDA {want} (this torch uses CUDA {toolchain.torch_cuda})"
    if not toolchain.can_build_cuda:
        found = toolchain.nvcc_version or "none"
        return f"needs nvcc {want.split('.')[0]}.x (found: {found}; set CUDA_HOME)"
    return None


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)
