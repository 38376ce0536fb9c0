"""Load kernels from the Hugging Face Hub: versions, variant resolution, verified cache, trust.

Online, a load makes these requests: the repo's refs (to resolve version=N or a branch/tag
name), its build/ listing, each candidate variant's metadata.json (once; then cached), and the
chosen variant's files (once; then cached). Offline (HF_HUB_OFFLINE=1) it reads the refs and
snapshots that an earlier online load left in the cache.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from types import ModuleType

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFolder

from . import cache
from .errors import NoCompatibleVariantError
from .importer import import_variant
from .local import read_metadata, get_local_kernel, local_kernel_overrides
from .resolve import VariantDecision, resolve_variants
from .system import SystemInfo, detect_system, select_backend

logger = logging.getLogger("kernel_hub")

TRUSTED_ORGS_ENV = "KERNEL_HUB_TRUSTED_ORGS"
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_IGNORED_FILES = ["*.pyc", "__pycache__/*", "*/__pycache__/*"]


class UntrustedKernelError(PermissionError):
    """The kernel's publisher is not trusted and trust_remote_code was not given."""


def get_kernel(
    repo_id: str,
    revision: str | None = None,
    version: int | None = None,
    backend: str | None = None,
    trust_remote_code: bool | list[str] = False,
) -> ModuleType:
    """Import the best variant of a Hub kernel for this system.

    Exactly one of version (the branch v<version>) and revision (a branch, tag or commit) is
    required. Repos mapped by LOCAL_KERNELS load from disk instead. Loading runs the kernel's
    code, so its organization must be trusted (KERNEL_HUB_TRUSTED_ORGS or the Hub's trusted
    publisher flag) unless trust_remote_code is True or lists repo_id.
    """
    local_path = local_kernel_overrides().get(repo_id)
    if local_path is not None:
        return get_local_kernel(local_path, backend=backend)
    _check_revision_arguments(repo_id, revision, version)
    _check_trust(repo_id, trust_remote_code)
    variant_dir = install_kernel(repo_id, revision=revision, version=version, backend=backend)
    return import_variant(variant_dir, read_metadata(variant_dir))


def install_kernel(
    repo_id: str,
    revision: str | None = None,
    version: int | None = None,
    backend: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """Download (or find in the cache) and verify the best variant; return its directory."""
    offline = local_files_only or constants.HF_HUB_OFFLINE
    system = select_backend(detect_system(), backend)
    commit, ref = _resolve_commit(repo_id, revision, version, offline)
    if offline:
        return _cached_variant(repo_id, commit, system)
    api = HfApi()
    with cache.commit_lock(repo_id, commit):
        decisions, metadata = _hub_decisions(api, repo_id, commit, system)
        chosen = next((decision for decision in decisions if decision.accepted), None)
        if chosen is None:
            raise NoCompatibleVariantError(f"{repo_id}@{commit}", decisions, system)
        variant_dir = _download_verified(api, repo_id, commit, chosen.name, metadata[chosen.name])
        if ref is not None:
            cache.write_ref(repo_id, ref, commit)
    logger.info("kernel %s@%s: variant %s (%s)", repo_id, commit, chosen.name, chosen.reason)
    return variant_dir


def has_kernel(
    repo_id: str,
    revision: str | None = None,
    version: int | None = None,
    backend: str | None = None,
) -> bool:
    """Whether the Hub repo (or, offline, the cache) has a variant that loads here."""
    decisions = get_kernel_variants(repo_id, revision=revision, version=version, backend=backend)
    return any(decision.accepted for decision in decisions)


def get_kernel_variants(
    repo_id: str,
    revision: str | None = None,
    version: int | None = None,
    backend: str | None = None,
) -> list[VariantDecision]:
    """Every variant of the repo with the decision on it, accepted ones first, best first.

    Online this downloads the candidates' metadata.json files (for the GPU architecture check),
    nothing else. Offline it reports the variants in the cache.
    """
    system = select_backend(detect_system(), backend)
    commit, _ = _resolve_commit(repo_id, revision, version, constants.HF_HUB_OFFLINE)
    if constants.HF_HUB_OFFLINE:
        return _cached_decisions(repo_id, commit, system)[0]
    with cache.commit_lock(repo_id, commit):
        return _hub_decisions(HfApi(), repo_id, commit, system)[0]


def _resolve_commit(
    repo_id: str, revision: str | None, version: int | None, offline: bool
) -> tuple[str, str | None]:
    """(commit, the ref name to record in the cache or None)."""
    _check_revision_arguments(repo_id, revision, version)
    if revision is not None and _COMMIT_RE.fullmatch(revision):
        return revision, None
    ref = f"v{version}" if version is not None else revision
    if offline:
        return _cached_commit(repo_id, ref, version), ref
    refs = HfApi().list_repo_refs(repo_id, repo_type=cache.REPO_TYPE)
    branches = {item.name: item.target_commit for item in refs.branches}
    if version is not None:
        _warn_if_newer(repo_id, version, _versions(branches))
        if ref not in branches:
            raise ValueError(
                f"{repo_id} has no version {version} (no branch {ref}); versions on the Hub: "
                f"{_listed(_versions(branches))}"
            )
        return branches[ref], ref
    commit = branches.get(ref) or {item.name: item.target_commit for item in refs.tags}.get(ref)
    if commit is None:
        raise ValueError(f"{repo_id} has no branch or tag {ref!r}; branches: {_listed(branches)}")
    return commit, ref


def _check_revision_arguments(repo_id: str, revision: str | None, version: int | None) -> None:
    if (revision is None) == (version is None):
        raise ValueError(
            f"loading {repo_id!r} needs exactly one of version=<major> (the branch v<major>) "
            f"and revision=<branch, tag or commit>; got version={version!r}, "
            f"revision={revision!r}"
        )


def _cached_commit(repo_id: str, ref: str, version: int | None) -> str:
    commit = cache.read_ref(repo_id, ref)
    if commit is None:
        known = cache.cached_versions(repo_id)
        raise LookupError(
            f"{repo_id} {ref} is not in the kernel cache ({cache.repo_cache_dir(repo_id)}) and "
            f"the Hub is offline (HF_HUB_OFFLINE=1); cached versions: {_listed(known)}. Load it "
            "once online, or pass revision=<commit> of a cached snapshot."
        )
    if version is not None:
        _warn_if_newer(repo_id, version, cache.cached_versions(repo_id))
    return commit


def _hub_decisions(
    api: HfApi, repo_id: str, commit: str, system: SystemInfo
) -> tuple[list[VariantDecision], dict[str, dict]]:
    """Decide on every build/ variant on the Hub; metadata of the candidates that have one."""
    entries = api.list_repo_tree(
        repo_id, path_in_repo="build", revision=commit, repo_type=cache.REPO_TYPE
    )
    names = [entry.path.rsplit("/", 1)[-1] for entry in entries if isinstance(entry, RepoFolder)]
    candidates = [decision.name for decision in resolve_variants(names, system)
                  if decision.accepted]
    metadata: dict[str, dict] = {}
    unreadable: list[VariantDecision] = []
    for name in candidates:
        try:
            metadata[name] = _fetch_metadata(api, repo_id, commit, name)
        except (ValueError, HfHubHTTPError) as error:
            unreadable.append(VariantDecision(name, False, f"rejected: {error}"))
    readable = [name for name in names if name not in {d.name for d in unreadable}]
    return resolve_variants(readable, system, metadata) + unreadable, metadata


def _fetch_metadata(api: HfApi, repo_id: str, commit: str, variant: str) -> dict:
    path = api.hf_hub_download(
        repo_id,
        f"build/{variant}/metadata.json",
        revision=commit,
        repo_type=cache.REPO_TYPE,
        cache_dir=cache.cache_dir(),
    )
    return read_metadata(Path(path).parent)


def _download_verified(
    api: HfApi, repo_id: str, commit: str, variant: str, metadata: dict
) -> Path:
    """The variant's directory in the cache, its digests checked.

    A missing or damaged variant is downloaded into a staging cache, verified there and only
    then renamed into place (replacing a damaged copy whole), so a failed or interrupted
    download never leaves a variant that looks complete. A download that does not match its
    digests is tried once more.
    """
    variant_dir = cache.snapshot_dir(repo_id, commit) / "build" / variant
    if cache.is_complete(variant_dir, metadata):
        if not cache.digest_problems(variant_dir, metadata):
            return variant_dir
    reuse_metadata = cache.holds_only_metadata(variant_dir)
    if variant_dir.exists() and not reuse_metadata:
        logger.warning("kernel %s@%s %s: cached files are damaged or incomplete; downloading "
                       "them again", repo_id, commit, variant)
    problems: list[str] = []
    for attempt in range(2):
        with cache.staging_cache() as staging:
            skip_metadata = reuse_metadata and attempt == 0
            staged = _download_to_staging(api, staging, repo_id, commit, variant, skip_metadata)
            staged_metadata = metadata if skip_metadata else read_metadata(staged)
            problems = cache.digest_problems(staged, staged_metadata)
            if not problems:
                return cache.install_staged_variant(staging, repo_id, commit, variant)
    raise cache.KernelIntegrityError(
        f"kernel {repo_id}@{commit} variant {variant} does not match the digests in its "
        f"metadata.json even after downloading it again:\n  " + "\n  ".join(problems)
    )


def _download_to_staging(
    api: HfApi, staging: Path, repo_id: str, commit: str, variant: str, skip_metadata: bool
) -> Path:
    """Download the variant's files into the staging cache; skip_metadata leaves out the
    metadata.json that resolution already put in the cache."""
    ignored = _IGNORED_FILES + ([f"build/{variant}/metadata.json"] if skip_metadata else [])
    api.snapshot_download(
        repo_id,
        repo_type=cache.REPO_TYPE,
        revision=commit,
        allow_patterns=[f"build/{variant}/*"],
        ignore_patterns=ignored,
        cache_dir=staging,
    )
    return cache.staged_variant_dir(staging, repo_id, commit, variant)


def _cached_variant(repo_id: str, commit: str, system: SystemInfo) -> Path:
    decisions, build_dir = _cached_decisions(repo_id, commit, system)
    chosen = next((decision for decision in decisions if decision.accepted), None)
    if chosen is None:
        raise NoCompatibleVariantError(f"the kernel cache {build_dir}", decisions, system)
    variant_dir = build_dir / chosen.name
    problems = cache.digest_problems(variant_dir, read_metadata(variant_dir))
    if problems:
        raise cache.KernelIntegrityError(
            f"cached kernel {variant_dir} does not match its metadata.json digests and the Hub "
            "is offline, so it cannot be repaired:\n  " + "\n  ".join(problems)
        )
    return variant_dir


def _cached_decisions(
    repo_id: str, commit: str, system: SystemInfo
) -> tuple[list[VariantDecision], Path]:
    """Decisions on the variants of a cached snapshot; one that is incomplete (only its
    metadata.json was fetched) is rejected for that reason."""
    build_dir = cache.snapshot_dir(repo_id, commit) / "build"
    metadata: dict[str, dict] = {}
    incomplete: list[VariantDecision] = []
    for variant_dir in sorted(build_dir.iterdir()) if build_dir.is_dir() else []:
        try:
            variant_metadata = read_metadata(variant_dir)
        except ValueError:
            continue
        if cache.is_complete(variant_dir, variant_metadata):
            metadata[variant_dir.name] = variant_metadata
        else:
            reason = "rejected: not in the local cache (only its metadata.json was downloaded)"
            incomplete.append(VariantDecision(variant_dir.name, False, reason))
    return resolve_variants(metadata.keys(), system, metadata) + incomplete, build_dir


def _check_trust(repo_id: str, trust_remote_code: bool | list[str]) -> None:
    if trust_remote_code is True or (
        isinstance(trust_remote_code, (list, tuple)) and repo_id in trust_remote_code
    ):
        return
    org = repo_id.split("/")[0] if "/" in repo_id else ""
    trusted = {name.strip() for name in os.environ.get(TRUSTED_ORGS_ENV, "").split(",")}
    if org and org in trusted:
        return
    if constants.HF_HUB_OFFLINE:
        logger.warning("offline: cannot ask the Hub whether %s is a trusted kernel publisher; "
                       "loading %s from the cache", org or repo_id, repo_id)
        return
    if org and _hub_trusts(org):
        return
    raise UntrustedKernelError(
        f"{repo_id} is not from a trusted kernel publisher: {org or 'its owner'!r} is neither in "
        f"{TRUSTED_ORGS_ENV} ({os.environ.get(TRUSTED_ORGS_ENV, 'unset')}) nor flagged a trusted "
        "kernel publisher on the Hub. Loading a kernel runs its code; pass "
        "trust_remote_code=True (or a list of repo ids) if you trust it."
    )


def _hub_trusts(org: str) -> bool:
    try:
        overview = HfApi().get_organization_overview(org)
    except HfHubHTTPError:
        return False
    return bool(getattr(overview, "trustedKernelPublisher", False))


def _versions(branches) -> dict[int, str]:
    return {int(name[1:]): sha for name, sha in dict(branches).items()
            if name[:1] == "v" and name[1:].isdigit()}


def _warn_if_newer(repo_id: str, version: int, versions: dict[int, str]) -> None:
    newest = max(versions, default=version)
    if newest > version:
        warnings.warn(
            f"{repo_id}: loading version {version}, but version {newest} exists "
            f"(versions: {_listed(versions)})",
            stacklevel=4,
        )


def _listed(names) -> str:
    return ", ".join(str(name) for name in sorted(names)) or "none"
