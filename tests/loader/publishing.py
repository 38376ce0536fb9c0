"""Puts this repo's build/ on the test Hub: the upload every Hub-loading test starts from."""

import shutil
from pathlib import Path

from huggingface_hub import HfApi

ROOT = Path(__file__).resolve().parents[2]


def publish_build(hub, repo: str, tmp_path: Path) -> str:
    """Uploads a copy of build/ to `repo`, branch v1; clears the request log; returns the
    v1 commit."""
    build = tmp_path / "upload" / "build"
    shutil.copytree(ROOT / "build", build, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    api = HfApi()
    api.create_repo(repo, repo_type="kernel")
    api.create_branch(repo, branch="v1", repo_type="kernel")
    info = api.upload_folder(repo_id=repo, folder_path=build, path_in_repo="build",
                             revision="v1", repo_type="kernel")
    hub.requests.clear()
    return info.oid
