"""`kernel-builder check` on small synthetic variant directories (real shared objects from gcc)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from kernel_builder.check import CheckResult, check_build_dir, check_variant
from kernel_hub.digest import variant_digests
from kernel_builder.elf_reader import read_elf
from kernel_hub.variants import ArchVariant, format_variant

NAME = "corpus-kernels"
NOARCH_ID = "_corpus_kernels_triton_0123456789"
ARCH_ID = "_corpus_kernels_cpu_abcdef0123"
GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")

OPS_SOURCE = (
    'NAMESPACE = "{id}"\n\n\n'
    "def add_op_namespace_prefix(op_name):\n"
    '    return f"{{NAMESPACE}}::{{op_name}}"\n'
)
INIT_SOURCE = "from ._ops import add_op_namespace_prefix\nfrom . import layers\n"
LAYERS_SOURCE = (
    "from ._ops import add_op_namespace_prefix\n\nRMS_NORM = add_op_namespace_prefix('rms_norm')\n"
)


def write_variant(
    root: Path,
    name: str,
    module_id: str,
    files: dict[str, str | bytes],
    backend_type: str = "cuda",
    **metadata_overrides: object,
) -> Path:
    """A variant directory whose metadata.json carries correct digests of `files`."""
    variant = root / name
    variant.mkdir(parents=True)
    for relative, content in files.items():
        target = variant / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    metadata = {
        "id": module_id,
        "name": NAME,
        "version": 1,
        "license": "Apache-2.0",
        "python-depends": [],
        "backend": {"type": backend_type},
        "digest": {"algorithm": "sha256", "files": variant_digests(variant)},
        "provenance": {"kernel-builder": {"version": "0.1.0"}},
        "build": {"variant": name, "source-hash": "0" * 64, "toolchain": {"torch": "2.14.1"}},
    }
    metadata.update(metadata_overrides)
    (variant / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return variant


def python_files(module_id: str) -> dict[str, str | bytes]:
    return {
        "__init__.py": INIT_SOURCE,
        "_ops.py": OPS_SOURCE.format(id=module_id),
        "layers.py": LAYERS_SOURCE,
    }


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def failures(results: list[CheckResult]) -> dict[str, str]:
    return {result.name: result.detail for result in results if not result.ok}


def compile_shared_object(directory: Path, file_name: str, source: str, *flags: str) -> Path:
    source_path = directory / (file_name + ".c")
    source_path.write_text(source)
    output = directory / file_name
    subprocess.run(
        [GCC, "-shared", "-fPIC", "-O1", "-o", str(output), str(source_path), *flags], check=True
    )
    return output


@pytest.fixture(scope="module")
def shared_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real ELF files: a plain one, one with a build-machine RPATH, one needing GLIBC_2.32."""
    if GCC is None:
        pytest.skip("gcc is not installed")
    directory = tmp_path_factory.mktemp("elf")
    entry = f"int PyInit_{ARCH_ID}(void) {{ return 0; }}\n"
    return {
        "plain": compile_shared_object(directory, "plain.so", entry),
        "rpath": compile_shared_object(
            directory,
            "rpath.so",
            entry,
            "-Wl,-rpath,/abs/build/machine/lib",
            "-Wl,--disable-new-dtags",
        ),
        "runpath": compile_shared_object(
            directory,
            "runpath.so",
            entry,
            "-Wl,-rpath,/opt/toolchain/lib",
            "-Wl,--enable-new-dtags",
        ),
        "origin": compile_shared_object(directory, "origin.so", entry, "-Wl,-rpath,$ORIGIN/../lib"),
        "no_entry": compile_shared_object(
            directory, "no_entry.so", "int helper(void) { return 1; }\n"
        ),
        "new_glibc": compile_shared_object(
            directory,
            "new_glibc.so",
            entry
            + "extern char __libc_single_threaded;\n"
            + "int single(void) { return __libc_single_threaded; }\n",
        ),
    }


def this_machines_cpu_variant() -> str:
    """The CPU arch variant kernel_hub picks here, named without importing torch (slow)."""
    major, minor = (int(part) for part in importlib.metadata.version("torch").split(".")[:2])
    return format_variant(
        ArchVariant((major, minor), True, "cpu", None, platform.machine(), "linux")
    )


def arch_variant_with(
    tmp_path: Path, library: Path, name: str = "torch214-cxx11-cpu-x86_64-linux"
) -> Path:
    files = python_files(ARCH_ID) | {f"{ARCH_ID}.abi3.so": library.read_bytes()}
    return write_variant(tmp_path, name, ARCH_ID, files, backend_type="cpu")


def test_good_noarch_variant_passes_every_check_and_imports(tmp_path: Path) -> None:
    """torch-rocm is not this machine's variant (no ROCm torch here), so it is imported directly."""
    variant = write_variant(
        tmp_path, "torch-rocm", NOARCH_ID, python_files(NOARCH_ID), backend_type="rocm"
    )
    results = check_variant(variant)
    assert failures(results) == {}
    assert {
        "metadata",
        "variant-name",
        "hf-kernels-metadata",
        "digest",
        "hf-kernels-digest",
        "namespace-literals",
        "import",
    } <= set(by_name(results))
    assert "imported it directly" in by_name(results)["import"].detail
    assert not (variant / "__pycache__").exists()


def test_digest_names_changed_missing_and_unlisted_files(tmp_path: Path) -> None:
    variant = write_variant(
        tmp_path, "torch-cuda", NOARCH_ID, python_files(NOARCH_ID) | {"extra.py": "x = 1\n"}
    )
    (variant / "layers.py").write_text(LAYERS_SOURCE + "# edited after staging\n")
    (variant / "extra.py").unlink()
    (variant / "notes.txt").write_text("added after staging\n")
    (variant / "__pycache__").mkdir()
    (variant / "__pycache__" / "layers.cpython-311.pyc").write_bytes(b"ignored")
    failed = failures(check_variant(variant, run_import=False))
    assert set(failed) == {"digest", "hf-kernels-digest"}
    assert "listed but missing: extra.py" in failed["digest"]
    assert "present but not listed: notes.txt" in failed["digest"]
    assert "contents differ from the digest: layers.py" in failed["digest"]


def test_backend_type_must_match_the_variant_name(tmp_path: Path) -> None:
    variant = write_variant(
        tmp_path,
        "torch214-cxx11-cpu-x86_64-linux",
        NOARCH_ID,
        python_files(NOARCH_ID),
        backend_type="cuda",
    )
    failed = failures(check_variant(variant, run_import=False))
    assert 'needs backend.type "cpu", metadata.json says "cuda"' in failed["variant-name"]


def test_unparseable_variant_name_is_reported(tmp_path: Path) -> None:
    variant = write_variant(tmp_path, "torch214-cu130", NOARCH_ID, python_files(NOARCH_ID))
    assert "torch214-cu130" in failures(check_variant(variant, run_import=False))["variant-name"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "metadata.json is missing"),
        ("{not json", "cannot be read as JSON"),
        (
            json.dumps(
                {
                    "id": "x",
                    "name": NAME,
                    "version": "1",
                    "license": "MIT",
                    "backend": {"type": "cpu"},
                }
            ),
            '"version" must be a JSON integer, found "1"',
        ),
        (
            json.dumps(
                {
                    "id": "not-an-identifier",
                    "name": NAME,
                    "version": 1,
                    "license": "MIT",
                    "backend": {},
                }
            ),
            "must be a Python identifier",
        ),
    ],
)
def test_unusable_metadata_stops_the_checks(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    variant = tmp_path / "torch-cuda"
    variant.mkdir()
    (variant / "__init__.py").write_text("")
    if content is not None:
        (variant / "metadata.json").write_text(content)
    results = check_variant(variant)
    assert [result.name for result in results] == ["metadata"]
    assert not results[0].ok and expected in results[0].detail


def test_metadata_kernels_rejects_is_reported(tmp_path: Path) -> None:
    variant = write_variant(
        tmp_path, "torch-cuda", NOARCH_ID, python_files(NOARCH_ID), backend_type="triton"
    )
    failed = failures(check_variant(variant, run_import=False))
    assert "unknown variant `triton`" in failed["hf-kernels-metadata"]


def test_namespace_literal_outside_ops_is_reported_with_file_and_line(tmp_path: Path) -> None:
    files = python_files(NOARCH_ID) | {
        "layers.py": LAYERS_SOURCE + f"import torch\nOPS = torch.ops.{NOARCH_ID}\n",
        "sub/helpers.py": '"""Helpers."""\nPREFIX = "_corpus_kernels_cuda_"\n',
    }
    variant = write_variant(tmp_path, "torch-cuda", NOARCH_ID, files)
    detail = failures(check_variant(variant, run_import=False))["namespace-literals"]
    assert f"layers.py:5 ({NOARCH_ID})" in detail
    assert "sub/helpers.py:2 (_corpus_kernels_cuda_)" in detail
    assert "_ops.py:" not in detail


def test_import_failure_shows_the_end_of_stderr(tmp_path: Path) -> None:
    files = python_files(NOARCH_ID) | {
        "__init__.py": "raise RuntimeError('boom from the variant')\n"
    }
    variant = write_variant(tmp_path, "torch-cuda", NOARCH_ID, files)
    result = by_name(check_variant(variant))["import"]
    assert not result.ok
    assert "RuntimeError: boom from the variant" in result.detail


@needs_gcc
def test_clean_extension_passes_the_elf_checks(
    tmp_path: Path, shared_objects: dict[str, Path]
) -> None:
    results = by_name(
        check_variant(arch_variant_with(tmp_path, shared_objects["plain"]), run_import=False)
    )
    so = f"{ARCH_ID}.abi3.so"
    assert results[f"symbol-versions {so}"].ok, results[f"symbol-versions {so}"].detail
    assert results[f"rpath {so}"].ok
    assert results[f"extension {so}"].ok
    assert "extension" not in results


@needs_gcc
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("rpath", "RPATH /abs/build/machine/lib"),
        ("runpath", "RUNPATH /opt/toolchain/lib"),
    ],
)
def test_build_machine_search_paths_are_errors(
    tmp_path: Path, shared_objects: dict[str, Path], kind: str, expected: str
) -> None:
    failed = failures(
        check_variant(arch_variant_with(tmp_path, shared_objects[kind]), run_import=False)
    )
    assert expected in failed[f"rpath {ARCH_ID}.abi3.so"]


@needs_gcc
def test_origin_relative_search_path_is_fine(
    tmp_path: Path, shared_objects: dict[str, Path]
) -> None:
    results = by_name(
        check_variant(arch_variant_with(tmp_path, shared_objects["origin"]), run_import=False)
    )
    assert results[f"rpath {ARCH_ID}.abi3.so"].ok


@needs_gcc
def test_too_new_glibc_names_the_symbol(tmp_path: Path, shared_objects: dict[str, Path]) -> None:
    failed = failures(
        check_variant(arch_variant_with(tmp_path, shared_objects["new_glibc"]), run_import=False)
    )
    assert (
        "GLIBC_2.32 (needed by __libc_single_threaded) is newer than manylinux_2_28's GLIBC_2.28"
        in failed[f"symbol-versions {ARCH_ID}.abi3.so"]
    )


@needs_gcc
def test_extension_must_export_its_init_function(
    tmp_path: Path, shared_objects: dict[str, Path]
) -> None:
    failed = failures(
        check_variant(arch_variant_with(tmp_path, shared_objects["no_entry"]), run_import=False)
    )
    assert f"does not export PyInit_{ARCH_ID}" in failed[f"extension {ARCH_ID}.abi3.so"]


def test_arch_variant_without_extension_and_fake_extension(tmp_path: Path) -> None:
    bare = write_variant(
        tmp_path / "a",
        "torch214-cxx11-cpu-x86_64-linux",
        ARCH_ID,
        python_files(ARCH_ID),
        backend_type="cpu",
    )
    assert (
        f"needs {ARCH_ID}.abi3.so" in failures(check_variant(bare, run_import=False))["extension"]
    )
    files = python_files(ARCH_ID) | {f"{ARCH_ID}.abi3.so": b"not really a library"}
    fake = write_variant(
        tmp_path / "b", "torch214-cxx11-cpu-x86_64-linux", ARCH_ID, files, backend_type="cpu"
    )
    assert (
        "is not an ELF file"
        in failures(check_variant(fake, run_import=False))[f"elf {ARCH_ID}.abi3.so"]
    )


def test_noarch_variant_must_not_hold_compiled_code(tmp_path: Path) -> None:
    files = python_files(NOARCH_ID) | {"helper.so": b"\x7fELF"}
    variant = write_variant(tmp_path, "torch-cuda", NOARCH_ID, files)
    assert (
        "must hold no compiled code: helper.so"
        in failures(check_variant(variant, run_import=False))["extension"]
    )


@needs_gcc
def test_real_arch_extension_imports_in_a_fresh_python(tmp_path: Path) -> None:
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        pytest.skip("Python.h is not installed")
    source = (
        "#define Py_LIMITED_API 0x03090000\n#include <Python.h>\n"
        "static struct PyModuleDef definition = "
        f'{{PyModuleDef_HEAD_INIT, "{ARCH_ID}", NULL, -1, NULL}};\n'
        f"PyMODINIT_FUNC PyInit_{ARCH_ID}(void) {{ return PyModule_Create(&definition); }}\n"
    )
    library = compile_shared_object(tmp_path, "extension.so", source, f"-I{include}")
    cpu_variant_name = this_machines_cpu_variant()
    files = python_files(ARCH_ID) | {
        "_ops.py": f"from . import {ARCH_ID}\n" + OPS_SOURCE.format(id=ARCH_ID),
        f"{ARCH_ID}.abi3.so": library.read_bytes(),
    }
    variant = write_variant(
        tmp_path / "build", cpu_variant_name, ARCH_ID, files, backend_type="cpu"
    )
    results = check_variant(variant)
    assert failures(results) == {}
    assert "imported with kernel_hub.get_local_kernel" in by_name(results)["import"].detail


def test_check_build_dir_skips_hidden_staging_dirs(tmp_path: Path) -> None:
    write_variant(tmp_path, "torch-cuda", NOARCH_ID, python_files(NOARCH_ID))
    write_variant(tmp_path, "torch-rocm", NOARCH_ID, python_files(NOARCH_ID), backend_type="rocm")
    (tmp_path / ".staging-torch-cuda-x1y2").mkdir()
    report = check_build_dir(tmp_path, run_import=False)
    assert sorted(report) == ["torch-cuda", "torch-rocm"]
    assert all(result.ok for results in report.values() for result in results)


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf is not installed")
@needs_gcc
def test_elf_reader_agrees_with_readelf(shared_objects: dict[str, Path]) -> None:
    library = shared_objects["new_glibc"]
    listing = subprocess.run(
        ["readelf", "-V", "--wide", str(library)], capture_output=True, text=True, check=True
    ).stdout
    needs = listing.split("Version needs section", 1)[1]
    readelf_versions = {
        line.split("Name: ")[1].split()[0] for line in needs.splitlines() if "Name: " in line
    }
    assert set(read_elf(library).required_versions) == readelf_versions
    assert read_elf(shared_objects["rpath"]).rpath == ("/abs/build/machine/lib",)


def test_our_digest_covers_the_same_files_as_hf_kernels(tmp_path: Path) -> None:
    from kernels._rust import Digest, DigestAlgorithm

    files = python_files(NOARCH_ID) | {
        "sub/mod.py": "y = 2\n",
        "stray.pyc": b"\0",
        "sub/deep.pyc": b"\0",
        ".hidden/file": "h\n",
        "__pycache__/a.cpython-311.pyc": b"\0",
        "sub/__pycache__/b.pyc": b"\0",
        "sub/metadata.json": "{}\n",
        "metadata.json.sigstore": "{}\n",
        "CARD.md": "# card\n",
    }
    variant = write_variant(tmp_path, "torch-cuda", NOARCH_ID, files)
    theirs = Digest.hash_variant(DigestAlgorithm.SHA256, variant).files
    assert variant_digests(variant) == dict(theirs)
