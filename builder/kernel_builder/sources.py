"""The files a variant is made of, and the content hash that names its op namespace."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import __version__
from .config import BuildConfig, KernelConfig

NATIVE_SUFFIXES = frozenset({".h", ".hpp", ".cuh", ".c", ".cc", ".cpp", ".cu", ".inc"})
GENERATED_PACKAGE_FILES = frozenset({"_ops.py"})
TEMPLATES = Path(__file__).with_name("templates")
MODULE_INIT_TEMPLATE = TEMPLATES / "module_init.c"
GLIBC_COMPAT_SOURCE = TEMPLATES / "glibc_compat.c"


def package_dir(config: BuildConfig) -> Path:
    """The Python package every variant is built from: torch-ext/<python_name>/."""
    return config.root / "torch-ext" / config.general.python_name


def python_kernel_files(config: BuildConfig, kernel_backends: tuple[str, ...]) -> list[Path]:
    """Python kernel sources (Triton, NPU) copied into the variant beside the package."""
    return [
        src
        for backend in kernel_backends
        for kernel in config.kernels_for(backend)
        for src in kernel.src
        if src.suffix == ".py"
    ]


def generated_in_place_names(config: BuildConfig) -> set[str]:
    """Files an in-place install writes into the package dir; never copied from it."""
    names = set(GENERATED_PACKAGE_FILES)
    names.update(p.name for k in config.kernels for p in k.src if p.suffix == ".py")
    return names


def package_files(config: BuildConfig) -> list[Path]:
    skip = generated_in_place_names(config)
    files = [
        p
        for p in sorted(package_dir(config).rglob("*.py"))
        if p.name not in skip and "__pycache__" not in p.parts
    ]
    return files + list(config.torch.python_src)


def native_kernels(config: BuildConfig, kernel_backends: tuple[str, ...]) -> list[KernelConfig]:
    return [
        k for b in kernel_backends if b in ("cuda", "rocm", "cpu") for k in config.kernels_for(b)
    ]


def native_inputs(config: BuildConfig, kernel_backends: tuple[str, ...]) -> list[Path]:
    """Every native file that can reach the compiled extension: sources, the binding, and
    each source or header under the include dirs (headers are found by the depfiles at
    compile time, but the namespace must be known before compiling)."""
    kernels = native_kernels(config, kernel_backends)
    files = set(config.torch.src) | {MODULE_INIT_TEMPLATE, GLIBC_COMPAT_SOURCE}
    include_dirs = set(config.torch.include)
    for kernel in kernels:
        files.update(kernel.src)
        include_dirs.update(kernel.include)
    for directory in include_dirs:
        files.update(p for p in directory.rglob("*") if p.suffix in NATIVE_SUFFIXES)
    return sorted(files)


def content_hash(
    config: BuildConfig, files: list[Path], identity: dict, flags: dict
) -> str:
    """sha256 over build.toml, the files (path and content), toolchain identity and flags."""
    sha = hashlib.sha256()
    sha.update(config.path.read_bytes())
    for path in sorted(set(files)):
        sha.update(_relative(path, config.root).encode())
        sha.update(hashlib.sha256(path.read_bytes()).digest())
    meta = {"identity": identity, "flags": flags, "builder": __version__}
    sha.update(json.dumps(meta, sort_keys=True).encode())
    return sha.hexdigest()


def op_namespace(config: BuildConfig, label: str, digest: str) -> str:
    return f"_{config.general.python_name}_{label}_{digest[:10]}"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
