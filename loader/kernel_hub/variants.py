"""The variant grammar: the one place that parses and formats variant directory names.

A variant is one directory under ``build/`` of a kernel repository. Two kinds exist.

Arch variants hold compiled code for one torch version, C++ ABI, compute backend, CPU and OS::

    torch<TORCH>-<ABI>-<COMPUTE>-<CPU>-<OS>        e.g. torch214-cxx11-cu130-x86_64-linux

    TORCH    torch major digit, then the minor as a decimal number without leading zeros:
             torch 2.9 -> "torch29", torch 2.14 -> "torch214". The torch major is one digit
             (torch 2.x), so the split is unambiguous.
    ABI      "cxx11" (every torch build since 2.7) or "cxx98" (the old pre-cxx11 ABI).
    COMPUTE  "cpu", or a backend prefix followed by its version:
               cu<V>   CUDA      cu130 = 13.0, cu128 = 12.8, cu92 = 9.2
               rocm<V> ROCm      rocm63 = 6.3
               cann<V> CANN      cann82 = 8.2 (Ascend NPUs, backend name "npu")
             In <V> the LAST digit is the minor version and every digit before it is the
             major (no leading zero): CUDA 13.0 is "130" and 9.2 is "92". No CUDA, ROCm or CANN
             release has had a two-digit minor, so a minor must be 0-9.
    CPU      "x86_64" or "aarch64".
    OS       "linux".

Noarch variants hold pure-Python (e.g. Triton) code that runs on any torch version:
``torch-cuda``, ``torch-rocm``, ``torch-npu``, ``torch-cpu`` and ``torch-universal``.

Backend names are the same everywhere in kernel_hub: "cuda", "rocm", "npu", "cpu".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import VariantError

BACKENDS = ("cuda", "rocm", "npu", "cpu")
NOARCH_BACKENDS = ("cuda", "rocm", "npu", "cpu", "universal")
CPUS = ("x86_64", "aarch64")
OSES = ("linux",)
ABI_TAGS = {True: "cxx11", False: "cxx98"}

_VERSIONED_BACKEND_PREFIX = {"cuda": "cu", "rocm": "rocm", "npu": "cann"}
_BACKEND_BY_PREFIX = {prefix: backend for backend, prefix in _VERSIONED_BACKEND_PREFIX.items()}
_BACKEND_LABEL = {"cuda": "CUDA", "rocm": "ROCm", "npu": "CANN", "cpu": "CPU"}

# The `backend.type` values of metadata.json that Hugging Face's kernels loader accepts name the
# Ascend backend "cann"; it rejects "npu" and has no value for universal variants.
_METADATA_BACKEND_TYPE = {"cuda": "cuda", "rocm": "rocm", "npu": "cann", "cpu": "cpu"}

_TORCH_RE = re.compile(r"torch([0-9])(0|[1-9][0-9]*)")
_COMPUTE_RE = re.compile(r"(cu|rocm|cann)([1-9][0-9]*)([0-9])")
_NOARCH_PREFIX = "torch-"
_ARCH_PARTS = "torch<MAJ><MIN>-cxx11-<compute>-<cpu>-<os>"


@dataclass(frozen=True)
class ArchVariant:
    """A compiled variant, e.g. torch214-cxx11-cu130-x86_64-linux."""

    torch: tuple[int, int]
    cxx11: bool
    backend: str
    backend_version: tuple[int, int] | None
    cpu: str
    os: str

    def __post_init__(self) -> None:
        _check_arch_fields(self)

    def __str__(self) -> str:
        return format_variant(self)


@dataclass(frozen=True)
class NoarchVariant:
    """A pure-Python variant, e.g. torch-cuda or torch-universal."""

    backend: str

    def __post_init__(self) -> None:
        if self.backend not in NOARCH_BACKENDS:
            raise VariantError(
                f"noarch backend {self.backend!r} is not one of {', '.join(NOARCH_BACKENDS)}"
            )

    def __str__(self) -> str:
        return format_variant(self)


Variant = ArchVariant | NoarchVariant


def parse_variant(name: str) -> Variant:
    """Parse a variant directory name; raise VariantError naming the part that is wrong."""
    if not isinstance(name, str):
        raise VariantError(f"a variant name must be a string, got {type(name).__name__}")
    if name.startswith(_NOARCH_PREFIX) and name.count("-") == 1:
        return _parse_noarch(name)
    return _parse_arch(name)


def format_variant(variant: Variant) -> str:
    """The directory name of a variant; parse_variant(format_variant(v)) == v."""
    if isinstance(variant, NoarchVariant):
        return f"{_NOARCH_PREFIX}{variant.backend}"
    if isinstance(variant, ArchVariant):
        torch_major, torch_minor = variant.torch
        compute = compute_tag(variant.backend, variant.backend_version)
        abi = ABI_TAGS[variant.cxx11]
        return f"torch{torch_major}{torch_minor}-{abi}-{compute}-{variant.cpu}-{variant.os}"
    raise VariantError(f"not a variant: {variant!r}")


def compute_tag(backend: str, version: tuple[int, int] | None) -> str:
    """The COMPUTE part of an arch variant name: "cpu", "cu130", "rocm63", "cann82"."""
    if backend == "cpu":
        return "cpu"
    if version is None:
        raise VariantError(f"backend {backend!r} needs a version to form a variant name")
    major, minor = version
    return f"{_VERSIONED_BACKEND_PREFIX[backend]}{major}{minor}"


def backend_type(variant: Variant) -> str:
    """The metadata.json `backend.type` of a variant, in Hugging Face's vocabulary.

    NPU variants are "cann". torch-universal has no backend type in that format (kernels 0.17.2
    rejects metadata.json with any value outside cann/cpu/cuda/metal/neuron/rocm/tpu/xpu), so
    asking for one is an error rather than a value that would not load.
    """
    if variant.backend == "universal":
        raise VariantError(
            "torch-universal has no metadata.json backend.type: Hugging Face's kernels loader "
            "accepts only cann, cpu, cuda, metal, neuron, rocm, tpu and xpu"
        )
    return _METADATA_BACKEND_TYPE[variant.backend]


def backend_label(backend: str, version: tuple[int, int] | None = None) -> str:
    """A backend as people write it: "CUDA 13.0", "ROCm 6.3", "CPU"."""
    label = _BACKEND_LABEL.get(backend, backend)
    if version is None:
        return label
    return f"{label} {version[0]}.{version[1]}"


def _parse_noarch(name: str) -> NoarchVariant:
    backend = name[len(_NOARCH_PREFIX) :]
    if backend not in NOARCH_BACKENDS:
        known = ", ".join(_NOARCH_PREFIX + b for b in NOARCH_BACKENDS)
        raise VariantError(
            f"{name!r}: unknown noarch backend {backend!r}; noarch variants are {known}"
        )
    return NoarchVariant(backend)


def _parse_arch(name: str) -> ArchVariant:
    parts = name.split("-")
    if len(parts) != 5:
        raise VariantError(
            f"{name!r}: an arch variant has 5 dash-separated parts ({_ARCH_PARTS}), "
            f"this name has {len(parts)}; noarch variants are "
            f"{', '.join(_NOARCH_PREFIX + b for b in NOARCH_BACKENDS)}"
        )
    torch_part, abi_part, compute_part, cpu, os = parts
    torch_version = _parse_torch(name, torch_part)
    cxx11 = _parse_abi(name, abi_part)
    backend, backend_version = _parse_compute(name, compute_part)
    try:
        return ArchVariant(torch_version, cxx11, backend, backend_version, cpu, os)
    except VariantError as error:
        raise VariantError(f"{name!r}: {error}") from None


def _parse_torch(name: str, part: str) -> tuple[int, int]:
    match = _TORCH_RE.fullmatch(part)
    if match is None:
        raise VariantError(
            f"{name!r}: torch part {part!r} is not torch<MAJ><MIN> "
            "(one major digit, minor without leading zeros: torch29, torch214)"
        )
    return int(match.group(1)), int(match.group(2))


def _parse_abi(name: str, part: str) -> bool:
    for cxx11, tag in ABI_TAGS.items():
        if part == tag:
            return cxx11
    raise VariantError(f"{name!r}: ABI part {part!r} is not cxx11 or cxx98")


def _parse_compute(name: str, part: str) -> tuple[str, tuple[int, int] | None]:
    if part == "cpu":
        return "cpu", None
    match = _COMPUTE_RE.fullmatch(part)
    if match is None:
        raise VariantError(
            f"{name!r}: compute part {part!r} is not cpu, cu<V>, rocm<V> or cann<V> "
            "(V = major then a one-digit minor: cu130, cu128, rocm63, cann82)"
        )
    prefix, major, minor = match.groups()
    return _BACKEND_BY_PREFIX[prefix], (int(major), int(minor))


def _check_arch_fields(variant: ArchVariant) -> None:
    torch_major, torch_minor = variant.torch
    if not (0 <= torch_major <= 9 and torch_minor >= 0):
        raise VariantError(f"torch version {variant.torch} has no variant name (major 0-9)")
    if not isinstance(variant.cxx11, bool):
        raise VariantError(f"cxx11 must be True or False, got {variant.cxx11!r}")
    if variant.backend not in BACKENDS:
        raise VariantError(f"backend {variant.backend!r} is not one of {', '.join(BACKENDS)}")
    _check_backend_version(variant.backend, variant.backend_version)
    if variant.cpu not in CPUS:
        raise VariantError(f"CPU {variant.cpu!r} is not one of {', '.join(CPUS)}")
    if variant.os not in OSES:
        raise VariantError(f"OS {variant.os!r} is not one of {', '.join(OSES)}")


def _check_backend_version(backend: str, version: tuple[int, int] | None) -> None:
    if backend == "cpu":
        if version is not None:
            raise VariantError(f"the cpu backend has no version, got {version}")
        return
    if version is None:
        raise VariantError(f"backend {backend!r} needs a version")
    major, minor = version
    if not (major >= 1 and 0 <= minor <= 9):
        raise VariantError(
            f"{backend_label(backend)} version {major}.{minor} has no variant name "
            "(major >= 1, minor 0-9)"
        )
