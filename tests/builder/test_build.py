"""kernel-builder build on a tiny kernel project: planning, namespace determinism,
incremental rebuilds, atomic staging, and the staged variant importing through kernel_hub."""

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_builder.build import BuildOptions, _describe, build_all, format_table
from kernel_builder.config import load_config
from kernel_builder.plan import plan_variants
from kernel_builder.stage import STAGING_PREFIX
from kernel_builder.toolchain import detect_toolchain

TINY = Path(__file__).with_name("tiny_project")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "project"
    shutil.copytree(TINY, root)
    return root


def _build(project: Path):
    log = io.StringIO()
    config = load_config(project / "build.toml")
    results = build_all(config, detect_toolchain(), BuildOptions(out_dir=project / "build"), log)
    built = {r.name: r for r in results if r.status != "skipped"}
    return built, log.getvalue(), results


def _cpu_variant(built):
    (name,) = [n for n in built if "-cpu-" in n]
    return built[name]


def _metadata(result) -> dict:
    return json.loads((result.path / "metadata.json").read_text())


def test_first_build_stages_a_complete_variant_that_imports(project):
    built, log, results = _build(project)
    result = _cpu_variant(built)
    assert result.status == "built", format_table(results)
    files = sorted(p.name for p in result.path.iterdir())
    meta = _metadata(result)
    assert files == sorted(["__init__.py", "_ops.py", "metadata.json", f"{meta['id']}.abi3.so"])
    assert meta["id"].startswith("_tiny_kernels_cpu_")
    assert meta["backend"] == {"type": "cpu"}
    assert set(meta["digest"]["files"]) == {"__init__.py", "_ops.py", f"{meta['id']}.abi3.so"}
    code = (
        "import torch, kernel_hub; "
        f"k = kernel_hub.get_local_kernel({str(result.path)!r}); "
        "print(k.scale(torch.arange(3.0), 2.0).tolist())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "loader"), str(ROOT / "builder")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[0.0, 2.0, 4.0]"


def test_second_build_with_nothing_changed_compiles_nothing(project):
    built, log, _ = _build(project)
    assert _cpu_variant(built).status == "up to date"
    assert "no work to do" in log


def test_editing_one_source_recompiles_only_its_users(project):
    before = _metadata(_cpu_variant(_build(project)[0]))
    source = project / "csrc" / "scale.cpp"
    source.write_text(source.read_text() + "// edited\n")
    built, log, _ = _build(project)
    after = _metadata(_cpu_variant(built))
    assert _cpu_variant(built).status == "built"
    assert after["id"] != before["id"], "a changed source must give a new op namespace"
    assert "scale.cpp" in log and "LINK" in log
    assert "binding.cpp" not in log, "the binding does not depend on the kernel source"


def test_failed_build_leaves_the_previous_variant_intact(project):
    result = _cpu_variant(_build(project)[0])
    before = _metadata(result)
    source = project / "csrc" / "scale.cpp"
    good = source.read_text()
    source.write_text(good + "this is not C++;\n")
    try:
        built, _, _ = _build(project)
    finally:
        source.write_text(good)
    failed = _cpu_variant(built)
    assert failed.status == "failed" and "not C++" in failed.detail
    assert _metadata(result) == before
    assert not [p for p in (project / "build").iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_namespace_is_deterministic_and_covers_the_toolchain(project):
    config = load_config(project / "build.toml")
    toolchain = detect_toolchain()
    planned, _ = plan_variants(config, toolchain)
    variant = [p for p in planned if p.is_arch][0]
    options = BuildOptions(out_dir=project / "build")
    first = _describe(config, toolchain, variant, options).namespace
    assert _describe(config, toolchain, variant, options).namespace == first
    other_torch = dataclasses.replace(toolchain, torch_version="2.14.2+cu130")
    assert _describe(config, other_torch, variant, options).namespace != first


def _fake_ninja(tmp_path: Path, output: str, rc: int = 0) -> str:
    script = tmp_path / "ninja"
    script.write_text(f"#!/bin/sh\ncat <<'OUT'\n{output}\nOUT\nexit {rc}\n")
    script.chmod(0o755)
    return str(script)


def test_ptxas_slow_code_advisory_fails_the_build_and_drops_the_object(tmp_path, monkeypatch):
    from kernel_builder import build

    work_dir = tmp_path / "work"
    flagged = work_dir / "obj" / "flash_attn" / "fwd_hdim64.cu.o"
    clean = work_dir / "obj" / "flash_attn" / "fwd_hdim128.cu.o"
    for obj in (flagged, clean):
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(b"\0")
    advisory = ("ptxas info    : (C7518) Potential Performance Loss: wgmma.mma_async instructions "
                "are serialized due to program dependence on compiler-inserted WG.DP")
    output = "\n".join([
        "[1/3 2.0s] NVCC /src/kernel_src/flash_attn/fwd_hdim128.cu",
        "[2/3 4.0s] NVCC /src/kernel_src/flash_attn/fwd_hdim64.cu",
        advisory,
        "[3/3 5.0s] LINK _tk.abi3.so",
    ])
    monkeypatch.setattr(build, "find_ninja", lambda: _fake_ninja(tmp_path, output))
    with pytest.raises(build.BuildFailed) as failure:
        build.run_ninja(work_dir, None, io.StringIO())
    message = str(failure.value)
    assert "/src/kernel_src/flash_attn/fwd_hdim64.cu:" in message
    assert "C7518" in message and "fwd_hdim128" not in message
    assert not flagged.exists() and clean.exists()


def test_ninja_output_without_advisories_passes(tmp_path, monkeypatch):
    from kernel_builder import build

    output = "[1/2 2.0s] NVCC /src/a.cu\nptxas info    : 0 bytes stack frame\n[2/2 3.0s] LINK x.so"
    monkeypatch.setattr(build, "find_ninja", lambda: _fake_ninja(tmp_path, output))
    log = io.StringIO()
    build.run_ninja(tmp_path, 2, log)
    assert "0 bytes stack frame" in log.getvalue()
    assert build.slow_code_advisories(output.splitlines()) == {}
