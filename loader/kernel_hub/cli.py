"""The `kernel-hub` command: download, lock, info, versions, verify.

Every command returns an exit status: 0 on success, 1 when `verify` finds files that differ
from their digests (or from kernels.lock), 2 on any error, which is printed as one line to
stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from huggingface_hub import HfApi, constants

from . import cache, hub
from .local import get_kernel_variants_local, read_metadata
from .lock import LockMismatchError, lock_project, read_lock, verify_locked_variant

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        arguments = _parser().parse_args(argv)
    except _UsageError as error:
        print(f"{error} (see kernel-hub --help)", file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_ERROR
    try:
        return arguments.command(arguments)
    except Exception as error:  # noqa: BLE001 - the CLI reports every failure the same way
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"kernel-hub {arguments.name}: {type(error).__name__}: {first_line}",
              file=sys.stderr)
        return EXIT_ERROR


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage too)."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kernel-hub", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    download = _command(commands, "download", _download,
                        "download a kernel's best variant (or all) into the cache")
    download.add_argument("repo_id")
    _add_pin(download, required=True)
    download.add_argument("--all-variants", action="store_true",
                          help="download every variant, not only the one for this system")
    download.add_argument("--backend", help="load variants for this backend (e.g. cpu)")

    lock = _command(commands, "lock", _lock,
                    "write kernels.lock for [tool.kernel-hub.dependencies] in pyproject.toml")
    lock.add_argument("project_dir", nargs="?", default=".", type=Path)

    info = _command(commands, "info", _info,
                    "metadata, archs and every variant with its decision")
    info.add_argument("repo_or_path")
    _add_pin(info, required=False)
    info.add_argument("--backend", help="decide for this backend (e.g. cpu)")
    info.add_argument("--json", action="store_true", help="print JSON")

    versions = _command(commands, "versions", _versions, "the v<N> branches of a Hub kernel")
    versions.add_argument("repo_id")

    verify = _command(commands, "verify", _verify,
                      "check the cached variants' files against their digests")
    verify.add_argument("repo_id")
    _add_pin(verify, required=True)
    verify.add_argument("--lockfile", type=Path,
                        help="also check each variant against this kernels.lock")
    return parser


def _command(commands, name: str, handler, help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command=handler, name=name)
    return parser


def _add_pin(parser: argparse.ArgumentParser, required: bool) -> None:
    pin = parser.add_mutually_exclusive_group(required=required)
    pin.add_argument("--version", type=int, help="major version (the branch v<N>)")
    pin.add_argument("--revision", help="branch, tag or commit")


def _download(arguments) -> int:
    if not arguments.all_variants:
        print(hub.install_kernel(arguments.repo_id, revision=arguments.revision,
                                 version=arguments.version, backend=arguments.backend))
        return EXIT_OK
    for variant_dir in _download_all_variants(arguments.repo_id, arguments.revision,
                                              arguments.version):
        print(variant_dir)
    return EXIT_OK


def _lock(arguments) -> int:
    print(lock_project(arguments.project_dir))
    return EXIT_OK


def _info(arguments) -> int:
    report = _kernel_info(arguments.repo_or_path, arguments.revision, arguments.version,
                         arguments.backend)
    print(json.dumps(report, indent=2) if arguments.json else _render_info(report))
    return EXIT_OK


def _versions(arguments) -> int:
    refs = HfApi().list_repo_refs(arguments.repo_id, repo_type=cache.REPO_TYPE)
    versions = sorted((int(branch.name[1:]), branch.target_commit) for branch in refs.branches
                      if branch.name[:1] == "v" and branch.name[1:].isdigit())
    if not versions:
        raise LookupError(f"{arguments.repo_id} has no v<N> branches")
    for number, commit in versions:
        print(f"v{number}\t{commit}")
    return EXIT_OK


def _verify(arguments) -> int:
    problems, checked = _verify_cached(arguments.repo_id, arguments.revision, arguments.version,
                                      arguments.lockfile)
    for variant_dir in checked:
        print(f"{variant_dir}: {'ok' if variant_dir.name not in problems else 'MISMATCH'}")
        for line in problems.get(variant_dir.name, []):
            print(f"  {line}")
    return EXIT_MISMATCH if problems else EXIT_OK


def _download_all_variants(repo_id: str, revision: str | None, version: int | None) -> list[Path]:
    """Every build/ variant of the commit into the cache, digests checked."""
    commit, ref = hub._resolve_commit(repo_id, revision, version, offline=False)
    with cache.commit_lock(repo_id, commit):
        snapshot = HfApi().snapshot_download(
            repo_id, repo_type=cache.REPO_TYPE, revision=commit, allow_patterns=["build/*"],
            ignore_patterns=hub._IGNORED_FILES, cache_dir=cache.cache_dir(),
        )
        if ref is not None:
            cache.write_ref(repo_id, ref, commit)
    variant_dirs = sorted(path for path in (Path(snapshot) / "build").iterdir() if path.is_dir())
    for variant_dir in variant_dirs:
        problems = cache.digest_problems(variant_dir, read_metadata(variant_dir))
        if problems:
            raise cache.KernelIntegrityError(
                f"{repo_id}@{commit} {variant_dir.name}: {'; '.join(problems)}")
    return variant_dirs


def _kernel_info(repo_or_path: str, revision: str | None, version: int | None,
                 backend: str | None) -> dict:
    """{kernel, commit, name, id, license, backend, variants: [{name, accepted, reason,
    backend, archs}]}; the top-level metadata is the best accepted variant's."""
    path = Path(repo_or_path)
    if path.exists():
        commit = None
        decisions = get_kernel_variants_local(path, backend=backend)
        if (path / "metadata.json").is_file():
            metadata = {d.name: read_metadata(path) for d in decisions}
        else:
            metadata = {d.name: _read_optional([path / "build", path], d.name) for d in decisions}
    else:
        if revision is None and version is None:
            version = _newest_version(repo_or_path)
            revision = "main" if version is None else None
        commit, _ = hub._resolve_commit(repo_or_path, revision, version,
                                        constants.HF_HUB_OFFLINE)
        decisions = hub.get_kernel_variants(repo_or_path, revision=commit, backend=backend)
        build_dir = cache.snapshot_dir(repo_or_path, commit) / "build"
        metadata = {d.name: _read_optional([build_dir], d.name) for d in decisions}
    best = next((metadata[d.name] for d in decisions if d.accepted and metadata[d.name]),
                next((m for m in metadata.values() if m), {}))
    return {
        "kernel": repo_or_path,
        "commit": commit,
        "name": best.get("name"),
        "id": best.get("id"),
        "license": best.get("license"),
        "backend": (best.get("backend") or {}).get("type"),
        "variants": [
            {
                "name": d.name,
                "accepted": d.accepted,
                "reason": d.reason,
                "backend": (metadata[d.name].get("backend") or {}).get("type"),
                "archs": list((metadata[d.name].get("backend") or {}).get("archs") or []),
            }
            for d in decisions
        ],
    }


def _newest_version(repo_id: str) -> int | None:
    if constants.HF_HUB_OFFLINE:
        return max(cache.cached_versions(repo_id), default=None)
    refs = HfApi().list_repo_refs(repo_id, repo_type=cache.REPO_TYPE)
    return max((int(b.name[1:]) for b in refs.branches
                if b.name[:1] == "v" and b.name[1:].isdigit()), default=None)


def _read_optional(bases: list[Path], variant: str) -> dict:
    """The variant's metadata.json under the first base that has it (the cache holds only those
    the loader fetched), else {}."""
    for base in bases:
        try:
            return read_metadata(base / variant)
        except ValueError:
            continue
    return {}


def _render_info(report: dict) -> str:
    lines = [f"kernel:  {report['kernel']}"]
    if report["commit"]:
        lines.append(f"commit:  {report['commit']}")
    for key in ("name", "id", "license", "backend"):
        if report[key]:
            lines.append(f"{key + ':':<8} {report[key]}")
    lines.append("variants:")
    for variant in report["variants"]:
        mark = "accepted" if variant["accepted"] else "rejected"
        archs = f" [archs: {', '.join(variant['archs'])}]" if variant["archs"] else ""
        lines.append(f"  {variant['name']}: {mark}{archs}")
        lines.append(f"      {variant['reason']}")
    return "\n".join(lines)


def _verify_cached(repo_id: str, revision: str | None, version: int | None,
                   lockfile: Path | None) -> tuple[dict[str, list[str]], list[Path]]:
    """({variant: problems} for those that differ, every cached variant checked)."""
    commit, _ = hub._resolve_commit(repo_id, revision, version, constants.HF_HUB_OFFLINE)
    build_dir = cache.snapshot_dir(repo_id, commit) / "build"
    entry = read_lock(lockfile, repo_id) if lockfile is not None else None
    checked: list[Path] = []
    problems: dict[str, list[str]] = {}
    for variant_dir in sorted(build_dir.iterdir()) if build_dir.is_dir() else []:
        try:
            metadata = read_metadata(variant_dir)
        except ValueError:
            continue
        if not cache.is_complete(variant_dir, metadata):
            continue
        checked.append(variant_dir)
        found = cache.digest_problems(variant_dir, metadata)
        if entry is not None:
            try:
                verify_locked_variant(entry, variant_dir)
            except LockMismatchError as error:
                found.append(str(error))
        if found:
            problems[variant_dir.name] = found
    if not checked:
        raise LookupError(f"no variant of {repo_id}@{commit} is in the cache ({build_dir}); "
                          "run `kernel-hub download` first")
    return problems, checked
