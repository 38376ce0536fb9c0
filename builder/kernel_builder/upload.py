"""`kernel-builder upload`: publish staged variants to a Hub kernel repo, one commit per upload.

Every variant under build/ is checked first (kernel_builder.check, without the import) and the
upload is refused, before any request, if one fails. The commit adds every file of every
variant under build/<variant>/ on the branch (v<general.version> by default) and deletes the
files of those variant directories that the new build no longer has; variants on the branch
that are not in this upload are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

from .check import check_variant

REPO_TYPE = "kernel"
SKIPPED_DIRS = frozenset({"__pycache__"})


class UploadError(RuntimeError):
    """The build cannot be uploaded; the message says which variant and why."""


@dataclass(frozen=True)
class UploadResult:
    repo_id: str
    branch: str
    commit: str
    variants: tuple[str, ...]
    uploaded: tuple[str, ...]
    deleted: tuple[str, ...]


def default_branch(version: int) -> str:
    return f"v{version}"


def variant_dirs(build_dir: Path) -> list[Path]:
    """The staged variant directories (hidden staging directories left out)."""
    if not build_dir.is_dir():
        raise UploadError(f"{build_dir} is not a directory")
    variants = [entry for entry in sorted(build_dir.iterdir())
                if entry.is_dir() and not entry.name.startswith(".")]
    if not variants:
        raise UploadError(f"{build_dir} has no variant directories; run `kernel-builder build`")
    return variants


def variant_problems(variants: list[Path]) -> dict[str, list[str]]:
    """{variant: the checks it fails, one line each} for the variants that fail any."""
    problems = {}
    for variant in variants:
        failed = [f"{result.name}: {result.detail}"
                  for result in check_variant(variant, run_import=False) if not result.ok]
        if failed:
            problems[variant.name] = failed
    return problems


def upload_build(
    build_dir: Path,
    repo_id: str,
    branch: str,
    private: bool = False,
    api: HfApi | None = None,
) -> UploadResult:
    """Check, then upload every variant of build_dir to repo_id@branch in one commit."""
    variants = variant_dirs(Path(build_dir))
    problems = variant_problems(variants)
    if problems:
        lines = [f"{name}:\n    " + "\n    ".join(found) for name, found in problems.items()]
        raise UploadError("refusing to upload; these variants fail their checks:\n  "
                          + "\n  ".join(lines))
    api = api or HfApi()
    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
    additions = {
        f"build/{variant.name}/{path.relative_to(variant).as_posix()}": path
        for variant in variants
        for path in _variant_files(variant)
    }
    published = api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=branch)
    prefixes = tuple(f"build/{variant.name}/" for variant in variants)
    stale = sorted(path for path in published
                   if path.startswith(prefixes) and path not in additions)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=local)
                  for path, local in additions.items()]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    names = tuple(variant.name for variant in variants)
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=f"Upload {len(names)} build variants: {', '.join(names)}",
        revision=branch,
        repo_type=REPO_TYPE,
    )
    return UploadResult(repo_id, branch, info.oid, names, tuple(sorted(additions)),
                        tuple(stale))


def _variant_files(variant: Path) -> list[Path]:
    return [
        path for path in sorted(variant.rglob("*"))
        if path.is_file() and path.suffix != ".pyc"
        and not SKIPPED_DIRS.intersection(path.relative_to(variant).parts)
    ]
