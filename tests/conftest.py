"""Shared fixtures: the variants built once (a no-op when build/ is current) and loaded through
kernel_hub, so every test exercises what users load; and the test Hub with huggingface_hub
pointed at it."""

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


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh, empty test Hub (tests/hub_server.py), with huggingface_hub pointed at it and at a private cache.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import,
    into `huggingface_hub.constants` (and the module-level `HfApi` behind `upload_folder` & co.
    keeps the endpoint it was built with), so those are patched here; the environment variables
    are set too, for subprocesses.
    """
    from huggingface_hub import constants, hf_api

    from hub_server import HubServer

    server = HubServer().start()
    hf_home = tmp_path / "hf_home"
    hub_cache = hf_home / "hub"
    for name, value in {
        "HF_ENDPOINT": server.endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "KERNEL_HUB_CACHE", "KERNELS_CACHE",
                 "LOCAL_KERNELS", "KERNEL_HUB_TRUSTED_ORGS", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(hf_api.api, "endpoint", server.endpoint)
    yield server
    server.stop()


@pytest.fixture
def offline(monkeypatch):
    """Switch huggingface_hub (and kernel_hub, which asks it) to offline mode."""

    from huggingface_hub import constants

    def go_offline() -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    return go_offline
