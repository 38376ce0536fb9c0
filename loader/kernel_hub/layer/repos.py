"""Where a layer comes from: a Hub repository, a local directory, or a locked Hub revision.

Every repository is lazy: nothing is resolved, downloaded or imported until kernelize first
needs the layer, and a loaded layer is kept for later calls.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import nn


class LayerSource(Protocol):
    """What a mapping holds: something that loads one layer class."""

    layer_name: str

    def load(self) -> type[nn.Module]: ...


class _CachedLayer:
    layer_name: str
    _layer: type[nn.Module] | None = None

    def load(self) -> type[nn.Module]:
        if self._layer is None:
            self._layer = layer_from_kernel(self._load_kernel(), self.layer_name, str(self))
        return self._layer

    def _load_kernel(self) -> ModuleType:
        raise NotImplementedError


class LayerRepository(_CachedLayer):
    """A layer of a kernel on the Hub: exactly one of version (the branch v<version>) or
    revision (a branch, tag or commit)."""

    def __init__(
        self,
        repo_id: str,
        *,
        layer_name: str,
        revision: str | None = None,
        version: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if (revision is None) == (version is None):
            raise ValueError(
                f"LayerRepository({repo_id!r}) needs exactly one of version= or revision="
            )
        self.repo_id = repo_id
        self.layer_name = layer_name
        self.revision = revision
        self.version = version
        self.trust_remote_code = trust_remote_code

    def _load_kernel(self) -> ModuleType:
        from kernel_hub import get_kernel

        options: dict = {"revision": self.revision, "version": self.version}
        # Passed only when set, so that get_kernel versions without the argument still work.
        if self.trust_remote_code:
            options["trust_remote_code"] = True
        return get_kernel(self.repo_id, **options)

    def __repr__(self) -> str:
        pin = (
            f"version={self.version}" if self.version is not None else f"revision={self.revision!r}"
        )
        return f"LayerRepository({self.repo_id!r}, layer_name={self.layer_name!r}, {pin})"


class LocalLayerRepository(_CachedLayer):
    """A layer of a kernel in a local directory (anything get_local_kernel accepts)."""

    def __init__(self, repo_path: str | Path, *, layer_name: str) -> None:
        self.repo_path = Path(repo_path)
        self.layer_name = layer_name

    def _load_kernel(self) -> ModuleType:
        from kernel_hub import get_local_kernel

        return get_local_kernel(self.repo_path)

    def __repr__(self) -> str:
        return f"LocalLayerRepository({str(self.repo_path)!r}, layer_name={self.layer_name!r})"


class LockedLayerRepository(_CachedLayer):
    """A layer of a Hub kernel at the commit and content pinned in a kernels.lock file (by
    default the one beside the nearest pyproject.toml at or above the working directory).

    trust_remote_code is accepted for API compatibility; locking a repo is the trust decision.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        layer_name: str,
        lockfile: str | Path | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.repo_id = repo_id
        self.layer_name = layer_name
        self.lockfile = None if lockfile is None else Path(lockfile)
        self.trust_remote_code = trust_remote_code

    def _load_kernel(self) -> ModuleType:
        from kernel_hub.lock import get_locked_kernel

        return get_locked_kernel(self.repo_id, lockfile=self.lockfile)

    def __repr__(self) -> str:
        return (
            f"LockedLayerRepository({self.repo_id!r}, layer_name={self.layer_name!r}, "
            f"lockfile={self.lockfile})"
        )


def layer_from_kernel(kernel: ModuleType, layer_name: str, source: str) -> type[nn.Module]:
    """kernel.layers.<layer_name>, or an AttributeError that says which part is missing."""
    layers = getattr(kernel, "layers", None)
    if layers is None:
        raise AttributeError(f"{source}: kernel {kernel.__name__} has no `layers` module")
    layer = getattr(layers, layer_name, None)
    if layer is None:
        available = sorted(
            name
            for name in vars(layers)
            if not name.startswith("_") and isinstance(getattr(layers, name), type)
        )
        raise AttributeError(
            f"{source}: kernel {kernel.__name__} has no layer {layer_name!r} "
            f"(it has: {', '.join(available) or 'none'})"
        )
    return layer
