"""`kernel-builder check`: is a staged variant complete, consistent, portable and importable?

Each check returns a CheckResult; a failed check says what is wrong by name (the file, the
symbol, the literal, the last lines of the import's stderr).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kernel_hub.errors import VariantError
from kernel_hub.variants import NoarchVariant, Variant, backend_type, parse_variant

from .config import BACKENDS
from kernel_hub.digest import ALGORITHM, variant_digests
from .elf_reader import ElfError, ElfInfo, read_elf

# manylinux_2_28 as auditwheel defines it for x86_64 and aarch64: the newest version an extension
# may require from each system library family. Families not listed (libcudart's, libgomp's, ...)
# are not limited.
SYMBOL_POLICY = "manylinux_2_28"
MAX_SYMBOL_VERSIONS: dict[str, tuple[int, ...]] = {
    "GLIBC": (2, 28),
    "GLIBCXX": (3, 4, 24),
    "CXXABI": (1, 3, 11),
    "GCC": (7, 0, 0),
}
ALLOWED_NAMED_VERSIONS = frozenset({"CXXABI_TM_1", "CXXABI_FLOAT128"})

METADATA_FILE = "metadata.json"
OPS_FILE = "_ops.py"
EXTENSION_SUFFIX = ".abi3.so"
ORIGIN_PREFIXES = ("$ORIGIN", "${ORIGIN}")
NAMESPACE_LABELS = (*BACKENDS, "universal")
IMPORT_TIMEOUT_S = 600
STDERR_TAIL_LINES = 20
LISTED_NAMES_LIMIT = 10


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_build_dir(build_dir: Path, run_import: bool = True) -> dict[str, list[CheckResult]]:
    """check_variant for every variant directory under build_dir (hidden staging dirs skipped)."""
    return {
        entry.name: check_variant(entry, run_import=run_import)
        for entry in sorted(Path(build_dir).iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    }


def check_variant(path: Path, run_import: bool = True) -> list[CheckResult]:
    """Every check on one variant directory; run_import=False leaves out the (slow) import."""
    path = Path(path)
    metadata_result, metadata = _check_metadata(path)
    if metadata is None:
        return [metadata_result]
    variant, variant_result = _check_variant_name(path.name, metadata)
    results = [
        metadata_result,
        variant_result,
        _check_metadata_with_hf_kernels(path),
        _check_digest(path, metadata),
        _check_digest_with_hf_kernels(path, metadata),
    ]
    results += _check_extensions(path, metadata, variant)
    results.append(_check_namespace_literals(path, metadata))
    if run_import:
        results.append(_check_import(path, metadata, variant))
    return results


def _check_metadata(path: Path) -> tuple[CheckResult, dict | None]:
    metadata_path = path / METADATA_FILE
    if not metadata_path.is_file():
        return CheckResult("metadata", False, f"{metadata_path} is missing"), None
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return CheckResult(
            "metadata", False, f"{METADATA_FILE} cannot be read as JSON: {error}"
        ), None
    problems = _metadata_problems(metadata)
    if problems:
        return CheckResult("metadata", False, "; ".join(problems)), None
    summary = (
        f"id {metadata['id']}, {metadata['name']} v{metadata['version']}, "
        f"backend {metadata['backend']['type']}"
    )
    return CheckResult("metadata", True, summary), metadata


def _metadata_problems(metadata: object) -> list[str]:
    if not isinstance(metadata, dict):
        return [f"{METADATA_FILE} must hold a JSON object"]
    expected_types = {
        "id": (str, "string"),
        "name": (str, "string"),
        "version": (int, "integer"),
        "license": (str, "string"),
        "backend": (dict, "object"),
    }
    problems = [
        f'"{key}" must be a JSON {label}, found {json.dumps(metadata.get(key))}'
        for key, (kind, label) in expected_types.items()
        if not isinstance(metadata.get(key), kind) or isinstance(metadata.get(key), bool)
    ]
    if isinstance(metadata.get("id"), str) and not metadata["id"].isidentifier():
        problems.append(
            f'"id" {metadata["id"]!r} must be a Python identifier (it is the module name)'
        )
    backend = metadata.get("backend")
    if isinstance(backend, dict) and not isinstance(backend.get("type"), str):
        problems.append('"backend" needs a string "type"')
    return problems


def _check_variant_name(name: str, metadata: dict) -> tuple[Variant | None, CheckResult]:
    declared = metadata["backend"]["type"]
    try:
        variant = parse_variant(name)
    except VariantError as error:
        return None, CheckResult("variant-name", False, str(error))
    try:
        expected = backend_type(variant)
    except VariantError as error:
        return variant, CheckResult("variant-name", False, str(error))
    if declared != expected:
        detail = f'{name} needs backend.type "{expected}", metadata.json says "{declared}"'
        return variant, CheckResult("variant-name", False, detail)
    return variant, CheckResult("variant-name", True, f'{name} matches backend.type "{declared}"')


def _check_metadata_with_hf_kernels(path: Path) -> CheckResult:
    try:
        from kernels._rust import Metadata
    except ImportError:
        return CheckResult(
            "hf-kernels-metadata", True, "skipped: Hugging Face's kernels is not installed"
        )
    try:
        Metadata.from_bytes((path / METADATA_FILE).read_bytes())
    except ValueError as error:
        return CheckResult(
            "hf-kernels-metadata", False, f"kernels rejects {METADATA_FILE}: {error}"
        )
    return CheckResult("hf-kernels-metadata", True, f"kernels parses {METADATA_FILE}")


def _check_digest(path: Path, metadata: dict) -> CheckResult:
    digest = metadata.get("digest")
    if not isinstance(digest, dict) or not isinstance(digest.get("files"), dict):
        return CheckResult("digest", False, f'{METADATA_FILE} has no "digest" object with "files"')
    if digest.get("algorithm") != ALGORITHM:
        return CheckResult(
            "digest",
            False,
            f'digest algorithm is {digest.get("algorithm")!r}, expected "{ALGORITHM}"',
        )
    listed: dict = digest["files"]
    actual = variant_digests(path)
    problems = []
    missing = sorted(set(listed) - set(actual))
    unlisted = sorted(set(actual) - set(listed))
    changed = sorted(name for name in set(listed) & set(actual) if listed[name] != actual[name])
    if missing:
        problems.append(f"listed but missing: {_names(missing)}")
    if unlisted:
        problems.append(f"present but not listed: {_names(unlisted)}")
    if changed:
        problems.append(f"contents differ from the digest: {_names(changed)}")
    if problems:
        return CheckResult("digest", False, "; ".join(problems))
    return CheckResult("digest", True, f"{len(actual)} files match their {ALGORITHM} digests")


def _check_digest_with_hf_kernels(path: Path, metadata: dict) -> CheckResult:
    try:
        from kernels._rust import Digest, DigestValidationError, Metadata
    except ImportError:
        return CheckResult(
            "hf-kernels-digest", True, "skipped: Hugging Face's kernels is not installed"
        )
    try:
        expected = Metadata.from_bytes((path / METADATA_FILE).read_bytes()).digest
    except ValueError:
        return CheckResult("hf-kernels-digest", False, f"kernels cannot read {METADATA_FILE}")
    if expected is None:
        return CheckResult(
            "hf-kernels-digest", False, f"kernels finds no digest in {METADATA_FILE}"
        )
    try:
        expected.validate(Digest.hash_variant(expected.algorithm, path))
    except DigestValidationError as error:
        violations = [str(violation) for violation in error.violations]
        return CheckResult(
            "hf-kernels-digest", False, f"kernels' verification fails: {_names(violations)}"
        )
    return CheckResult("hf-kernels-digest", True, "kernels' own verification passes")


def _check_extensions(path: Path, metadata: dict, variant: Variant | None) -> list[CheckResult]:
    expected_name = f"{metadata['id']}{EXTENSION_SUFFIX}"
    libraries = sorted(
        library
        for library in path.rglob("*.so")
        if "__pycache__" not in library.relative_to(path).parts
    )
    results = []
    if isinstance(variant, NoarchVariant) and libraries:
        found = _names([library.relative_to(path).as_posix() for library in libraries])
        results.append(
            CheckResult(
                "extension",
                False,
                f"noarch variant {path.name} must hold no compiled code: {found}",
            )
        )
    elif (
        variant is not None
        and not isinstance(variant, NoarchVariant)
        and not (path / expected_name).is_file()
    ):
        found = _names([library.name for library in libraries]) if libraries else "none"
        results.append(
            CheckResult(
                "extension", False, f"arch variant needs {expected_name}; .so files found: {found}"
            )
        )
    for library in libraries:
        results += _check_shared_object(path, library, metadata["id"], expected_name)
    return results


def _check_shared_object(
    path: Path, library: Path, module_id: str, expected_name: str
) -> list[CheckResult]:
    relative = library.relative_to(path).as_posix()
    try:
        info = read_elf(library)
    except ElfError as error:
        return [CheckResult(f"elf {relative}", False, str(error))]
    results = [
        _check_symbol_versions(relative, info),
        _check_search_paths(relative, info),
        _check_shared_libstdcxx(relative, info),
    ]
    if relative == expected_name:
        entry_point = f"PyInit_{module_id}"
        exported = entry_point in info.defined_symbols
        detail = (
            f"exports {entry_point}"
            if exported
            else f"does not export {entry_point}, so Python cannot import it"
        )
        results.append(CheckResult(f"extension {relative}", exported, detail))
    return results


def _check_shared_libstdcxx(relative: str, info: ElfInfo) -> CheckResult:
    """C++ code must use the process's one libstdc++: a static copy has its own locale
    facets and crashes on the first std::ostream use (seen on a machine whose g++ had only
    libstdc++.a to link)."""
    cxx_symbols = any("GLIBCXX" in version for version in info.required_versions)
    links_shared = "libstdc++.so.6" in info.needed
    ok = links_shared or not cxx_symbols
    detail = "needs libstdc++.so.6" if links_shared else (
        "no C++ runtime needed" if ok else "uses libstdc++ without linking libstdc++.so.6"
    )
    return CheckResult(f"libstdc++ {relative}", ok, detail)


def _check_symbol_versions(relative: str, info: ElfInfo) -> CheckResult:
    too_new = []
    newest: dict[str, tuple[tuple[int, ...], str]] = {}
    for version, symbols in sorted(info.required_versions.items()):
        family, _, number = version.partition("_")
        if family not in MAX_SYMBOL_VERSIONS or version in ALLOWED_NAMED_VERSIONS:
            continue
        parsed = _version_tuple(number)
        limit = MAX_SYMBOL_VERSIONS[family]
        if parsed is None or parsed > limit:
            needed_by = (
                ", ".join(symbols[:3]) + (", ..." if len(symbols) > 3 else "")
                if symbols
                else "no symbol"
            )
            limit_text = ".".join(map(str, limit))
            too_new.append(
                f"{version} (needed by {needed_by}) is newer than "
                f"{SYMBOL_POLICY}'s {family}_{limit_text}"
            )
        elif family not in newest or parsed > newest[family][0]:
            newest[family] = (parsed, version)
    if too_new:
        return CheckResult(f"symbol-versions {relative}", False, "; ".join(too_new))
    summary = (
        ", ".join(version for _, version in sorted(newest.values(), key=lambda item: item[1]))
        or "none"
    )
    return CheckResult(
        f"symbol-versions {relative}", True, f"within {SYMBOL_POLICY} (newest required: {summary})"
    )


def _version_tuple(number: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in number.split("."))
    except ValueError:
        return None


def _check_search_paths(relative: str, info: ElfInfo) -> CheckResult:
    entries = [("RPATH", entry) for entry in info.rpath] + [
        ("RUNPATH", entry) for entry in info.runpath
    ]
    machine_paths = [
        f"{kind} {entry}" for kind, entry in entries if not entry.startswith(ORIGIN_PREFIXES)
    ]
    if machine_paths:
        detail = (
            "search paths that point into the build machine (only $ORIGIN-relative ones "
            f"travel): {_names(machine_paths)}"
        )
        return CheckResult(f"rpath {relative}", False, detail)
    return CheckResult(
        f"rpath {relative}", True, f"{len(entries)} search path(s), all $ORIGIN-relative"
    )


def _check_namespace_literals(path: Path, metadata: dict) -> CheckResult:
    """Only _ops.py may spell the op namespace; everything else asks _ops for it."""
    pattern = _namespace_pattern(metadata["id"], metadata["name"].replace("-", "_"))
    hits = []
    for python_file in sorted(path.rglob("*.py")):
        relative = python_file.relative_to(path)
        if relative.as_posix() == OPS_FILE or "__pycache__" in relative.parts:
            continue
        text = python_file.read_text(encoding="utf-8", errors="replace")
        for line_number, line in enumerate(text.splitlines(), start=1):
            match = pattern.search(line)
            if match:
                hits.append(f"{relative.as_posix()}:{line_number} ({match.group(0)})")
    if hits:
        return CheckResult(
            "namespace-literals",
            False,
            f"the namespace is spelled outside {OPS_FILE} at {_names(hits)}",
        )
    return CheckResult("namespace-literals", True, f"the namespace appears only in {OPS_FILE}")


def _namespace_pattern(module_id: str, python_name: str) -> re.Pattern[str]:
    prefix = f"_{python_name}_"
    labels = set(NAMESPACE_LABELS)
    if module_id.startswith(prefix):
        labels.add(module_id[len(prefix) :].rsplit("_", 1)[0])
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    return re.compile(f"{re.escape(module_id)}|{re.escape(prefix)}(?:{alternatives})_")


# Runs in a fresh interpreter. argv: variant dir, module name (metadata id), backend ("" = torch's).
# A variant that kernel_hub would not pick on this machine (torch-rocm under a CUDA torch) is
# still imported, directly, so that its package is checked here too.
_IMPORT_SCRIPT = """
import json
import sys
from pathlib import Path

variant_dir, module_name, backend = Path(sys.argv[1]), sys.argv[2], sys.argv[3] or None
try:
    import kernel_hub
except ImportError:
    kernel_hub = None
if kernel_hub is None:
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        module_name, variant_dir / "__init__.py", submodule_search_locations=[str(variant_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    print(f"kernel_hub is not importable; imported __init__.py with importlib as {module_name}")
    sys.exit(0)
try:
    kernel_hub.get_local_kernel(variant_dir, backend=backend)
    print("imported with kernel_hub.get_local_kernel")
except kernel_hub.NoCompatibleVariantError:
    from kernel_hub.importer import import_variant
    import_variant(variant_dir, json.loads((variant_dir / "metadata.json").read_text()))
    print("kernel_hub would not pick this variant on this machine; imported it directly")
"""


def _check_import(path: Path, metadata: dict, variant: Variant | None) -> CheckResult:
    backend = "cpu" if variant is not None and variant.backend == "cpu" else ""
    command = [
        sys.executable,
        "-P",
        "-c",
        _IMPORT_SCRIPT,
        str(path.resolve()),
        metadata["id"],
        backend,
    ]
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_import_environment(),
            timeout=IMPORT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(
            "import", False, f"the import did not finish within {IMPORT_TIMEOUT_S} s"
        )
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        return CheckResult(
            "import",
            False,
            f"importing in a fresh Python failed (exit {completed.returncode}):\n{tail}",
        )
    how = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else "imported"
    return CheckResult("import", True, f"{how} in a fresh Python")


def _import_environment() -> dict[str, str]:
    """This environment, writing no __pycache__ into the variant, with kernel_hub on the path."""
    environment = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    spec = importlib.util.find_spec("kernel_hub")
    if spec is not None and spec.origin is not None:
        loader_root = str(Path(spec.origin).parent.parent)
        existing = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = loader_root + (os.pathsep + existing if existing else "")
    return environment


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED_NAMES_LIMIT])
    if len(items) > LISTED_NAMES_LIMIT:
        shown += f", and {len(items) - LISTED_NAMES_LIMIT} more"
    return shown


def format_check_report(report: dict[str, list[CheckResult]]) -> str:
    """One block per variant: each check as `ok`/`FAIL`, failures with their detail."""
    lines = []
    for variant, results in report.items():
        verdict = "ok" if all(r.ok for r in results) else "FAILED"
        lines.append(f"{variant}: {verdict}")
        for result in results:
            mark = "ok  " if result.ok else "FAIL"
            detail = f"  {result.detail}" if result.detail and not result.ok else ""
            lines.append(f"  {mark} {result.name}{detail}")
    return "\n".join(lines)
