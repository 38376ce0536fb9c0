"""Session fixtures: build the variants once (a no-op when build/ is current) and load each
through kernel_hub, so every test exercises what users load."""

from pathlib import Path

import pytest

from support import ROOT


@pytest.fixture(scope="session")
def built_variants() -> dict[str, Path]:
    """{variant name: directory} of every variant this environment builds."""
    from kernel_builder.build import BuildOptions, build_all, format_table
    from kernel_builder.cli import _env_archs
    from kernel_builder.config import load_config
    from kernel_builder.toolchain import detect_toolchain

    config = load_config(ROOT / "build.toml")
    options = BuildOptions(out_dir=ROOT / "build", cuda_archs=_env_archs())
    results = build_all(config, detect_toolchain(), options)
    failed = [r for r in results if r.status == "failed"]
    assert not failed, format_table(results) + "\n" + "\n".join(r.detail for r in failed)
    return {r.name: r.path for r in results if r.path is not None}


@pytest.fixture(scope="session")
def variant_modules(built_variants) -> dict[str, object]:
    """{"cuda" | "cpu" | "triton": the loaded variant module}."""
    from kernel_hub import NoCompatibleVariantError, get_local_kernel

    modules = {}
    for path in built_variants.values():
        try:
            module = get_local_kernel(path)
        except NoCompatibleVariantError:
            continue  # e.g. torch-rocm under a CUDA torch
        modules.setdefault(module.BACKEND, module)
    return modules
