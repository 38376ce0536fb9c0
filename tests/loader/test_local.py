"""get_local_kernel on synthetic variant directories, the explanation, LOCAL_KERNELS."""

import json
import logging
import sys
import uuid
from pathlib import Path

import pytest

import kernel_hub
from kernel_hub import (
    NoCompatibleVariantError,
    SystemInfo,
    get_kernel,
    get_kernel_variants_local,
    get_local_kernel,
    local_kernel_overrides,
)

H100 = SystemInfo((2, 14), True, "cuda", (13, 0), "x86_64", "linux", gpu_capability=(9, 0))
CU130 = "torch214-cxx11-cu130-x86_64-linux"
CPU = "torch214-cxx11-cpu-x86_64-linux"
OLD_TORCH = "torch211-cxx11-cu130-x86_64-linux"


@pytest.fixture(autouse=True)
def this_system_is_an_h100(monkeypatch):
    monkeypatch.setattr(kernel_hub.local, "detect_system", lambda: H100)


@pytest.fixture(autouse=True)
def forget_imported_variants(monkeypatch):
    before = set(sys.modules)
    monkeypatch.setattr(kernel_hub.importer, "_imported_by_dir", {})
    yield
    for name in set(sys.modules) - before:
        if name.startswith("_tk_test_"):
            del sys.modules[name]


def write_variant(variant_dir: Path, archs: list[str] | None = None, backend: str = "cuda") -> str:
    """A variant whose __init__ imports a sibling module relatively; returns its module id."""
    module_id = f"_tk_test_{uuid.uuid4().hex[:10]}"
    variant_dir.mkdir(parents=True)
    metadata = {"id": module_id, "name": "tk-test", "version": 1, "license": "Apache-2.0",
                "python-depends": [], "backend": {"type": backend, "archs": archs or []}}
    (variant_dir / "metadata.json").write_text(json.dumps(metadata))
    (variant_dir / "__init__.py").write_text("from ._ops import VARIANT\n")
    (variant_dir / "_ops.py").write_text(f"VARIANT = {variant_dir.name!r}\n")
    return module_id


def test_loads_the_best_variant_under_build(tmp_path):
    module_id = write_variant(tmp_path / "build" / CU130)
    write_variant(tmp_path / "build" / CPU)
    write_variant(tmp_path / "build" / OLD_TORCH)

    module = get_local_kernel(tmp_path)

    assert module.VARIANT == CU130
    assert module.__name__ == module_id
    assert sys.modules[module_id] is module
    assert sys.modules[f"{module_id}._ops"].VARIANT == CU130
    assert get_local_kernel(str(tmp_path)) is module


def test_backend_cpu_forces_the_cpu_variant(tmp_path):
    write_variant(tmp_path / "build" / CU130)
    write_variant(tmp_path / "build" / CPU)

    assert get_local_kernel(tmp_path, backend="cpu").VARIANT == CPU


def test_variants_directly_in_the_given_directory(tmp_path):
    write_variant(tmp_path / CPU)
    (tmp_path / "notes").mkdir()

    assert get_local_kernel(tmp_path).VARIANT == CPU


def test_the_given_directory_is_one_variant(tmp_path):
    write_variant(tmp_path / CU130)
    assert get_local_kernel(tmp_path / CU130).VARIANT == CU130


def test_a_variant_directory_with_any_name_loads_as_given(tmp_path):
    write_variant(tmp_path / "my-copy")
    decisions = get_kernel_variants_local(tmp_path / "my-copy")
    assert decisions[0].accepted and "not checked" in decisions[0].reason
    assert get_local_kernel(tmp_path / "my-copy").VARIANT == "my-copy"


def test_a_named_variant_directory_is_still_checked(tmp_path):
    write_variant(tmp_path / OLD_TORCH)
    with pytest.raises(NoCompatibleVariantError, match="built for torch 2.11"):
        get_local_kernel(tmp_path / OLD_TORCH)


def test_gpu_archs_decide_between_variants(tmp_path):
    write_variant(tmp_path / "build" / CU130, archs=["10.0", "12.0"])
    write_variant(tmp_path / "build" / CPU, backend="cpu")

    assert get_local_kernel(tmp_path).VARIANT == CPU
    rejected = [d for d in get_kernel_variants_local(tmp_path) if not d.accepted]
    assert [(d.name, d.reason) for d in rejected] == [
        (CU130, "rejected: built for CUDA archs 10.0, 12.0, none of which runs on this GPU "
                "(compute capability 9.0)")
    ]


def test_nested_package_layout(tmp_path):
    variant_dir = tmp_path / "build" / CU130
    write_variant(variant_dir)
    package_dir = variant_dir / "tk_pkg"
    package_dir.mkdir()
    (variant_dir / "__init__.py").rename(package_dir / "__init__.py")
    (variant_dir / "_ops.py").rename(package_dir / "_ops.py")

    assert get_local_kernel(tmp_path, package_name="tk_pkg").VARIANT == CU130


def test_the_error_explains_every_variant(tmp_path):
    write_variant(tmp_path / "build" / OLD_TORCH)
    write_variant(tmp_path / "build" / "torch214-cxx11-cu130-aarch64-linux")
    write_variant(tmp_path / "build" / "torch-rocm")
    (tmp_path / "build" / "torch214-cxx11-cu128-x86_64-linux").mkdir()
    broken = tmp_path / "build" / "torch-cuda"
    write_variant(broken)
    (broken / "metadata.json").write_text("{not json")

    with pytest.raises(NoCompatibleVariantError) as raised:
        get_local_kernel(tmp_path)

    assert str(raised.value).splitlines() == [
        f"No compatible kernel variant in {tmp_path / 'build'} for this system "
        "(torch 2.14 (cxx11 ABI), CUDA 13.0, x86_64 linux, GPU compute capability 9.0).",
        "Variants considered:",
        "  torch-rocm: rejected: a noarch ROCm build, this environment's torch is built for CUDA 13.0",
        "  torch211-cxx11-cu130-x86_64-linux: rejected: built for torch 2.11, this environment has torch 2.14",
        "  torch214-cxx11-cu130-aarch64-linux: rejected: built for aarch64 CPUs, this machine is x86_64",
        "  torch-cuda: rejected: its metadata.json cannot be read (Expecting property name enclosed "
        "in double quotes: line 1 column 2 (char 1))",
        "  torch214-cxx11-cu128-x86_64-linux: rejected: it has no metadata.json",
    ]
    assert isinstance(raised.value, ImportError)
    assert raised.value.system == H100
    assert len(raised.value.decisions) == 5


def test_no_variants_at_all(tmp_path):
    with pytest.raises(NoCompatibleVariantError, match="No variant directories were found"):
        get_local_kernel(tmp_path)


def test_a_failed_import_leaves_no_half_imported_module(tmp_path):
    module_id = write_variant(tmp_path / CPU)
    (tmp_path / CPU / "_ops.py").write_text("raise RuntimeError('broken build')\n")

    with pytest.raises(RuntimeError, match="broken build") as raised:
        get_local_kernel(tmp_path)

    assert not [name for name in sys.modules if name.startswith(module_id)]
    assert any("while importing kernel variant" in note for note in raised.value.__notes__)


def test_the_choice_is_logged(tmp_path, caplog):
    write_variant(tmp_path / "build" / CU130)
    with caplog.at_level(logging.INFO, logger="kernel_hub"):
        get_local_kernel(tmp_path)
    assert f"loading kernel variant {CU130}" in caplog.text
    assert "runs on this environment's CUDA 13.0" in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("org/repo=/path/a", {"org/repo": Path("/path/a")}),
        ("org/a=/x:org/b=/y/z", {"org/a": Path("/x"), "org/b": Path("/y/z")}),
        ("org/a=/x::", {"org/a": Path("/x")}),
        ("org/a=/with=equals", {"org/a": Path("/with=equals")}),
        ("", {}),
    ],
)
def test_local_kernel_overrides(value, expected):
    assert local_kernel_overrides(value) == expected


@pytest.mark.parametrize("value", ["org/repo", "=/path", "org/repo="])
def test_malformed_local_kernels_entries(value):
    with pytest.raises(ValueError, match=f"LOCAL_KERNELS entry {value!r} is not repo_id=path"):
        local_kernel_overrides(value)


def test_local_kernels_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOCAL_KERNELS", "org/repo=/somewhere")
    assert local_kernel_overrides() == {"org/repo": Path("/somewhere")}
    monkeypatch.delenv("LOCAL_KERNELS")
    assert local_kernel_overrides() == {}


def test_get_kernel_serves_local_kernels(tmp_path, monkeypatch):
    write_variant(tmp_path / "build" / CU130)
    write_variant(tmp_path / "build" / CPU)
    monkeypatch.setenv("LOCAL_KERNELS", f"org/other=/nowhere:org/transformer-kernels={tmp_path}")

    assert get_kernel("org/transformer-kernels", version=1).VARIANT == CU130
    assert get_kernel("org/transformer-kernels", version=1, backend="cpu").VARIANT == CPU
