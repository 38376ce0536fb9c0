"""install_kernel is atomic: files are downloaded into a staging cache, verified there and only
then renamed into the snapshot, so a failed download never leaves a variant that looks complete.
The failure is injected into huggingface_hub's per-file download, in this process."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from huggingface_hub import _snapshot_download

from hub_server import HubServer
from publishing import publish_build
from kernel_hub import cache
from kernel_hub.errors import NoCompatibleVariantError
from kernel_hub.hub import install_kernel

ROOT = Path(__file__).resolve().parents[2]
REPO = "transformer-kernels/atomic"
CPU = "torch214-cxx11-cpu-x86_64-linux"


@pytest.fixture
def published(hub: HubServer, tmp_path) -> str:
    """Our build/ on the test Hub, branch v1; returns the v1 commit."""
    return publish_build(hub, REPO, tmp_path)


@pytest.fixture
def failing_downloads(monkeypatch):
    """Make every per-file download after the first raise, as a dropped connection would."""
    real_download = _snapshot_download.hf_hub_download
    lock = threading.Lock()
    calls = []

    def download(*args, **kwargs):
        with lock:
            calls.append(kwargs.get("filename"))
            first = len(calls) == 1
        if not first:
            raise ConnectionError("injected: connection dropped mid-download")
        return real_download(*args, **kwargs)

    monkeypatch.setattr(_snapshot_download, "hf_hub_download", download)

    def stop_failing() -> None:
        monkeypatch.setattr(_snapshot_download, "hf_hub_download", real_download)

    return stop_failing


def variant_entries(commit: str) -> list[str]:
    variant_dir = cache.snapshot_dir(REPO, commit) / "build" / CPU
    return sorted(path.name for path in variant_dir.iterdir()) if variant_dir.is_dir() else []


def staging_leftovers() -> list[Path]:
    root = cache.cache_dir() / cache.STAGING_DIR
    return list(root.iterdir()) if root.is_dir() else []


def test_a_download_that_fails_midway_leaves_nothing_and_the_next_call_succeeds(
    hub, published, failing_downloads
):
    with pytest.raises(ConnectionError, match="injected"):
        install_kernel(REPO, version=1, backend="cpu")
    assert variant_entries(published) == ["metadata.json"]
    assert staging_leftovers() == []
    blobs = cache.repo_cache_dir(REPO) / "blobs"
    assert len(list(blobs.iterdir())) == 1

    failing_downloads()
    hub.requests.clear()
    variant_dir = install_kernel(REPO, version=1, backend="cpu")
    expected = sorted(path.name for path in (ROOT / "build" / CPU).iterdir())
    assert variant_entries(published) == expected
    metadata = json.loads((variant_dir / "metadata.json").read_text())
    assert cache.digest_problems(variant_dir, metadata) == []
    assert staging_leftovers() == []
    assert not hub.downloads("metadata.json")
    assert len(hub.downloads()) == len(expected) - 1


def test_a_failed_download_is_not_taken_for_a_cached_variant_offline(
    hub, published, failing_downloads, offline
):
    with pytest.raises(ConnectionError):
        install_kernel(REPO, version=1, backend="cpu")
    cache.write_ref(REPO, "v1", published)
    offline()
    with pytest.raises(NoCompatibleVariantError, match="only its metadata.json"):
        install_kernel(REPO, version=1, backend="cpu")


def test_a_hub_copy_with_wrong_digests_never_reaches_the_snapshot(hub, published):
    files = hub.repos[("kernel", REPO)].commits[published].files
    files[f"build/{CPU}/layers.py"] = b"# tampered\n"
    with pytest.raises(cache.KernelIntegrityError, match="layers.py"):
        install_kernel(REPO, version=1, backend="cpu")
    assert variant_entries(published) == ["metadata.json"]
    assert staging_leftovers() == []


def test_a_damaged_cached_copy_is_replaced_whole(hub, published, caplog):
    variant_dir = install_kernel(REPO, version=1, backend="cpu")
    (variant_dir / "planted.py").write_text("raise SystemExit('should be gone')\n")
    (variant_dir / "rmsnorm.py").unlink()
    assert install_kernel(REPO, version=1, backend="cpu") == variant_dir
    assert "damaged or incomplete" in caplog.text
    assert variant_entries(published) == sorted(p.name for p in (ROOT / "build" / CPU).iterdir())
    metadata = json.loads((variant_dir / "metadata.json").read_text())
    assert cache.digest_problems(variant_dir, metadata) == []
    assert staging_leftovers() == []
