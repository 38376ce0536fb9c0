"""The kernel cache: Hugging Face cache layout, version refs, per-commit locks, digests.

Kernels are cached where huggingface_hub caches a "kernel" repo (`<cache>/kernels--org--name/`,
snapshots of symlinks into blobs/), in KERNEL_HUB_CACHE when set, else in huggingface_hub's
cache. kernel_hub adds `refs/v<N>` files so that version=N resolves offline, and lock files
under `<cache>/.kernel_hub_locks/`. Downloads go to a private staging cache under
`<cache>/.kernel_hub_staging/` first and are renamed into place once verified.

Digests (digest.py, shared with the builder) are checked on every download and cache hit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from huggingface_hub import constants
from huggingface_hub.file_download import repo_folder_name

from .digest import ALGORITHM as DIGEST_ALGORITHM
from .digest import variant_digests

CACHE_ENV = "KERNEL_HUB_CACHE"
REPO_TYPE = "kernel"
STAGING_DIR = ".kernel_hub_staging"


class KernelIntegrityError(RuntimeError):
    """A variant's files do not match the digests in its metadata.json."""


def cache_dir() -> Path:
    """KERNEL_HUB_CACHE, else huggingface_hub's hub cache (read now, not at import)."""
    return Path(os.environ.get(CACHE_ENV) or constants.HF_HUB_CACHE)


def repo_cache_dir(repo_id: str) -> Path:
    return cache_dir() / repo_folder_name(repo_id=repo_id, repo_type=REPO_TYPE)


def snapshot_dir(repo_id: str, commit: str) -> Path:
    return repo_cache_dir(repo_id) / "snapshots" / commit


def write_ref(repo_id: str, ref: str, commit: str) -> None:
    """Record that branch or tag `ref` pointed at `commit`, as huggingface_hub records refs."""
    path = repo_cache_dir(repo_id) / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(commit)
    temporary.replace(path)


def read_ref(repo_id: str, ref: str) -> str | None:
    path = repo_cache_dir(repo_id) / "refs" / ref
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def cached_versions(repo_id: str) -> dict[int, str]:
    """{N: commit} for every refs/v<N> in the cache."""
    refs = repo_cache_dir(repo_id) / "refs"
    versions: dict[int, str] = {}
    if refs.is_dir():
        for path in refs.iterdir():
            if path.is_file() and path.name[:1] == "v" and path.name[1:].isdigit():
                versions[int(path.name[1:])] = path.read_text().strip()
    return versions


@contextlib.contextmanager
def commit_lock(repo_id: str, commit: str) -> Iterator[None]:
    """An exclusive lock, across processes, on one commit of one repo in the cache."""
    folder = repo_folder_name(repo_id=repo_id, repo_type=REPO_TYPE)
    path = cache_dir() / ".kernel_hub_locks" / folder
    path.mkdir(parents=True, exist_ok=True)
    with open(path / f"{commit}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging_cache() -> Iterator[Path]:
    """A private, empty cache directory under the cache root, deleted on exit whatever happens.

    It is on the cache's filesystem, so what is downloaded into it can be renamed into place.
    """
    root = cache_dir() / STAGING_DIR
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def staged_variant_dir(staging: Path, repo_id: str, commit: str, variant: str) -> Path:
    """Where snapshot_download(cache_dir=staging) puts the variant."""
    folder = repo_folder_name(repo_id=repo_id, repo_type=REPO_TYPE)
    return staging / folder / "snapshots" / commit / "build" / variant


def install_staged_variant(staging: Path, repo_id: str, commit: str, variant: str) -> Path:
    """Move a verified variant from the staging cache into the cache; return its directory.

    Blobs move first, then the variant directory with one rename, after any older copy has
    been moved aside into the staging cache (deleted with it). The snapshot's symlinks are
    relative and at the same depth in both caches, so they stay valid. A staged copy without
    metadata.json takes the cached one, which the download skipped.
    """
    staged = staged_variant_dir(staging, repo_id, commit, variant)
    staged.mkdir(parents=True, exist_ok=True)
    staged_blobs = staging / repo_folder_name(repo_id=repo_id, repo_type=REPO_TYPE) / "blobs"
    blobs = repo_cache_dir(repo_id) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in sorted(staged_blobs.iterdir()) if staged_blobs.is_dir() else []:
        os.replace(blob, blobs / blob.name)
    final = snapshot_dir(repo_id, commit) / "build" / variant
    final.parent.mkdir(parents=True, exist_ok=True)
    cached_metadata = final / "metadata.json"
    if not (staged / "metadata.json").exists() and (
        cached_metadata.is_symlink() or cached_metadata.exists()
    ):
        os.replace(cached_metadata, staged / "metadata.json")
    if final.exists() or final.is_symlink():
        final.rename(staging / "replaced")
    staged.rename(final)
    return final


def holds_only_metadata(variant_dir: Path) -> bool:
    """Whether the cached variant is just the metadata.json that resolution downloaded."""
    if not variant_dir.is_dir():
        return False
    return [path.name for path in variant_dir.iterdir()] == ["metadata.json"]


def expected_digests(metadata: Mapping) -> dict[str, str] | None:
    """metadata.json's {path: digest}, or None when it records none (or another algorithm)."""
    digest = metadata.get("digest")
    if not isinstance(digest, Mapping) or digest.get("algorithm") != DIGEST_ALGORITHM:
        return None
    files = digest.get("files")
    return dict(files) if isinstance(files, Mapping) else None


def digest_problems(variant_dir: Path, metadata: Mapping) -> list[str]:
    """What differs between the variant's files and its metadata.json digests, one line each;
    empty when they agree or when metadata.json records no digests."""
    expected = expected_digests(metadata)
    if expected is None:
        return []
    actual = variant_digests(variant_dir)
    problems = [f"{path}: missing" for path in sorted(expected.keys() - actual.keys())]
    problems += [
        f"{path}: not listed in metadata.json" for path in sorted(actual.keys() - expected.keys())
    ]
    problems += [
        f"{path}: sha256 {actual[path]}, metadata.json says {expected[path]}"
        for path in sorted(expected.keys() & actual.keys())
        if actual[path] != expected[path]
    ]
    return problems


def is_complete(variant_dir: Path, metadata: Mapping) -> bool:
    """Whether every file metadata.json lists (or, with no digests, __init__.py) is present."""
    expected = expected_digests(metadata)
    names = expected.keys() if expected is not None else ["__init__.py"]
    return all((variant_dir / name).is_file() for name in names)
