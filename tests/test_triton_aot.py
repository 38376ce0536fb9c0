"""Every Triton kernel compiles ahead of time for sm_80, sm_90 and gfx942, no GPU needed.

The kernels and their representative configurations come from AOT_SPECS in each
kernel_src/<kernel>/*_triton.py, so a kernel added to any of them is compiled here too.

The compiling happens in a child process running this file as a script. Reason: without a GPU,
conftest sets TRITON_INTERPRET=1 before Triton is imported, and Triton then builds its own
library functions (tl.sum's combine function, tl.cdiv, ...) for the interpreter, which
triton.compile cannot use. The child starts with the variable removed.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCES = sorted((Path(__file__).resolve().parents[1] / "kernel_src").glob("*/*_triton.py"))
TARGET_NAMES = ("sm_80", "sm_90", "gfx942")


@dataclasses.dataclass(frozen=True)
class AotSpec:
    """One kernel in one configuration, in the form triton.compile's ASTSource takes."""

    name: str
    dtype: str  # Triton's name of the tensors' element type: "fp32", "fp16" or "bf16"
    fn: object
    signature: dict  # runtime arguments and constexprs (marked "constexpr")
    constexprs: dict
    num_warps: int


def _aot_specs() -> list[AotSpec]:
    """AOT_SPECS of every Triton kernel source, in file order. Each source declares
    AOT_SPECS = [(dtype, kernel, runtime signature, constexprs, num_warps), ...]."""
    specs = []
    for source in SOURCES:
        loader_spec = importlib.util.spec_from_file_location(f"{source.stem}_under_test", source)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        for dtype, fn, signature, constexprs, num_warps in module.AOT_SPECS:
            full_signature = {**signature, **{key: "constexpr" for key in constexprs}}
            specs.append(AotSpec(fn.__name__, dtype, fn, full_signature, constexprs, num_warps))
    return specs


def _case_id(spec, target_name: str) -> str:
    return f"{spec.name}-{spec.dtype}-{target_name}"


def compile_every_spec() -> dict:
    """{case id: what the compiled kernel contains, or the error}; runs in the child process."""
    import triton
    from triton.backends.compiler import GPUTarget

    targets = {
        "sm_80": GPUTarget("cuda", 80, 32),
        "sm_90": GPUTarget("cuda", 90, 32),
        "gfx942": GPUTarget("hip", "gfx942", 64),
    }
    # Per backend: the assembly text and the binary triton.compile produces.
    artifacts = {"cuda": ("ptx", "cubin"), "hip": ("amdgcn", "hsaco")}

    results = {}
    for spec in _aot_specs():
        for target_name, target in targets.items():
            source = triton.compiler.ASTSource(fn=spec.fn, signature=spec.signature, constexprs=spec.constexprs)
            try:
                compiled = triton.compile(source, target=target, options={"num_warps": spec.num_warps})
            except Exception as error:  # reported by the test of this case, with the others still run
                results[_case_id(spec, target_name)] = {"error": f"{type(error).__name__}: {error}"}
                continue
            assembly_key, binary_key = artifacts[target.backend]
            assembly, binary = compiled.asm[assembly_key], compiled.asm[binary_key]
            results[_case_id(spec, target_name)] = {
                "assembly": assembly_key,
                "assembly_names_kernel": spec.name in assembly,
                "binary": binary_key,
                "binary_bytes": len(binary),
                "binary_names_kernel": spec.name.encode() in binary,
            }
    return results


@pytest.fixture(scope="module")
def compiled_cases(tmp_path_factory) -> dict:
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("triton_aot") / "results.json"
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    child = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, f"AOT compile process failed:\n{child.stderr[-4000:]}"
    return json.loads(out.read_text())


def _cases():
    try:
        specs = _aot_specs()
    except ImportError:  # no Triton here: the fixture skips every case
        return [pytest.param("triton-missing", id="triton-missing")]
    return [_case_id(spec, target) for spec in specs for target in TARGET_NAMES]


@pytest.mark.parametrize("case", _cases())
def test_kernel_compiles(compiled_cases, case):
    result = compiled_cases[case]
    assert "error" not in result, f"{case}: {result.get('error')}"
    assert result["assembly_names_kernel"], f"{case}: {result['assembly']} does not name the kernel"
    assert result["binary_bytes"] > 0, f"{case}: {result['binary']} is empty"
    assert result["binary_names_kernel"], f"{case}: {result['binary']} does not name the kernel"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(compile_every_spec()))
