"""kernel_hub loads what we publish from the test Hub: versions, cache, repair, locks, offline,
trust. The real huggingface_hub client talks to tests/hub_server.py; nothing is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from hub_server import HubServer
from publishing import publish_build
from kernel_hub import cache
from kernel_hub.hub import (
    UntrustedKernelError,
    get_kernel,
    get_kernel_variants,
    has_kernel,
    install_kernel,
)

ROOT = Path(__file__).resolve().parents[2]
REPO = "transformer-kernels/transformer-kernels"
CPU = "torch214-cxx11-cpu-x86_64-linux"


@pytest.fixture
def published(hub: HubServer, tmp_path) -> str:
    """Our build/ on the test Hub, branch v1; returns the v1 commit."""
    return publish_build(hub, REPO, tmp_path)


def cached_files(commit: str) -> list[str]:
    snapshot = cache.snapshot_dir(REPO, commit)
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def test_get_kernel_version_loads_the_cpu_variant_and_runs_rms_norm(published):
    kernel = get_kernel(REPO, version=1, backend="cpu", trust_remote_code=True)
    assert kernel.__name__.startswith("_transformer_kernels_cpu_")
    x, w = torch.randn(3, 40), torch.randn(40)
    expected = kernel.rms_norm_reference(x.double(), w.double(), 1e-6)
    torch.testing.assert_close(kernel.rms_norm(x, w, 1e-6).double(), expected,
                               rtol=1e-5, atol=1e-5)
    variant_files = sorted(p.name for p in (ROOT / "build" / CPU).iterdir() if p.is_file())
    assert cached_files(published) == [f"build/{CPU}/{name}" for name in variant_files]
    assert cache.read_ref(REPO, "v1") == published


def test_only_the_chosen_variant_is_downloaded_and_every_variant_is_explained(published):
    variant_dir = install_kernel(REPO, version=1)
    chosen = variant_dir.name
    others = {path.split("/")[1] for path in cached_files(published)} - {chosen}
    for other in others:
        assert [p for p in cached_files(published) if f"/{other}/" in p] == [
            f"build/{other}/metadata.json"]
    decisions = get_kernel_variants(REPO, version=1)
    assert decisions[0].name == chosen and decisions[0].accepted
    assert {d.name for d in decisions} == {p.name for p in (ROOT / "build").iterdir()}
    assert all(d.reason for d in decisions)
    assert has_kernel(REPO, version=1, backend="cpu")


def test_corrupted_and_partial_cache_entries_are_repaired(hub, published, caplog):
    variant_dir = install_kernel(REPO, revision="v1", backend="cpu")
    library = next(variant_dir.glob("*.so"))
    library.resolve().write_bytes(b"not a shared library")
    (variant_dir / "layers.py").unlink()
    hub.requests.clear()

    assert install_kernel(REPO, revision="v1", backend="cpu") == variant_dir
    metadata = json.loads((variant_dir / "metadata.json").read_text())
    assert cache.digest_problems(variant_dir, metadata) == []
    assert library.read_bytes() == (ROOT / "build" / CPU / library.name).read_bytes()
    assert "downloading them again" in caplog.text
    assert len(hub.downloads()) == len(cached_files(published))


def test_a_hub_copy_that_does_not_match_its_digests_is_refused(hub, published):
    commit = hub.repos[("kernel", REPO)].commits[published]
    library = next(path for path in commit.files if path.startswith(f"build/{CPU}/") and
                   path.endswith(".so"))
    commit.files[library] = b"tampered"
    with pytest.raises(cache.KernelIntegrityError, match="even after downloading it again"):
        install_kernel(REPO, version=1, backend="cpu")


def test_offline_after_one_online_load_with_the_server_stopped(hub, published, offline):
    online = install_kernel(REPO, version=1, backend="cpu")
    hub.stop()
    offline()
    hub.requests.clear()
    assert install_kernel(REPO, version=1, backend="cpu") == online
    assert install_kernel(REPO, revision=published, backend="cpu") == online
    kernel = get_kernel(REPO, version=1, backend="cpu")
    assert kernel.rms_norm(torch.ones(2, 8), None, 1e-6).shape == (2, 8)
    assert [d.name for d in get_kernel_variants(REPO, version=1, backend="cpu")
            if d.accepted] == [CPU]
    assert hub.requests == []
    with pytest.raises(LookupError, match="offline"):
        install_kernel(REPO, version=2, backend="cpu")


def test_version_and_revision_arguments(hub, published):
    with pytest.raises(ValueError, match="version.*revision"):
        install_kernel(REPO, version=1, revision="v1")
    with pytest.raises(ValueError, match="version.*revision"):
        install_kernel(REPO)
    with pytest.raises(ValueError, match="version.*revision"):
        get_kernel(REPO)
    with pytest.raises(ValueError, match="no version 7.*versions on the Hub: 1"):
        install_kernel(REPO, version=7)
    with pytest.raises(ValueError, match="no branch or tag 'nope'"):
        install_kernel(REPO, revision="nope")
    api = HfApi()
    api.create_tag(REPO, tag="v1.0.0", revision="v1", repo_type="kernel")
    assert install_kernel(REPO, revision="v1.0.0", backend="cpu").parent.parent.name == published
    api.create_branch(REPO, branch="v2", revision="v1", repo_type="kernel")
    with pytest.warns(UserWarning, match="version 2 exists"):
        install_kernel(REPO, version=1, backend="cpu")


def test_untrusted_org_needs_trust_remote_code(hub, published, monkeypatch):
    with pytest.raises(UntrustedKernelError, match="trust_remote_code=True"):
        get_kernel(REPO, version=1, backend="cpu")
    assert not hub.downloads()
    monkeypatch.setenv("KERNEL_HUB_TRUSTED_ORGS", "someone-else, transformer-kernels")
    hub.requests.clear()
    get_kernel(REPO, version=1, backend="cpu")
    assert not [r for r in hub.requests if "/organizations/" in r.path]
    monkeypatch.delenv("KERNEL_HUB_TRUSTED_ORGS")
    hub.trusted_orgs.add("transformer-kernels")
    get_kernel(REPO, version=1, backend="cpu")
    get_kernel(REPO, version=1, backend="cpu", trust_remote_code=[REPO])


def test_eight_processes_on_a_cold_cache_download_once(hub, published, tmp_path):
    go = tmp_path / "go"
    code = "\n".join([
        "import pathlib, sys, time",
        "from kernel_hub.hub import install_kernel",
        "from kernel_hub.system import detect_system",
        "detect_system()",
        "pathlib.Path(sys.argv[1]).touch()",
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.01)",
        f"print(install_kernel({REPO!r}, version=1, backend='cpu'))",
    ])
    env_path = f"{ROOT / 'loader'}"
    procs = []
    for index in range(8):
        ready = tmp_path / f"ready{index}"
        procs.append((ready, subprocess.Popen(
            [sys.executable, "-c", code, str(ready), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": env_path})))
    deadline = time.monotonic() + 240
    while not all(ready.exists() for ready, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [proc.communicate(timeout=240) for _, proc in procs]
    assert all(proc.returncode == 0 for _, proc in procs), [err[-2000:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
    counts = Counter(request.path for request in hub.downloads())
    assert counts and set(counts.values()) == {1}, counts
    assert len(counts) == len(cached_files(published))


def test_hugging_face_kernels_loads_our_upload_from_the_test_hub(hub, published):
    """Interop: kernels.get_kernel (pinned 0.17.2), in a fresh process, from the same Hub."""
    pytest.importorskip("kernels", reason="Hugging Face's kernels is not installed")
    code = "\n".join([
        "import torch, kernels",
        f"k = kernels.get_kernel({REPO!r}, version=1, backend='cpu', trust_remote_code=True)",
        "x = torch.randn(3, 40); w = torch.randn(40)",
        "ref = k.rms_norm_reference(x.double(), w.double(), 1e-6)",
        "torch.testing.assert_close(k.rms_norm(x, w, 1e-6).double(), ref, rtol=1e-5, atol=1e-5)",
        "print(k.__name__)",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("_transformer_kernels_cpu_")
    assert hub.downloads() and all(r.path.startswith("/kernels/") for r in hub.downloads())
