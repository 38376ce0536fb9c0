"""What this machine is, in the terms variants are named by."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import platform
import re
from dataclasses import dataclass

from .errors import VariantError
from .variants import ABI_TAGS, ArchVariant, backend_label, format_variant

_CPU_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}
_VERSION_RE = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True)
class SystemInfo:
    """The facts variant resolution needs; tests build these by hand.

    torch is None when torch is not importable. backend is the backend torch was built for
    ("cuda", "rocm", "npu" or "cpu"), backend_version its toolkit version (None for cpu, or when
    it cannot be found). gpu_capability is the CUDA compute capability of the visible GPU and
    gpu_arch the ROCm gfx name, each None when no such GPU is visible.
    """

    torch: tuple[int, int] | None
    cxx11: bool
    backend: str
    backend_version: tuple[int, int] | None
    cpu: str
    os: str
    gpu_capability: tuple[int, int] | None = None
    gpu_arch: str | None = None

    def describe(self) -> str:
        """One line for people, e.g.
        "torch 2.14 (cxx11 ABI), CUDA 13.0, x86_64 linux, no GPU visible"."""
        if self.torch is None:
            torch_text = "torch not installed"
        else:
            torch_text = f"torch {self.torch[0]}.{self.torch[1]} ({ABI_TAGS[self.cxx11]} ABI)"
        parts = [torch_text, backend_label(self.backend, self.backend_version)]
        parts.append(f"{self.cpu} {self.os}")
        if self.gpu_capability is not None:
            major, minor = self.gpu_capability
            parts.append(f"GPU compute capability {major}.{minor}")
        if self.gpu_arch is not None:
            parts.append(f"GPU {self.gpu_arch}")
        if self.gpu_capability is None and self.gpu_arch is None:
            parts.append("no GPU visible")
        return ", ".join(parts)


@functools.cache
def detect_system() -> SystemInfo:
    """Detect this machine once per process."""
    cpu = normalize_cpu(platform.machine())
    os = platform.system().lower()
    try:
        import torch
    except ImportError:
        return SystemInfo(None, True, "cpu", None, cpu, os)
    backend, backend_version = _torch_backend(torch)
    return SystemInfo(
        torch=_major_minor(torch.__version__),
        cxx11=bool(torch.compiled_with_cxx11_abi()),
        backend=backend,
        backend_version=backend_version,
        cpu=cpu,
        os=os,
        gpu_capability=_gpu_capability(torch, backend),
        gpu_arch=_rocm_gpu_arch(torch, backend),
    )


def normalize_cpu(machine: str) -> str:
    """platform.machine() in variant terms: arm64 -> aarch64, AMD64 -> x86_64."""
    return _CPU_ALIASES.get(machine.lower(), machine)


def select_backend(system: SystemInfo, backend: str | None) -> SystemInfo:
    """The system as seen when loading for `backend`: None keeps torch's own backend,
    "cpu" forces CPU variants; any other backend must be the one torch was built for."""
    if backend is None or backend == system.backend:
        return system
    if backend == "cpu":
        return dataclasses.replace(
            system, backend="cpu", backend_version=None, gpu_capability=None, gpu_arch=None
        )
    raise ValueError(
        f"backend {backend!r} cannot be loaded here: this torch supports "
        f"{', '.join(sorted({'cpu', system.backend}))}"
    )


def system_variant_names(system: SystemInfo) -> list[str]:
    """The arch variants this system builds and loads: its backend's, then the CPU one.

    e.g. ["torch214-cxx11-cu130-x86_64-linux", "torch214-cxx11-cpu-x86_64-linux"].
    Raises VariantError when the system has no variant name (no torch, an unnamed OS or CPU).
    """
    if system.torch is None:
        raise VariantError("torch is not installed, so this system has no arch variant name")
    backends = [(system.backend, system.backend_version)]
    if system.backend != "cpu":
        backends.append(("cpu", None))
    return [
        format_variant(
            ArchVariant(system.torch, system.cxx11, backend, version, system.cpu, system.os)
        )
        for backend, version in backends
    ]


def _torch_backend(torch) -> tuple[str, tuple[int, int] | None]:
    # ROCm builds of torch set torch.version.hip and leave torch.version.cuda None.
    if getattr(torch.version, "hip", None):
        return "rocm", _major_minor(torch.version.hip)
    if getattr(torch.version, "cuda", None):
        return "cuda", _major_minor(torch.version.cuda)
    if importlib.util.find_spec("torch_npu") is not None:
        return "npu", _cann_version()
    return "cpu", None


def _cann_version() -> tuple[int, int] | None:
    try:
        from torch_npu.utils.collect_env import get_cann_version

        return _major_minor(str(get_cann_version()))
    except Exception:
        return None


def _gpu_capability(torch, backend: str) -> tuple[int, int] | None:
    if backend != "cuda" or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return int(major), int(minor)


def _rocm_gpu_arch(torch, backend: str) -> str | None:
    if backend != "rocm" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_properties(torch.cuda.current_device()).gcnArchName
    # gcnArchName carries feature flags: "gfx90a:sramecc+:xnack-" -> "gfx90a".
    return name.split(":")[0]


def _major_minor(version: str) -> tuple[int, int] | None:
    match = _VERSION_RE.match(version)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))
