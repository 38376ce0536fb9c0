"""What this environment can build with: Python, torch, CUDA, compilers, CPU and OS.

Detected from the running interpreter, which is the "active torch" a build targets. The
identity (`Toolchain.identity()`) goes into the op-namespace hash and metadata provenance.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


class ToolchainError(RuntimeError):
    """The environment lacks something a build needs (torch, a compiler)."""


@dataclass(frozen=True)
class Toolchain:
    python: Path
    python_include: Path
    torch_version: str          # full, e.g. "2.14.1+cu130"
    torch_dir: Path
    cxx11_abi: bool
    torch_cuda: str | None      # torch.version.cuda, e.g. "13.0"
    nvcc: Path | None
    nvcc_version: str | None    # e.g. "13.0"
    cuda_home: Path | None
    cxx: str
    cxx_version: str
    cpu: str                    # x86_64 | aarch64
    os: str                     # linux
    triton_version: str | None

    @property
    def torch_major_minor(self) -> tuple[int, int]:
        major, minor = self.torch_version.split("+")[0].split(".")[:2]
        return int(major), int(minor)

    @property
    def can_build_cuda(self) -> bool:
        return (
            self.torch_cuda is not None
            and self.nvcc_version is not None
            and self.nvcc_version.split(".")[0] == self.torch_cuda.split(".")[0]
        )

    def cuda_version_tuple(self) -> tuple[int, int]:
        assert self.torch_cuda is not None
        major, minor = self.torch_cuda.split(".")[:2]
        return int(major), int(minor)

    def cuda_include_dirs(self) -> list[Path]:
        """CUDA headers, plus the nvidia wheels' headers that ATen's CUDA headers include."""
        dirs = [self.cuda_home / "include"] if self.cuda_home else []
        site = self.torch_dir.parent / "nvidia"
        dirs += sorted(p for p in site.glob("*/include") if p.is_dir())
        return dirs

    def cuda_lib_dir(self) -> Path | None:
        if self.cuda_home is None:
            return None
        for name in ("lib64", "lib"):
            if (self.cuda_home / name).is_dir():
                return self.cuda_home / name
        return None

    def identity(self) -> dict[str, str | bool | None]:
        """What makes two builds of the same sources differ."""
        return {
            "torch": self.torch_version,
            "cxx11_abi": self.cxx11_abi,
            "torch_cuda": self.torch_cuda,
            "nvcc": self.nvcc_version,
            "cxx": self.cxx_version,
            "cpu": self.cpu,
            "os": self.os,
        }


def normalize_cpu(machine: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


@functools.cache
def detect_toolchain() -> Toolchain:
    try:
        import torch
    except ImportError as error:
        raise ToolchainError(
            "kernel-builder needs torch in the active environment (the variant is built for "
            f"it): {error}"
        ) from error
    cuda_home = _cuda_home()
    nvcc = cuda_home / "bin" / "nvcc" if cuda_home else None
    cxx = os.environ.get("CXX", "g++")
    return Toolchain(
        python=Path(sys.executable),
        python_include=Path(sysconfig.get_paths()["include"]),
        torch_version=torch.__version__,
        torch_dir=Path(torch.__file__).parent,
        cxx11_abi=bool(torch.compiled_with_cxx11_abi()),
        torch_cuda=torch.version.cuda,
        nvcc=nvcc,
        nvcc_version=_nvcc_version(nvcc) if nvcc else None,
        cuda_home=cuda_home,
        cxx=cxx,
        cxx_version=_first_line([cxx, "--version"]) or "unknown",
        cpu=normalize_cpu(platform.machine()),
        os=platform.system().lower(),
        triton_version=_triton_version(),
    )


def _cuda_home() -> Path | None:
    """The first candidate holding both nvcc and the CUDA runtime headers.

    torch guesses /usr/local when CUDA_HOME is unset, and an `nvcc` on PATH may be a wrapper
    script (this CI image has /usr/local/bin/nvcc exec'ing /usr/local/cuda-13.0/bin/nvcc), so
    a home is only accepted where include/cuda_runtime.h exists.
    """
    nvcc = shutil.which("nvcc")
    candidates = [
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        "/usr/local/cuda",
        str(Path(nvcc).resolve().parent.parent) if nvcc else None,
    ]
    for candidate in filter(None, candidates):
        home = Path(candidate)
        if (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists():
            return home
    return None


def _nvcc_version(nvcc: Path) -> str | None:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.splitlines()[0].strip() if out else None


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__
