"""kernels.lock: locking from pyproject.toml against the test Hub, verified and offline loads."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from hub_server import HubServer
from publishing import publish_build
from kernel_hub import cache
from kernel_hub.digest import file_digest
from kernel_hub.layer.repos import LockedLayerRepository
from kernel_hub.lock import (
    HASH_TYPE,
    LockMismatchError,
    content_hash,
    find_lockfile,
    get_locked_kernel,
    install_locked,
    load_kernel,
    lock_project,
    read_dependencies,
    variant_hash,
)

ROOT = Path(__file__).resolve().parents[2]
REPO = "transformer-kernels/transformer-kernels"
CPU = "torch214-cxx11-cpu-x86_64-linux"

pytestmark = pytest.mark.skipif(not (ROOT / "build" / CPU).is_dir(),
                                reason=f"build/{CPU} has not been built")


@pytest.fixture
def published(hub: HubServer, tmp_path) -> str:
    return publish_build(hub, REPO, tmp_path)


@pytest.fixture
def project(tmp_path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.kernel-hub.dependencies]\n'
        f'"{REPO}" = 1\n'
    )
    return directory


def test_lock_records_the_commit_and_a_hash_per_variant(hub, published, project):
    lockfile = lock_project(project)
    [entry] = json.loads(lockfile.read_text())
    assert entry["repo_id"] == REPO and entry["sha"] == published
    variants = sorted(path.name for path in (ROOT / "build").iterdir() if path.is_dir())
    assert sorted(entry["variants"]) == variants
    for name in variants:
        assert entry["variants"][name] == {"hash": variant_hash(ROOT / "build" / name),
                                           "hash_type": HASH_TYPE}
    assert not hub.downloads("/" + CPU + "/_ops.py"), "locking downloads only metadata.json"


def test_the_hash_is_defined_over_sorted_path_and_file_sha256(tmp_path):
    (tmp_path / "b.py").write_text("b")
    (tmp_path / "a.py").write_text("a")
    (tmp_path / "metadata.json").write_text("{}")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    lines = "".join(f"{name}\0{file_digest(tmp_path / name)}\n" for name in ("a.py", "b.py"))
    expected = "sha256-" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()
    assert variant_hash(tmp_path) == expected
    assert content_hash({"b.py": "x", "a.py": "y"}) == content_hash({"a.py": "y", "b.py": "x"})


def test_a_variant_without_metadata_digests_is_hashed_from_its_files(hub, published, project):
    variant = hub.repos[("kernel", REPO)].commits[published].files
    metadata = json.loads(variant[f"build/{CPU}/metadata.json"])
    del metadata["digest"]
    HfApi().upload_file(path_or_fileobj=json.dumps(metadata).encode(),
                        path_in_repo=f"build/{CPU}/metadata.json", repo_id=REPO,
                        revision="v1", repo_type="kernel")
    [entry] = json.loads(lock_project(project).read_text())
    assert entry["variants"][CPU]["hash"] == variant_hash(ROOT / "build" / CPU)


def test_load_kernel_verifies_then_loads_offline_with_no_request(hub, published, project,
                                                                 offline):
    lockfile = lock_project(project)
    kernel = load_kernel(REPO, lockfile=lockfile, backend="cpu")
    assert kernel.rms_norm(torch.ones(2, 8), None, 1e-6).shape == (2, 8)
    hub.requests.clear()
    assert load_kernel(REPO, lockfile=lockfile, backend="cpu") is kernel
    assert hub.requests == []
    hub.stop()
    offline()
    assert install_locked(REPO, lockfile, backend="cpu").parent.parent.name == published


def test_a_consistently_tampered_cache_is_refused(hub, published, project):
    """A file changed together with its metadata.json digest passes the metadata check; the lock
    catches it."""
    lockfile = lock_project(project)
    variant_dir = install_locked(REPO, lockfile, backend="cpu")
    layers = (variant_dir / "layers.py").resolve()
    layers.write_text(layers.read_text() + "\n# tampered\n")
    metadata_path = (variant_dir / "metadata.json").resolve()
    metadata = json.loads(metadata_path.read_text())
    metadata["digest"]["files"]["layers.py"] = file_digest(layers)
    metadata_path.write_text(json.dumps(metadata))
    assert cache.digest_problems(variant_dir, metadata) == []
    locked = json.loads(lockfile.read_text())[0]["variants"][CPU]["hash"]
    with pytest.raises(LockMismatchError) as caught:
        load_kernel(REPO, lockfile=lockfile, backend="cpu")
    message = str(caught.value)
    assert REPO in message and CPU in message and locked in message
    assert variant_hash(variant_dir) in message


def test_a_lock_that_does_not_match_the_hub_is_refused(hub, published, project):
    lockfile = lock_project(project)
    locks = json.loads(lockfile.read_text())
    locks[0]["variants"][CPU]["hash"] = "sha256-" + "A" * 43 + "="
    lockfile.write_text(json.dumps(locks))
    with pytest.raises(LockMismatchError, match="does not match kernels.lock"):
        load_kernel(REPO, lockfile=lockfile, backend="cpu")


def test_get_locked_kernel_finds_the_lock_above_the_working_directory(
        hub, published, project, monkeypatch):
    lock_project(project)
    (project / "src").mkdir()
    monkeypatch.chdir(project / "src")
    assert find_lockfile() == project / "kernels.lock"
    kernel = get_locked_kernel(REPO, backend="cpu")
    assert hasattr(kernel, "layers")
    with pytest.raises(LookupError, match="not locked"):
        get_locked_kernel("someone/else", backend="cpu")


def test_locked_layer_repository_loads_the_locked_layer(hub, published, project):
    lockfile = lock_project(project)
    repository = LockedLayerRepository(REPO, layer_name="RMSNorm", lockfile=lockfile)
    assert repository.load().__name__ == "RMSNorm"


def test_dependency_forms(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.kernel-hub.dependencies]\n"a/b" = 2\n'
                         '"c/d" = { revision = "main" }\n')
    assert [(d.repo_id, d.version, d.revision) for d in read_dependencies(pyproject)] == [
        ("a/b", 2, None), ("c/d", None, "main")]
    pyproject.write_text('[tool.kernel-hub.dependencies]\n"a/b" = "1"\n')
    with pytest.raises(ValueError, match="neither a major version"):
        read_dependencies(pyproject)
    pyproject.write_text('[project]\nname = "x"\n')
    with pytest.raises(ValueError, match="no \\[tool.kernel-hub.dependencies\\]"):
        read_dependencies(pyproject)
