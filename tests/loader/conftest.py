"""The test Hub: a Hub-API server on 127.0.0.1 that the real huggingface_hub client talks to."""

from __future__ import annotations

import pytest
from huggingface_hub import constants, hf_api

from hub_server import HubServer


@pytest.fixture
def hub(tmp_path, monkeypatch) -> HubServer:
    """A fresh, empty test Hub, with huggingface_hub pointed at it and at a private cache.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import,
    into `huggingface_hub.constants` (and the module-level `HfApi` behind `upload_folder` & co.
    keeps the endpoint it was built with), so those are patched here; the environment variables
    are set too, for subprocesses.
    """
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

    def go_offline() -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    return go_offline
