"""Per-file digests of a variant directory, in Hugging Face kernels' metadata.json format.

One implementation for both sides: the builder writes these into metadata.json, the loader
verifies them.

sha256 of each file, base64 of the raw digest, keyed by the POSIX path relative to the
variant. Left out, as kernels 0.17.2 leaves them out (so both loaders verify the same set):
the top-level metadata.json and metadata.json.sigstore, __pycache__ dirs, *.pyc anywhere.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

ALGORITHM = "sha256"
EXCLUDED_TOP_LEVEL = frozenset({"metadata.json", "metadata.json.sigstore"})
EXCLUDED_DIRS = frozenset({"__pycache__"})


def variant_files(variant_dir: Path) -> list[Path]:
    """Every file the digest covers, sorted."""
    files = []
    for path in sorted(variant_dir.rglob("*")):
        relative = path.relative_to(variant_dir)
        if not path.is_file() or EXCLUDED_DIRS.intersection(relative.parts[:-1]):
            continue
        if relative.as_posix() in EXCLUDED_TOP_LEVEL or path.suffix == ".pyc":
            continue
        files.append(path)
    return files


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return base64.b64encode(sha.digest()).decode("ascii")


def variant_digests(variant_dir: Path) -> dict[str, str]:
    return {
        path.relative_to(variant_dir).as_posix(): file_digest(path)
        for path in variant_files(variant_dir)
    }
