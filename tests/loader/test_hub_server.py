"""The test Hub answers the real huggingface_hub client: create, upload, branch, tag, download."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RevisionNotFoundError

from hub_server import HubServer


def write_tree(root: Path) -> dict[str, bytes]:
    files = {
        "README.md": b"# demo\n",
        "build/variant-a/__init__.py": b"X = 1\n",
        "build/variant-a/data.bin": bytes(range(256)) * 40,
        "build/variant-b/metadata.json": b'{"id": "b"}',
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return files


@pytest.mark.parametrize("repo_type", ["kernel", "model"])
def test_upload_branch_tag_refs_and_download_round_trip(hub: HubServer, tmp_path, repo_type):
    api = HfApi()
    repo_id = "some-org/demo"
    files = write_tree(tmp_path / "src")

    url = api.create_repo(repo_id, repo_type=repo_type)
    assert url.endswith(f"{'kernels/' if repo_type == 'kernel' else ''}{repo_id}")
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    api.create_branch(repo_id, branch="v1", repo_type=repo_type)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=tmp_path / "src", revision="v1", repo_type=repo_type
    )
    api.create_tag(repo_id, tag="v1.0.0", revision="v1", repo_type=repo_type)

    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    branches = {ref.name: ref.target_commit for ref in refs.branches}
    assert branches["v1"] == info.oid and len(info.oid) == 40
    assert {ref.name: ref.target_commit for ref in refs.tags} == {"v1.0.0": info.oid}
    assert branches["main"] != info.oid

    tree = {entry.path for entry in api.list_repo_tree(repo_id, revision="v1", recursive=True,
                                                       repo_type=repo_type)}
    assert set(files) <= tree and "build/variant-a" in tree

    for revision in ("v1", "v1.0.0", info.oid):
        folder = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision))
        assert folder.name == info.oid
        assert {path: (folder / path).read_bytes() for path in files} == files


def test_download_only_allowed_patterns_and_requests_stay_local(hub: HubServer, tmp_path):
    api = HfApi()
    write_tree(tmp_path / "src")
    api.create_repo("org/k", repo_type="kernel")
    api.upload_folder(repo_id="org/k", folder_path=tmp_path / "src", repo_type="kernel")

    folder = Path(snapshot_download("org/k", repo_type="kernel",
                                    allow_patterns=["build/variant-a/*"]))
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "build/variant-a/__init__.py", "build/variant-a/data.bin"]
    assert len(hub.downloads()) == 2
    assert all(request.path.startswith("/") for request in hub.requests)
    assert urlsplit(hub.endpoint).hostname == "127.0.0.1"
    assert len(hub.requests) < 20


def test_errors_and_deletions(hub: HubServer, tmp_path):
    api = HfApi()
    api.create_repo("org/k", repo_type="kernel")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_tree("org/k", revision="v9", repo_type="kernel").__next__()
    write_tree(tmp_path / "src")
    api.upload_folder(repo_id="org/k", folder_path=tmp_path / "src", repo_type="kernel")
    api.delete_folder("build/variant-a", repo_id="org/k", repo_type="kernel")
    paths = {entry.path for entry in api.list_repo_tree("org/k", recursive=True,
                                                         repo_type="kernel")}
    assert not any(path.startswith("build/variant-a") for path in paths)
    assert "build/variant-b/metadata.json" in paths


def test_org_overview_flag_and_restart_keeps_port(hub: HubServer):
    api = HfApi()
    assert getattr(api.get_organization_overview("org"), "trustedKernelPublisher") is False
    hub.trusted_orgs.add("org")
    port = hub.port
    hub.stop()
    assert not hub.running
    hub.start()
    assert hub.port == port
    assert getattr(api.get_organization_overview("org"), "trustedKernelPublisher") is True
