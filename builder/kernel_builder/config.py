"""build.toml (edition 1): parse, validate strictly, and resolve into frozen dataclasses.

Every problem in the file is collected in one pass and raised as one ConfigError. The JSON
Schema beside this module (build.schema.json) describes the same shape; docs/build-toml.md
documents every key.
"""

from __future__ import annotations

import keyword
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config_errors import ConfigError, ErrorCollector, describe_value, did_you_mean

EDITION = 1
BACKENDS = ("cuda", "rocm", "cpu", "triton", "npu")
COMPILED_BACKENDS = ("cuda", "rocm", "cpu")
KERNEL_DEPENDS = ("torch", "openmp")
# The build appends +PTX to the highest of these.
DEFAULT_CUDA_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "9.0")

SOURCE_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "cuda": (".cu", ".cuh", ".h", ".hpp"),
    "rocm": (".cu", ".cuh", ".h", ".hpp"),
    "cpu": (".cpp", ".cc", ".h", ".hpp"),
    "triton": (".py",),
    "npu": (".py",),
}
TORCH_SOURCE_EXTENSIONS = (".cpp", ".cc", ".h", ".hpp")
PYTHON_SOURCE_EXTENSIONS = (".py",)

# Optional [kernel.*] keys and the backends each one is allowed on.
KERNEL_KEY_BACKENDS: dict[str, tuple[str, ...]] = {
    "include": COMPILED_BACKENDS,
    "depends": COMPILED_BACKENDS,
    "cxx-flags": COMPILED_BACKENDS,
    "cuda-capabilities": ("cuda",),
    "cuda-flags": ("cuda",),
    "rocm-archs": ("rocm",),
}

TOP_LEVEL_KEYS = ("general", "torch", "kernel")
GENERAL_KEYS = ("name", "version", "edition", "license", "backends", "hub")
HUB_KEYS = ("repo-id",)
TORCH_KEYS = ("src", "include", "python-src", "cxx-flags")
KERNEL_KEYS = ("backend", "src", *KERNEL_KEY_BACKENDS)

# build.schema.json carries the same patterns (a test compares them).
NAME_PATTERN = r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$"
KERNEL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
CUDA_CAPABILITY_PATTERN = r"^[0-9]+\.[0-9]+[af]?(\+PTX)?$"
ROCM_ARCH_PATTERN = r"^gfx[0-9]{1,2}[0-9a-f]{2}$"


@dataclass(frozen=True)
class HubConfig:
    repo_id: str


@dataclass(frozen=True)
class GeneralConfig:
    name: str
    python_name: str
    version: int
    edition: int
    license: str
    backends: tuple[str, ...]
    hub: HubConfig | None


@dataclass(frozen=True)
class TorchConfig:
    src: tuple[Path, ...]
    include: tuple[Path, ...]
    python_src: tuple[Path, ...]
    cxx_flags: tuple[str, ...]


@dataclass(frozen=True)
class KernelConfig:
    name: str
    backend: str
    src: tuple[Path, ...]
    include: tuple[Path, ...]
    depends: tuple[str, ...]
    cuda_capabilities: tuple[str, ...] | None
    cuda_flags: tuple[str, ...]
    cxx_flags: tuple[str, ...]
    rocm_archs: tuple[str, ...] | None


@dataclass(frozen=True)
class BuildConfig:
    path: Path
    root: Path
    general: GeneralConfig
    torch: TorchConfig
    kernels: tuple[KernelConfig, ...]

    def kernels_for(self, backend: str) -> tuple[KernelConfig, ...]:
        return tuple(kernel for kernel in self.kernels if kernel.backend == backend)

    def to_dict(self) -> dict:
        """The resolved configuration, JSON-friendly, with paths relative to `root`."""
        general: dict = {
            "name": self.general.name,
            "python-name": self.general.python_name,
            "version": self.general.version,
            "edition": self.general.edition,
            "license": self.general.license,
            "backends": list(self.general.backends),
        }
        if self.general.hub is not None:
            general["hub"] = {"repo-id": self.general.hub.repo_id}
        return {
            "path": str(self.path),
            "root": str(self.root),
            "general": general,
            "torch": {
                "src": self._relative(self.torch.src),
                "include": self._relative(self.torch.include),
                "python-src": self._relative(self.torch.python_src),
                "cxx-flags": list(self.torch.cxx_flags),
            },
            "kernel": {kernel.name: self._kernel_dict(kernel) for kernel in self.kernels},
        }

    def _relative(self, paths: tuple[Path, ...]) -> list[str]:
        return [path.relative_to(self.root).as_posix() for path in paths]

    def _kernel_dict(self, kernel: KernelConfig) -> dict:
        """The keys that apply to the backend; the default cuda-capabilities filled in."""
        entry: dict = {"backend": kernel.backend, "src": self._relative(kernel.src)}
        if kernel.backend in COMPILED_BACKENDS:
            entry["include"] = self._relative(kernel.include)
            entry["depends"] = list(kernel.depends)
            entry["cxx-flags"] = list(kernel.cxx_flags)
        if kernel.backend == "cuda":
            entry["cuda-capabilities"] = list(kernel.cuda_capabilities or DEFAULT_CUDA_CAPABILITIES)
            entry["cuda-flags"] = list(kernel.cuda_flags)
        if kernel.backend == "rocm":
            entry["rocm-archs"] = list(kernel.rocm_archs or ())
        return entry


# Stand-ins for a missing table, so the remaining tables are still checked; never returned.
_UNSET_GENERAL = GeneralConfig(
    name="", python_name="", version=0, edition=0, license="", backends=(), hub=None
)
_UNSET_TORCH = TorchConfig(src=(), include=(), python_src=(), cxx_flags=())


def load_config(path: Path | str) -> BuildConfig:
    """Parse and validate build.toml; raises ConfigError listing every problem found."""
    path = Path(path)
    errors = ErrorCollector(str(path))
    document = _read_toml(path)
    root = path.resolve().parent

    _reject_unknown_keys(document, TOP_LEVEL_KEYS, None, errors)
    general_table = _required_table(document, "general", errors)
    torch_table = _required_table(document, "torch", errors)
    general = _parse_general(general_table, errors) if general_table is not None else _UNSET_GENERAL
    torch = _parse_torch(torch_table, root, errors) if torch_table is not None else _UNSET_TORCH
    kernels = _parse_kernels(document.get("kernel"), root, errors)
    _cross_check(general, kernels, root, errors)

    errors.raise_if_any()
    return BuildConfig(
        path=path.resolve(), root=root, general=general, torch=torch, kernels=kernels
    )


def _read_toml(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            [f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: TOML syntax error: {error}"]) from None


def _required_table(document: dict, key: str, errors: ErrorCollector) -> dict | None:
    value = document.get(key)
    if value is None:
        errors.add(f"missing required table [{key}]")
        return None
    if not isinstance(value, dict):
        errors.add(f"`{key}` must be a table [{key}], found {describe_value(value)}")
        return None
    return value


def _reject_unknown_keys(
    table: dict, known: tuple[str, ...], label: str | None, errors: ErrorCollector
) -> None:
    for key in table:
        if key not in known:
            hint = did_you_mean(key, known)
            allowed = ", ".join(known)
            if label is None:
                errors.add(f"unknown top-level table `{key}`{hint}; allowed: {allowed}")
            else:
                errors.add(f"unknown key{hint}; allowed: {allowed}", table=label, key=key)


class _TableReader:
    """Reads typed values out of one TOML table, reporting problems under the table's label."""

    def __init__(self, table: dict, label: str, root: Path, errors: ErrorCollector) -> None:
        self.table = table
        self.label = label
        self.root = root
        self.errors = errors

    def error(self, key: str, message: str) -> None:
        self.errors.add(message, table=self.label, key=key)

    def string(
        self,
        key: str,
        *,
        required: bool,
        pattern: str | None = None,
        pattern_help: str = "",
        allowed: tuple[str, ...] | None = None,
    ) -> str | None:
        if key not in self.table:
            if required:
                self.error(key, "missing required key (expected a string)")
            return None
        value = self.table[key]
        if not isinstance(value, str):
            self.error(key, f"expected a string, found {describe_value(value)}")
            return None
        problem = _string_problem(value, pattern, pattern_help, allowed)
        if problem:
            self.error(key, problem)
            return None
        return value

    def integer(
        self, key: str, *, required: bool, minimum: int, exactly: int | None = None
    ) -> int | None:
        expected = f"the integer {exactly}" if exactly is not None else f"an integer >= {minimum}"
        if key not in self.table:
            if required:
                self.error(key, f"missing required key (expected {expected})")
            return None
        value = self.table[key]
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        if not is_integer or value < minimum or (exactly is not None and value != exactly):
            self.error(key, f"expected {expected}, found {describe_value(value)}")
            return None
        return value

    def string_list(
        self,
        key: str,
        *,
        required: bool = False,
        non_empty: bool = False,
        pattern: str | None = None,
        pattern_help: str = "",
        allowed: tuple[str, ...] | None = None,
        item_problem: Callable[[str], str | None] | None = None,
    ) -> tuple[str, ...] | None:
        """The list's strings, or None when the key is absent or any item is invalid."""
        if key not in self.table:
            if required:
                self.error(key, "missing required key (expected a non-empty array of strings)")
            return None
        value = self.table[key]
        if not isinstance(value, list):
            self.error(key, f"expected an array of strings, found {describe_value(value)}")
            return None
        if non_empty and not value:
            self.error(key, "expected a non-empty array, found an empty array")
            return None
        valid = True
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.error(key, f"item {index}: expected a string, found {describe_value(item)}")
                valid = False
                continue
            problem = _string_problem(item, pattern, pattern_help, allowed)
            if problem is None and item_problem is not None:
                problem = item_problem(item)
            if problem:
                self.error(key, problem)
                valid = False
            elif value.index(item) != index:
                self.error(key, f'"{item}" is listed twice')
                valid = False
        return tuple(value) if valid else None

    def path_list(
        self,
        key: str,
        *,
        required: bool = False,
        directories: bool = False,
        extensions: tuple[str, ...] | None = None,
        owner: str = "",
    ) -> tuple[Path, ...] | None:
        """Existing files (or directories) relative to the root, resolved to absolute paths."""

        def problem(item: str) -> str | None:
            return _path_problem(self.root, item, directories, extensions, owner)

        items = self.string_list(key, required=required, non_empty=required, item_problem=problem)
        if items is None:
            return None
        return tuple(self.root / item for item in items)


def _string_problem(
    value: str, pattern: str | None, pattern_help: str, allowed: tuple[str, ...] | None
) -> str | None:
    if allowed is not None and value not in allowed:
        choices = ", ".join(f'"{choice}"' for choice in allowed)
        return f'expected one of {choices}, found "{value}"{did_you_mean(value, allowed)}'
    if pattern is not None and not re.fullmatch(pattern, value):
        return f'expected {pattern_help}, found "{value}"'
    return None


def _path_problem(
    root: Path, item: str, directory: bool, extensions: tuple[str, ...] | None, owner: str
) -> str | None:
    relative = Path(item)
    if relative.is_absolute() or ".." in relative.parts:
        return f'"{item}" must be a relative path inside {root} (no leading "/", no "..")'
    resolved = root / relative
    if directory:
        if not resolved.is_dir():
            return f'directory "{item}" does not exist (looked for {resolved})'
        return None
    if extensions is not None and relative.suffix not in extensions:
        allowed = ", ".join(extensions)
        return f'"{item}" has extension "{relative.suffix}"; {owner} sources must end in {allowed}'
    if not resolved.is_file():
        return f'file "{item}" does not exist (looked for {resolved})'
    return None


def _parse_general(table: dict, errors: ErrorCollector) -> GeneralConfig:
    _reject_unknown_keys(table, GENERAL_KEYS, "general", errors)
    reader = _TableReader(table, "general", Path("."), errors)
    name = reader.string(
        "name",
        required=True,
        pattern=NAME_PATTERN,
        pattern_help="a lowercase kebab-case or snake_case name starting with a letter",
    )
    python_name = name.replace("-", "_") if name else ""
    if keyword.iskeyword(python_name):
        reader.error(
            "name",
            f'"{name}" becomes the Python package `{python_name}`, which is a Python keyword',
        )
    version = reader.integer("version", required=True, minimum=1)
    edition = reader.integer("edition", required=True, minimum=EDITION, exactly=EDITION)
    license_name = reader.string(
        "license",
        required=True,
        pattern=r"^\S.*$",
        pattern_help='a non-empty license name such as "Apache-2.0"',
    )
    backends = reader.string_list("backends", required=True, non_empty=True, allowed=BACKENDS)
    return GeneralConfig(
        name=name or "",
        python_name=python_name,
        version=version or 0,
        edition=edition or 0,
        license=license_name or "",
        backends=backends or (),
        hub=_parse_hub(table.get("hub"), errors),
    )


def _parse_hub(value: object, errors: ErrorCollector) -> HubConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add(
            f"expected a table [general.hub], found {describe_value(value)}",
            table="general",
            key="hub",
        )
        return None
    _reject_unknown_keys(value, HUB_KEYS, "general.hub", errors)
    reader = _TableReader(value, "general.hub", Path("."), errors)
    repo_id = reader.string(
        "repo-id",
        required=True,
        pattern=REPO_ID_PATTERN,
        pattern_help='a Hub repository id "org/name"',
    )
    return HubConfig(repo_id=repo_id or "")


def _parse_torch(table: dict, root: Path, errors: ErrorCollector) -> TorchConfig:
    _reject_unknown_keys(table, TORCH_KEYS, "torch", errors)
    reader = _TableReader(table, "torch", root, errors)
    return TorchConfig(
        src=reader.path_list(
            "src", required=True, extensions=TORCH_SOURCE_EXTENSIONS, owner="[torch]"
        )
        or (),
        include=reader.path_list("include", directories=True) or (),
        python_src=reader.path_list(
            "python-src", extensions=PYTHON_SOURCE_EXTENSIONS, owner="python-src"
        )
        or (),
        cxx_flags=reader.string_list("cxx-flags") or (),
    )


def _parse_kernels(value: object, root: Path, errors: ErrorCollector) -> tuple[KernelConfig, ...]:
    if value is None:
        errors.add("missing required table [kernel.<name>] (declare at least one kernel)")
        return ()
    if not isinstance(value, dict):
        errors.add(f"`kernel` must hold tables [kernel.<name>], found {describe_value(value)}")
        return ()
    if not value:
        errors.add("[kernel] declares no kernels (add at least one [kernel.<name>] table)")
    kernels = []
    for name, table in value.items():
        if not isinstance(table, dict):
            errors.add(
                f"expected a table [kernel.{name}], found {describe_value(table)}",
                table="kernel",
                key=name,
            )
            continue
        kernels.append(_parse_kernel(name, table, root, errors))
    return tuple(kernels)


def _parse_kernel(name: str, table: dict, root: Path, errors: ErrorCollector) -> KernelConfig:
    label = f"kernel.{name}"
    if not re.fullmatch(KERNEL_NAME_PATTERN, name):
        errors.add(
            f'kernel name "{name}" must be an identifier '
            '(letters, digits, "_"; not starting with a digit)',
            table=label,
        )
    _reject_unknown_keys(table, KERNEL_KEYS, label, errors)
    reader = _TableReader(table, label, root, errors)
    backend = reader.string("backend", required=True, allowed=BACKENDS)

    def applies(key: str) -> bool:
        if backend is None or backend in KERNEL_KEY_BACKENDS[key]:
            return True
        if key in table:
            only = ", ".join(KERNEL_KEY_BACKENDS[key])
            reader.error(
                key, f'applies only to {only} kernels; this kernel\'s backend is "{backend}"'
            )
        return False

    extensions = SOURCE_EXTENSIONS.get(backend) if backend else None
    src = reader.path_list("src", required=True, extensions=extensions, owner=f"{backend} kernel")
    include = reader.path_list("include", directories=True) if applies("include") else None
    depends = reader.string_list("depends", allowed=KERNEL_DEPENDS) if applies("depends") else None
    cxx_flags = reader.string_list("cxx-flags") if applies("cxx-flags") else None
    cuda_flags = reader.string_list("cuda-flags") if applies("cuda-flags") else None
    cuda_capabilities = None
    if applies("cuda-capabilities"):
        cuda_capabilities = reader.string_list(
            "cuda-capabilities",
            non_empty=True,
            pattern=CUDA_CAPABILITY_PATTERN,
            pattern_help='a CUDA capability like "8.0", "9.0a" or "9.0+PTX"',
        )
    rocm_archs = None
    if applies("rocm-archs"):
        rocm_archs = reader.string_list(
            "rocm-archs",
            non_empty=True,
            pattern=ROCM_ARCH_PATTERN,
            pattern_help='a ROCm architecture like "gfx942" or "gfx90a"',
        )
    return KernelConfig(
        name=name,
        backend=backend or "",
        src=src or (),
        include=include or (),
        depends=depends or (),
        cuda_capabilities=cuda_capabilities,
        cuda_flags=cuda_flags or (),
        cxx_flags=cxx_flags or (),
        rocm_archs=rocm_archs,
    )


def _cross_check(
    general: GeneralConfig, kernels: tuple[KernelConfig, ...], root: Path, errors: ErrorCollector
) -> None:
    """Checks that span tables. Invalid values became empty ones, which are skipped here."""
    kernel_backends = {kernel.backend for kernel in kernels}
    every_kernel_backend_known = bool(kernels) and "" not in kernel_backends
    if general.backends:
        for backend in general.backends:
            if every_kernel_backend_known and backend not in kernel_backends:
                errors.add(
                    f'backend "{backend}" has no [kernel.*] table with backend = "{backend}"',
                    table="general",
                    key="backends",
                )
        for kernel in kernels:
            if kernel.backend and kernel.backend not in general.backends:
                errors.add(
                    f'backend "{kernel.backend}" is not listed in [general] backends',
                    table=f"kernel.{kernel.name}",
                    key="backend",
                )
    owner_of_source: dict[tuple[str, Path], str] = {}
    for kernel in kernels:
        for source in kernel.src:
            owner = owner_of_source.setdefault((kernel.backend, source), kernel.name)
            if owner != kernel.name:
                errors.add(
                    f'"{source.relative_to(root).as_posix()}" is also a source of [kernel.{owner}] '
                    f'(same backend "{kernel.backend}")',
                    table=f"kernel.{kernel.name}",
                    key="src",
                )
