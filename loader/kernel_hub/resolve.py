"""Which variants of a kernel run on a system, best first, with a reason for every decision.

Rules, in the order they are checked:

* Arch variants need this machine's CPU and OS, torch's major.minor and its C++ ABI.
* Their backend: CPU builds run under any torch (a CUDA torch runs CPU kernels too). CUDA builds
  need the same CUDA major and a minor <= torch's CUDA minor. ROCm and CANN must match exactly.
* Noarch variants: torch-<backend> when torch is built for that backend; torch-cpu and
  torch-universal anywhere.
* When a variant's metadata.json is given and a GPU is visible, its `backend.archs` must
  include an architecture that runs on that GPU (see `cuda_archs_run_on`).

Accepted variants rank: the backend's own arch variants (highest toolkit version first), the
backend's noarch variant, CPU arch variants, torch-cpu, torch-universal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .errors import VariantError
from .system import SystemInfo
from .variants import ABI_TAGS, ArchVariant, NoarchVariant, Variant, backend_label, parse_variant


@dataclass(frozen=True)
class VariantDecision:
    """Whether one variant can be loaded here, and why.

    rank is the variant's place among the accepted ones (0 = the one to load); None when
    rejected.
    """

    name: str
    accepted: bool
    reason: str
    rank: int | None = None


@dataclass(frozen=True)
class _Verdict:
    name: str
    reason: str
    preference: tuple[int, ...] | None  # None = rejected; lower sorts first

    @property
    def accepted(self) -> bool:
        return self.preference is not None


def resolve_variants(
    variant_names: Iterable[str],
    system: SystemInfo,
    metadata: Mapping[str, Mapping] | None = None,
) -> list[VariantDecision]:
    """Decide on every candidate: accepted ones first, best first; then the rejected ones.

    metadata maps a variant name to its parsed metadata.json; variants without an entry skip
    the GPU architecture check.
    """
    metadata = metadata or {}
    verdicts = [_judge(name, system, metadata.get(name)) for name in dict.fromkeys(variant_names)]
    accepted = sorted(
        (verdict for verdict in verdicts if verdict.accepted),
        key=lambda verdict: (verdict.preference, verdict.name),
    )
    rejected = sorted(
        (verdict for verdict in verdicts if not verdict.accepted),
        key=lambda verdict: verdict.name,
    )
    return [
        VariantDecision(verdict.name, True, verdict.reason, rank)
        for rank, verdict in enumerate(accepted)
    ] + [VariantDecision(verdict.name, False, verdict.reason) for verdict in rejected]


def cuda_archs_run_on(archs: Sequence[str], capability: tuple[int, int]) -> bool:
    """Whether a build for these CUDA archs runs on a GPU of this compute capability.

    "8.0" (and the family form "10.0f") runs on the same major with a minor >= 0; "9.0a" only
    on 9.0 exactly; "9.0+PTX" on 9.0 and every later capability (the driver compiles the PTX).
    Arch strings in none of these forms are ignored; if all are, the answer is yes, because
    nothing can be concluded.
    """
    verdicts = [_cuda_arch_runs_on(arch, capability) for arch in archs]
    known = [verdict for verdict in verdicts if verdict is not None]
    return not known or any(known)


def _judge(name: str, system: SystemInfo, metadata: Mapping | None) -> _Verdict:
    try:
        variant = parse_variant(name)
    except VariantError as error:
        return _Verdict(name, f"rejected: not a variant name ({error})", None)
    if isinstance(variant, ArchVariant):
        problem = _arch_variant_problem(variant, system)
    else:
        problem = _noarch_variant_problem(variant, system)
    if problem is not None:
        return _Verdict(name, f"rejected: {problem}", None)
    gpu_problem, gpu_note = _gpu_arch_check(metadata, system)
    if gpu_problem is not None:
        return _Verdict(name, f"rejected: {gpu_problem}", None)
    reason = f"accepted: {_acceptance(variant, system)}{gpu_note}"
    return _Verdict(name, reason, _preference(variant))


def _arch_variant_problem(variant: ArchVariant, system: SystemInfo) -> str | None:
    if variant.cpu != system.cpu:
        return f"built for {variant.cpu} CPUs, this machine is {system.cpu}"
    if variant.os != system.os:
        return f"built for {variant.os}, this machine runs {system.os}"
    built_for = f"built for torch {_dotted(variant.torch)}"
    if system.torch is None:
        return f"{built_for}, and torch is not installed"
    if variant.torch != system.torch:
        return f"{built_for}, this environment has torch {_dotted(system.torch)}"
    if variant.cxx11 != system.cxx11:
        return (
            f"built for the {ABI_TAGS[variant.cxx11]} C++ ABI, "
            f"this torch uses the {ABI_TAGS[system.cxx11]} ABI"
        )
    return _backend_problem(variant, system)


def _backend_problem(variant: ArchVariant, system: SystemInfo) -> str | None:
    if variant.backend == "cpu":
        return None
    built_for = f"built for {backend_label(variant.backend, variant.backend_version)}"
    system_label = backend_label(system.backend, system.backend_version)
    if variant.backend != system.backend:
        return f"{built_for}, this environment's torch is built for {system_label}"
    if system.backend_version is None:
        return f"{built_for}, and the {system_label} version of this environment is unknown"
    if variant.backend != "cuda":
        if variant.backend_version != system.backend_version:
            return f"{built_for}, this environment has {system_label} and needs an exact match"
        return None
    variant_major, variant_minor = variant.backend_version
    system_major, system_minor = system.backend_version
    if variant_major != system_major:
        return f"{built_for}, this environment has {system_label} (the CUDA major must match)"
    if variant_minor > system_minor:
        return f"{built_for}, newer than this environment's {system_label}"
    return None


def _noarch_variant_problem(variant: NoarchVariant, system: SystemInfo) -> str | None:
    if variant.backend in ("universal", "cpu", system.backend):
        return None
    return (
        f"a noarch {backend_label(variant.backend)} build, this environment's torch is built "
        f"for {backend_label(system.backend, system.backend_version)}"
    )


def _gpu_arch_check(metadata: Mapping | None, system: SystemInfo) -> tuple[str | None, str]:
    """(problem, note): problem says why the GPU cannot run the build; note, for an accepted
    build, says which archs were compared."""
    backend = metadata.get("backend") if isinstance(metadata, Mapping) else None
    if not isinstance(backend, Mapping) or not backend.get("archs"):
        return None, ""
    archs = [str(arch) for arch in backend["archs"]]
    listed = ", ".join(archs)
    if backend.get("type") == "cuda" and system.backend == "cuda" and system.gpu_capability:
        capability = _dotted(system.gpu_capability)
        if not cuda_archs_run_on(archs, system.gpu_capability):
            return (
                f"built for CUDA archs {listed}, none of which runs on this GPU "
                f"(compute capability {capability})",
                "",
            )
        return None, f"; its CUDA archs {listed} run on this GPU ({capability})"
    if backend.get("type") == "rocm" and system.backend == "rocm" and system.gpu_arch:
        if system.gpu_arch not in archs:
            return f"built for ROCm archs {listed}, this GPU is {system.gpu_arch}", ""
        return None, f"; its ROCm archs {listed} include this GPU ({system.gpu_arch})"
    return None, ""


def _acceptance(variant: Variant, system: SystemInfo) -> str:
    if isinstance(variant, NoarchVariant):
        if variant.backend == "universal":
            return "a universal build runs everywhere; it ranks last"
        return f"a noarch {backend_label(variant.backend)} build (pure Python, any torch version)"
    torch_text = f"torch {_dotted(variant.torch)}"
    if variant.backend == "cpu":
        if system.backend == "cpu":
            return f"a CPU build for {torch_text}"
        system_backend = backend_label(system.backend)
        return f"a CPU build for {torch_text}; it ranks below {system_backend} builds"
    built = backend_label(variant.backend, variant.backend_version)
    system_label = backend_label(system.backend, system.backend_version)
    return f"built for {torch_text} and {built}, which runs on this environment's {system_label}"


def _preference(variant: Variant) -> tuple[int, ...]:
    if isinstance(variant, ArchVariant):
        if variant.backend == "cpu":
            return (2,)
        major, minor = variant.backend_version
        return (0, -major, -minor)
    return {"cpu": (3,), "universal": (4,)}.get(variant.backend, (1,))


def _cuda_arch_runs_on(arch: str, capability: tuple[int, int]) -> bool | None:
    ptx = arch.endswith("+PTX")
    base = arch.removesuffix("+PTX")
    suffix = base[-1:] if base[-1:] in ("a", "f") else ""
    major_text, dot, minor_text = base.removesuffix(suffix).partition(".")
    if not (dot and major_text.isdigit() and minor_text.isdigit()):
        return None
    built = (int(major_text), int(minor_text))
    if suffix == "a":
        return capability == built
    if ptx:
        return capability >= built
    return capability[0] == built[0] and capability[1] >= built[1]


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
