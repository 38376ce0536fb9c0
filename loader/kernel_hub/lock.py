"""Lockfiles: pin Hub kernels to a commit and to the content of every variant, verified at load.

A project lists its kernels in pyproject.toml:

    [tool.kernel-hub.dependencies]
    "org/kernel" = 1                          # the branch v1
    "org/other" = { revision = "main" }       # a branch, tag or commit

`kernel-hub lock` writes kernels.lock beside it, a JSON list with one entry per repo:

    {"repo_id": "org/kernel", "sha": "<40-hex commit>",
     "variants": {"<variant>": {"hash": "sha256-<base64>", "hash_type": "sha256_file_digests"}}}

The variant hash (hash_type "sha256_file_digests"): take the files that digest.variant_files
covers (every file of the variant except the top-level metadata.json and metadata.json.sigstore,
__pycache__ and *.pyc), each as the line "<POSIX path relative to the variant>\\0<base64 sha256 of
its bytes>\\n", sorted by path; the hash is "sha256-" + base64 of the sha256 of those lines
concatenated. Locking reads the per-file sha256 digests from each variant's metadata.json (one
small download per variant); a variant whose metadata.json records none is downloaded once into a
temporary directory and hashed. Hugging Face's `kernels` hashes git blob / LFS ids instead
("git_lfs_concat"), which the Hub lists without downloads but which cannot be checked against a
cache without knowing which files were LFS; its loader never checks them.

Loading from a lock (load_kernel, get_locked_kernel) uses the locked commit, reads the cache
first (no request when the variant is cached), downloads only when it is not, and always checks
the chosen variant's files against the locked hash, raising LockMismatchError when they differ.
Locking a repo is the decision to trust its code at that content, so loading from a lock does not
ask the Hub whether the publisher is trusted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Mapping

from huggingface_hub import HfApi, constants
from huggingface_hub.hf_api import RepoFolder

from . import cache, hub
from .digest import variant_digests
from .errors import NoCompatibleVariantError
from .importer import import_variant
from .local import read_metadata

LOCKFILE_NAME = "kernels.lock"
HASH_TYPE = "sha256_file_digests"
PYPROJECT_TABLE = ("tool", "kernel-hub", "dependencies")


class LockMismatchError(cache.KernelIntegrityError):
    """A variant's files do not match the hash that kernels.lock records for them."""

    def __init__(self, repo_id: str, variant: str, expected: str, actual: str, where: Path):
        self.repo_id, self.variant, self.expected, self.actual = repo_id, variant, expected, actual
        super().__init__(
            f"kernel {repo_id} variant {variant} ({where}) does not match kernels.lock: "
            f"expected {expected}, found {actual}. The files changed since the lock was made; "
            "delete the cached copy to download it again, or re-lock if the change is intended."
        )


@dataclass(frozen=True)
class Dependency:
    """One [tool.kernel-hub.dependencies] entry: exactly one of version and revision."""

    repo_id: str
    version: int | None = None
    revision: str | None = None


def content_hash(digests: Mapping[str, str]) -> str:
    """The lock hash of a variant from its {relative path: base64 sha256} file digests."""
    sha = hashlib.sha256()
    for path in sorted(digests):
        sha.update(f"{path}\0{digests[path]}\n".encode())
    return "sha256-" + base64.b64encode(sha.digest()).decode("ascii")


def variant_hash(variant_dir: Path) -> str:
    """The lock hash of the files in a variant directory, as they are on disk."""
    return content_hash(variant_digests(variant_dir))


def read_dependencies(pyproject: Path) -> list[Dependency]:
    with pyproject.open("rb") as handle:
        table = tomllib.load(handle)
    for key in PYPROJECT_TABLE:
        table = table.get(key, {}) if isinstance(table, dict) else {}
    if not table:
        raise ValueError(f"{pyproject} has no [tool.kernel-hub.dependencies] table")
    return [_dependency(repo_id, spec, pyproject) for repo_id, spec in table.items()]


def _dependency(repo_id: str, spec, pyproject: Path) -> Dependency:
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Dependency(repo_id, version=spec)
    if isinstance(spec, dict) and set(spec) == {"version"} and isinstance(spec["version"], int):
        return Dependency(repo_id, version=spec["version"])
    if isinstance(spec, dict) and set(spec) == {"revision"} and isinstance(spec["revision"], str):
        return Dependency(repo_id, revision=spec["revision"])
    raise ValueError(
        f"{pyproject}: dependency {repo_id!r} = {spec!r} is neither a major version (an integer) "
        'nor a table { revision = "<branch, tag or commit>" }'
    )


def lock_dependency(dependency: Dependency, api: HfApi | None = None) -> dict:
    """The kernels.lock entry for one dependency: its commit and every variant's hash."""
    api = api or HfApi()
    commit, _ = hub._resolve_commit(
        dependency.repo_id, dependency.revision, dependency.version, offline=False
    )
    entries = api.list_repo_tree(
        dependency.repo_id, path_in_repo="build", revision=commit, repo_type=cache.REPO_TYPE
    )
    names = sorted(entry.path.rsplit("/", 1)[-1] for entry in entries
                   if isinstance(entry, RepoFolder))
    variants = {
        name: {"hash": _hub_variant_hash(api, dependency.repo_id, commit, name),
               "hash_type": HASH_TYPE}
        for name in names
    }
    return {"repo_id": dependency.repo_id, "sha": commit, "variants": variants}


def _hub_variant_hash(api: HfApi, repo_id: str, commit: str, variant: str) -> str:
    metadata_path = api.hf_hub_download(
        repo_id, f"build/{variant}/metadata.json", revision=commit,
        repo_type=cache.REPO_TYPE, cache_dir=cache.cache_dir(),
    )
    digests = cache.expected_digests(read_metadata(Path(metadata_path).parent))
    if digests is not None:
        return content_hash(digests)
    with tempfile.TemporaryDirectory(prefix="kernel-hub-lock-") as temporary:
        api.snapshot_download(
            repo_id, repo_type=cache.REPO_TYPE, revision=commit,
            allow_patterns=[f"build/{variant}/*"], local_dir=temporary,
        )
        return variant_hash(Path(temporary) / "build" / variant)


def lock_project(project_dir: Path) -> Path:
    """Write project_dir/kernels.lock for project_dir/pyproject.toml; return its path."""
    dependencies = read_dependencies(Path(project_dir) / "pyproject.toml")
    api = HfApi()
    locks = [lock_dependency(dependency, api) for dependency in dependencies]
    path = Path(project_dir) / LOCKFILE_NAME
    path.write_text(json.dumps(locks, indent=2, sort_keys=True) + "\n")
    return path


def read_lock(lockfile: Path, repo_id: str) -> dict:
    """The lockfile's entry for repo_id."""
    try:
        locks = json.loads(Path(lockfile).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{lockfile} is not a kernels.lock JSON file: {error}") from None
    for entry in locks if isinstance(locks, list) else []:
        if isinstance(entry, dict) and entry.get("repo_id") == repo_id:
            return entry
    raise LookupError(
        f"{repo_id} is not locked in {lockfile}; add it to [tool.kernel-hub.dependencies] and "
        "run `kernel-hub lock`"
    )


def find_lockfile(start: Path | None = None) -> Path:
    """kernels.lock in the directory of the nearest pyproject.toml at or above `start` (the
    current working directory by default)."""
    start = Path.cwd() if start is None else Path(start)
    for directory in [start.resolve(), *start.resolve().parents]:
        if (directory / "pyproject.toml").is_file():
            lockfile = directory / LOCKFILE_NAME
            if lockfile.is_file():
                return lockfile
            raise FileNotFoundError(
                f"{directory / 'pyproject.toml'} has no {LOCKFILE_NAME} beside it; run "
                f"`kernel-hub lock {directory}`"
            )
    raise FileNotFoundError(f"no pyproject.toml at or above {start}, so no {LOCKFILE_NAME}")


def install_locked(repo_id: str, lockfile: Path, backend: str | None = None) -> Path:
    """The cached (downloaded if needed and online) variant at the locked commit, verified
    against the lock; returns its directory."""
    entry = read_lock(lockfile, repo_id)
    commit = entry["sha"]
    try:
        variant_dir = hub.install_kernel(repo_id, revision=commit, backend=backend,
                                         local_files_only=True)
    except (NoCompatibleVariantError, cache.KernelIntegrityError):
        if constants.HF_HUB_OFFLINE:
            raise
        variant_dir = hub.install_kernel(repo_id, revision=commit, backend=backend)
    verify_locked_variant(entry, variant_dir)
    return variant_dir


def verify_locked_variant(entry: Mapping, variant_dir: Path) -> None:
    """Raise LockMismatchError unless the variant's files hash to the locked value."""
    variant = variant_dir.name
    locked = entry.get("variants", {}).get(variant)
    if locked is None:
        raise LockMismatchError(entry["repo_id"], variant, "no hash (variant not in the lock)",
                                variant_hash(variant_dir), variant_dir)
    if locked.get("hash_type") != HASH_TYPE:
        raise ValueError(
            f"kernels.lock entry for {entry['repo_id']} variant {variant} has hash_type "
            f"{locked.get('hash_type')!r}; kernel_hub checks {HASH_TYPE!r}: re-run `kernel-hub lock`"
        )
    actual = variant_hash(variant_dir)
    if actual != locked["hash"]:
        raise LockMismatchError(entry["repo_id"], variant, locked["hash"], actual, variant_dir)


def load_kernel(repo_id: str, lockfile: str | Path, backend: str | None = None) -> ModuleType:
    """Import the kernel at the commit kernels.lock pins, after checking its hash."""
    variant_dir = install_locked(repo_id, Path(lockfile), backend=backend)
    return import_variant(variant_dir, read_metadata(variant_dir))


def get_locked_kernel(
    repo_id: str, lockfile: str | Path | None = None, backend: str | None = None
) -> ModuleType:
    """load_kernel with the lockfile found by find_lockfile() when none is given."""
    return load_kernel(repo_id, find_lockfile() if lockfile is None else lockfile, backend)
