"""Import one variant directory as a Python package named after its metadata `id`."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Mapping

logger = logging.getLogger("kernel_hub")

_imported_by_dir: dict[Path, ModuleType] = {}


def import_variant(
    variant_dir: Path, metadata: Mapping, package_name: str | None = None
) -> ModuleType:
    """Import `variant_dir` under the name metadata["id"], once per directory.

    The id is the variant's unique op namespace, so two variants never share a module name;
    the package search path is the variant directory, so relative imports inside it work.
    A variant whose id is already imported from another directory (the same build, copied) is
    not executed again, since that would define its torch ops a second time.
    """
    variant_dir = variant_dir.resolve()
    if variant_dir in _imported_by_dir:
        return _imported_by_dir[variant_dir]
    module_name = str(metadata["id"])
    if module_name in sys.modules:
        logger.info("kernel %s is already imported; reusing it for %s", module_name, variant_dir)
        module = sys.modules[module_name]
    else:
        module = _execute(module_name, _init_file(variant_dir, metadata, package_name))
    _imported_by_dir[variant_dir] = module
    return module


def _init_file(variant_dir: Path, metadata: Mapping, package_name: str | None) -> Path:
    # The flattened layout keeps __init__.py at the top; older builds nest it in a package dir.
    flat = variant_dir / "__init__.py"
    if flat.is_file():
        return flat
    package = package_name or str(metadata.get("name", "")).replace("-", "_")
    nested = variant_dir / package / "__init__.py"
    if package and nested.is_file():
        return nested
    raise FileNotFoundError(
        f"variant {variant_dir} has no __init__.py (looked for {flat}"
        + (f" and {nested})" if package else ")")
    )


def _execute(module_name: str, init_file: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        module_name, init_file, submodule_search_locations=[str(init_file.parent)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init_file} as {module_name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        _forget(module_name)
        error.add_note(f"while importing kernel variant {init_file.parent} as {module_name}")
        raise
    return module


def _forget(module_name: str) -> None:
    """Drop a half-imported package and its submodules so that a retry starts clean."""
    submodule_prefix = f"{module_name}."
    for name in [name for name in sys.modules if name.startswith(submodule_prefix)]:
        del sys.modules[name]
    sys.modules.pop(module_name, None)
