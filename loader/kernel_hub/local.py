"""Load a kernel from a directory on disk, and the LOCAL_KERNELS override."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .errors import NoCompatibleVariantError, VariantError
from .importer import import_variant
from .resolve import VariantDecision, resolve_variants
from .system import SystemInfo, detect_system, select_backend
from .variants import parse_variant

logger = logging.getLogger("kernel_hub")

LOCAL_KERNELS_ENV = "LOCAL_KERNELS"


@dataclass(frozen=True)
class _Survey:
    """The variant directories found under a path and the decision on each."""

    location: Path
    dirs: dict[str, Path]
    metadata: dict[str, dict]
    decisions: list[VariantDecision]


def get_local_kernel(
    repo_path: str | Path, package_name: str | None = None, backend: str | None = None
) -> ModuleType:
    """Import the best variant of the kernel at repo_path for this system.

    repo_path is a kernel repository (variants under build/), a directory of variants, or one
    variant directory (metadata.json + __init__.py). backend="cpu" loads CPU variants under a
    GPU torch. Raises NoCompatibleVariantError, listing every variant and why it was rejected,
    when none fits.
    """
    system = select_backend(detect_system(), backend)
    survey = _survey(Path(repo_path), system)
    chosen = next((decision for decision in survey.decisions if decision.accepted), None)
    if chosen is None:
        raise NoCompatibleVariantError(str(survey.location), survey.decisions, system)
    variant_dir = survey.dirs[chosen.name]
    logger.info("loading kernel variant %s from %s: %s", chosen.name, variant_dir, chosen.reason)
    return import_variant(variant_dir, survey.metadata[chosen.name], package_name)


def get_kernel_variants_local(
    repo_path: str | Path, backend: str | None = None
) -> list[VariantDecision]:
    """Every variant found at repo_path with the decision on it, as get_local_kernel sees them."""
    system = select_backend(detect_system(), backend)
    return _survey(Path(repo_path), system).decisions


def local_kernel_overrides(value: str | None = None) -> dict[str, Path]:
    """Parse LOCAL_KERNELS ("org/repo=/path:org2/repo2=/path2"); value defaults to the
    environment variable. Empty entries are skipped; a malformed one is a ValueError."""
    text = os.environ.get(LOCAL_KERNELS_ENV, "") if value is None else value
    overrides: dict[str, Path] = {}
    for entry in text.split(":"):
        if not entry.strip():
            continue
        repo_id, separator, path = entry.partition("=")
        if not (separator and repo_id.strip() and path.strip()):
            raise ValueError(
                f"{LOCAL_KERNELS_ENV} entry {entry!r} is not repo_id=path; the variable reads "
                "org/repo=/path/to/kernel:org2/repo2=/other/path"
            )
        overrides[repo_id.strip()] = Path(path.strip())
    return overrides


def _survey(root: Path, system: SystemInfo) -> _Survey:
    single = _is_variant_dir(root)
    location, dirs = (root, {root.name: root}) if single else _find_variant_dirs(root)
    metadata: dict[str, dict] = {}
    unreadable: list[VariantDecision] = []
    for name, variant_dir in dirs.items():
        try:
            metadata[name] = read_metadata(variant_dir)
        except ValueError as error:
            unreadable.append(VariantDecision(name, False, f"rejected: {error}"))
    if single and not _is_variant_name(root.name):
        decisions = [_accept_as_given(root.name)] if root.name in metadata else []
    else:
        decisions = resolve_variants(metadata.keys(), system, metadata)
    return _Survey(location, dirs, metadata, decisions + unreadable)


def _is_variant_dir(path: Path) -> bool:
    return (path / "metadata.json").is_file() and (path / "__init__.py").is_file()


def _find_variant_dirs(root: Path) -> tuple[Path, dict[str, Path]]:
    """(where the variants are, {name: dir}): the variant subdirectories of root/build, else
    those of root. A variant subdirectory has a metadata.json or a variant name."""
    for base in (root / "build", root):
        if not base.is_dir():
            continue
        dirs = {
            entry.name: entry
            for entry in sorted(base.iterdir())
            if entry.is_dir()
            and ((entry / "metadata.json").is_file() or _is_variant_name(entry.name))
        }
        if dirs:
            return base, dirs
    return root, {}


def read_metadata(variant_dir: Path) -> dict:
    path = variant_dir / "metadata.json"
    if not path.is_file():
        raise ValueError("it has no metadata.json")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"its metadata.json cannot be read ({error})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("id"), str):
        raise ValueError("its metadata.json has no string 'id' (the module name to import)")
    return metadata


def _accept_as_given(name: str) -> VariantDecision:
    return VariantDecision(
        name,
        True,
        "accepted: the directory was given as the variant itself and its name is not a "
        "variant name, so its compatibility was not checked",
        0,
    )


def _is_variant_name(name: str) -> bool:
    try:
        parse_variant(name)
    except VariantError:
        return False
    return True
