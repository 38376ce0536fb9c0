"""Writes the build.ninja of one compiled variant.

Each source compiles to one object with a depfile (so a header change recompiles exactly
its users); the generated module init (PyInit_<namespace>) is the only object that depends
on the namespace, so a new namespace costs one tiny C compile and a relink.
"""

from __future__ import annotations

import functools
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_CUDA_CAPABILITIES, BuildConfig, KernelConfig
from .sources import GLIBC_COMPAT_SOURCE, MODULE_INIT_TEMPLATE, native_kernels
from .toolchain import Toolchain

# Host flags for every C++ object: the defaults torch's own extensions build with. Both
# -fvisibility=hidden and -fno-gnu-unique were tried and dropped: with g++ 13 (the GPU
# machine's compiler) the extension then bound its own copy of a libstdc++ locale facet id
# instead of libstdc++'s, and the first std::ostream use (a TORCH_CHECK message) crashed.
HOST_FLAGS = ["-O3", "-fPIC", "-DNDEBUG"]
NVCC_FLAGS = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo", "-DNDEBUG"]


@dataclass(frozen=True)
class NinjaPlan:
    work_dir: Path
    ninja_file: Path
    library: Path          # the linked extension inside work_dir
    changed: bool          # build.ninja was (re)written


def gencode_flags(capabilities: tuple[str, ...]) -> list[str]:
    """SASS for every capability, PTX for the highest so newer GPUs can JIT it.

    An arch-specific capability ("9.0a") gets its own SASS, but the PTX is the plain one
    ("compute_90"): arch-specific PTX runs on that one architecture only. Each capability is
    also named to the source as a macro (9.0a -> TK_CUDA_SM_90A, 8.0 -> TK_CUDA_SM_80), so that
    host code can tell which arch-specific kernels exist in this build.
    """
    flags = []
    for cap in capabilities:
        arch = cap.replace(".", "").replace("+PTX", "")
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}", f"-DTK_CUDA_SM_{arch.upper()}"]
    top = max(capabilities, key=_capability_key).replace(".", "").replace("+PTX", "")
    top = top.rstrip("a")
    flags += ["-gencode", f"arch=compute_{top},code=compute_{top}"]
    return flags


def kernel_capabilities(
    kernel: KernelConfig, override: tuple[str, ...] | None
) -> tuple[str, ...]:
    """`--arch` wins over the kernel's `cuda-capabilities`, which wins over the default.

    `--arch 9.0` picks the capability; a kernel that declares its arch-specific form ("9.0a":
    wgmma, setmaxnreg) keeps that form, since its sources need it.
    """
    if not override:
        return kernel.cuda_capabilities or DEFAULT_CUDA_CAPABILITIES
    declared = set(kernel.cuda_capabilities or ())
    return tuple(
        cap.replace("+PTX", "") + "a" + ("+PTX" if cap.endswith("+PTX") else "")
        if cap.replace("+PTX", "") + "a" in declared
        else cap
        for cap in override
    )


def _capability_key(cap: str) -> tuple[int, int, str]:
    base = cap.replace("+PTX", "")
    suffix = base[-1] if base[-1].isalpha() else ""
    major, minor = base.rstrip("af").split(".")
    return int(major), int(minor), suffix


def write_ninja(
    config: BuildConfig,
    kernel_backends: tuple[str, ...],
    toolchain: Toolchain,
    namespace: str,
    cuda_arch_override: tuple[str, ...] | None,
    work_dir: Path,
) -> NinjaPlan:
    work_dir.mkdir(parents=True, exist_ok=True)
    with_cuda = "cuda" in kernel_backends
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(toolchain.cxx11_abi)}"
    torch_inc = [
        toolchain.torch_dir / "include",
        toolchain.torch_dir / "include" / "torch" / "csrc" / "api" / "include",
    ]
    cuda_inc = toolchain.cuda_include_dirs() if with_cuda else []
    lines = [
        "ninja_required_version = 1.3",
        f"cxx = {shlex.quote(toolchain.cxx)}",
        f"cc = {shlex.quote(_c_compiler(toolchain.cxx))}",
        f"nvcc = {shlex.quote(str(toolchain.nvcc)) if toolchain.nvcc else 'nvcc'}",
        "",
        "rule cxx",
        "  command = $cxx $flags -MMD -MF $out.d -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CXX $in",
        "rule cc",
        "  command = $cc $flags -MMD -MF $out.d -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CC $in",
        "rule nvcc",
        "  command = $nvcc $flags -MD -MF $out.d -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = NVCC $in",
        "rule link",
        "  command = $cxx -shared $in -o $out $ldflags",
        "  description = LINK $out",
        "",
    ]
    objects: list[str] = []
    include = _include_flags(config.torch.include)

    binding_flags = (
        ["-std=c++20", *HOST_FLAGS, abi, *include, *_include_flags(torch_inc), *_include_flags(cuda_inc)]
        + (["-DTK_WITH_CUDA"] if with_cuda else [])
        + list(config.torch.cxx_flags)
    )
    for src in config.torch.src:
        if src.suffix in (".cpp", ".cc", ".c"):
            objects.append(_build_line(lines, "cxx", src, "binding", binding_flags))

    for kernel in native_kernels(config, kernel_backends):
        caps = kernel_capabilities(kernel, cuda_arch_override)
        flags = _kernel_flags(kernel, abi, include, torch_inc, caps)
        rule = "nvcc" if kernel.backend == "cuda" else "cxx"
        for src in kernel.src:
            if src.suffix in (".cu", ".cpp", ".cc", ".c"):
                objects.append(_build_line(lines, rule, src, kernel.name, flags))

    init_flags = ["-O2", "-fPIC", "-fvisibility=hidden", f"-I{toolchain.python_include}",
                  f"-DTORCH_EXTENSION_NAME={namespace}"]
    objects.append(_build_line(lines, "cc", MODULE_INIT_TEMPLATE, "module", init_flags))
    objects.append(_build_line(lines, "cc", GLIBC_COMPAT_SOURCE, "module", ["-O2", "-fPIC"]))

    library = work_dir / f"{namespace}.abi3.so"
    ldflags = _link_flags(config, kernel_backends, toolchain)
    lines.append(f"build {_esc(library.name)}: link {' '.join(objects)}")
    lines.append(f"  ldflags = {' '.join(ldflags)}")
    lines.append(f"default {_esc(library.name)}")
    text = "\n".join(lines) + "\n"

    ninja_file = work_dir / "build.ninja"
    changed = not ninja_file.exists() or ninja_file.read_text() != text
    if changed:
        ninja_file.write_text(text)
    return NinjaPlan(work_dir, ninja_file, library, changed)


def _kernel_flags(kernel: KernelConfig, abi, include, torch_inc, capabilities):
    uses_torch = "torch" in kernel.depends
    extra_inc = _include_flags(kernel.include) + (_include_flags(torch_inc) if uses_torch else [])
    openmp = ["-fopenmp"] if "openmp" in kernel.depends else []
    if kernel.backend == "cuda":
        host = ",".join([*HOST_FLAGS, abi, *openmp, *kernel.cxx_flags])
        std = ["-std=c++20"] if uses_torch else []
        return [*NVCC_FLAGS, *std, f"-Xcompiler={host}", *gencode_flags(capabilities),
                *include, *extra_inc, *kernel.cuda_flags]
    std = "-std=c++20" if uses_torch else "-std=c++17"
    return [std, *HOST_FLAGS, abi, *openmp, *include, *extra_inc, *kernel.cxx_flags]


def _link_flags(config, kernel_backends, toolchain: Toolchain) -> list[str]:
    # No rpath: torch is imported first and has loaded libc10/libtorch/libcudart/libgomp,
    # which the dynamic linker then finds by soname.
    flags = [f"-L{toolchain.torch_dir / 'lib'}", "-lc10", "-ltorch_cpu", "-ltorch"]
    flags += shared_libstdcxx_flags(toolchain.cxx)
    if "cuda" in kernel_backends:
        flags += ["-lc10_cuda", "-ltorch_cuda"]
        lib = toolchain.cuda_lib_dir()
        flags += ([f"-L{lib}"] if lib else []) + ["-lcudart"]
    if any("openmp" in k.depends for k in native_kernels(config, kernel_backends)):
        flags.append("-fopenmp")
    return [shlex.quote(f) for f in flags]


@functools.cache
def shared_libstdcxx_flags(cxx: str) -> list[str]:
    """Makes the link use the shared libstdc++ even where g++ finds only libstdc++.a.

    The GPU machine's g++ 13 has no libstdc++.so to link against, so `-lstdc++` silently
    embedded a static copy; its locale facets differ from the process's libstdc++ and the
    first std::ostream use crashed. Naming the runtime library by path avoids the archive.
    """
    if Path(_print_file_name(cxx, "libstdc++.so")).is_file():
        return []
    runtime = Path(_print_file_name(cxx, "libstdc++.so.6"))
    return [str(runtime)] if runtime.is_file() else []


def _print_file_name(cxx: str, name: str) -> str:
    try:
        out = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True)
    except OSError:
        return name
    return out.stdout.strip()


def _build_line(lines: list[str], rule: str, src: Path, group: str, flags: list[str]) -> str:
    obj = f"obj/{group}/{src.name}.o"
    lines.append(f"build {_esc(obj)}: {rule} {_esc(str(src))}")
    lines.append(f"  flags = {' '.join(shlex.quote(f) for f in flags)}")
    return _esc(obj)


def _include_flags(dirs) -> list[str]:
    return [f"-I{d}" for d in dirs]


def _esc(path: str) -> str:
    return path.replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def _c_compiler(cxx: str) -> str:
    return cxx[:-3] + "gcc" if cxx.endswith("g++") else "cc"
