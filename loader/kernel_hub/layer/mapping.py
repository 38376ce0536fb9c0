"""The kernel mapping: layer name -> device -> capability range -> mode -> repository.

The current mapping lives in a ContextVar and is never changed in place: registering builds a
new mapping, so a use_kernel_mapping block restores the previous one exactly on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from .capability import CapabilityRanges
from .device import Device, Target
from .mode import Mode, check_registered_mode
from .repos import LayerSource

ModeRepos = dict[Mode, LayerSource]
UserMapping = Mapping[str, Mapping[str | Device, LayerSource | Mapping[Mode, LayerSource]]]


class KernelMapping:
    """An immutable-by-convention snapshot; `merged` returns a new one."""

    def __init__(
        self, layers: dict[str, dict[str, CapabilityRanges[ModeRepos]]] | None = None
    ) -> None:
        self._layers = layers or {}

    def merged(self, mapping: UserMapping) -> KernelMapping:
        """A copy of this mapping with `mapping` registered on top of it. The repositories
        given for one device (and capability range) replace those registered there before."""
        layers = {
            name: {kind: ranges.copy() for kind, ranges in devices.items()}
            for name, devices in self._layers.items()
        }
        for layer_name, devices in mapping.items():
            for device_key, repos in devices.items():
                device = Device(device_key) if isinstance(device_key, str) else device_key
                if not isinstance(device, Device):
                    raise TypeError(
                        f"mapping for {layer_name!r}: device keys are str or Device, "
                        f"got {device_key!r}"
                    )
                ranges = layers.setdefault(layer_name, {}).setdefault(
                    device.type, CapabilityRanges()
                )
                ranges.insert(*device.capability_range(), _mode_repos(layer_name, repos))
        return KernelMapping(layers)

    def layer_names(self) -> list[str]:
        return sorted(self._layers)

    def lookup(self, layer_name: str, target: Target) -> ModeRepos | str:
        """The repositories by mode registered for layer_name on target, or why there are none."""
        devices = self._layers.get(layer_name)
        if devices is None:
            return f"no kernel is mapped for layer name {layer_name!r}"
        ranges = devices.get(target.type)
        if ranges is None:
            mapped = ", ".join(sorted(devices))
            return f"layer {layer_name!r} is mapped for {mapped}, not {target.type}"
        repos = ranges.select(target.capability)
        if repos is None:
            return (
                f"no capability range mapped for layer {layer_name!r} contains {target.describe()}"
            )
        return repos


def _mode_repos(layer_name: str, repos: LayerSource | Mapping[Mode, LayerSource]) -> ModeRepos:
    if not isinstance(repos, Mapping):
        repos = {Mode.FALLBACK: repos}
    for mode, repo in repos.items():
        check_registered_mode(mode)
        if not callable(getattr(repo, "load", None)):
            raise TypeError(
                f"mapping for {layer_name!r}, {mode}: {repo!r} is not a layer repository"
            )
    return dict(repos)


# The default is shared by every context and thread, which is safe only because no mapping is
# ever changed in place.
_CURRENT: ContextVar[KernelMapping] = ContextVar(
    "kernel_hub_layer_mapping", default=KernelMapping()
)


def current_mapping() -> KernelMapping:
    return _CURRENT.get()


def register_kernel_mapping(mapping: UserMapping, inherit_mapping: bool = True) -> None:
    """Register kernels for layer names, on top of the current mapping or (inherit_mapping=False)
    in place of it.

    mapping is {layer_name: {device: repository or {Mode: repository}}}, device a type string
    ("cuda", "cpu", ...) or a Device with a capability range. A bare repository is registered
    under Mode.FALLBACK.
    """
    base = current_mapping() if inherit_mapping else KernelMapping()
    _CURRENT.set(base.merged(mapping))


@contextmanager
def use_kernel_mapping(mapping: UserMapping, inherit_mapping: bool = True) -> Iterator[None]:
    """Use `mapping` (on top of the current one, or alone with inherit_mapping=False) inside
    the block. On exit the mapping from before the block is back; registrations made inside
    the block end with it."""
    base = current_mapping() if inherit_mapping else KernelMapping()
    token = _CURRENT.set(base.merged(mapping))
    try:
        yield
    finally:
        _CURRENT.reset(token)
