"""kernelize: give each marked module of a model the forward of the layer mapped for it."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .device import Device, Target, target_for
from .forward import use_layer_forward, use_original_forward
from .host import host_layer_name
from .mapping import ModeRepos, current_mapping
from .mode import Mode, check_kernelize_mode, search_order
from .report import FallbackReport
from .repos import LayerSource
from .validate import unsupported_mode_reason, validate_layer

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger("kernel_hub")

DISABLE_ENV = "DISABLE_KERNEL_MAPPING"


def kernelize(
    model: nn.Module,
    *,
    mode: Mode,
    device: str | torch.device | Device | None = None,
    use_fallback: bool = True,
) -> nn.Module:
    """Replace the forward of every module whose class is marked with a layer name
    (@use_kernel_forward_from_hub) by the forward of the layer the current mapping holds for
    that name, this device and mode; returns the model.

    device defaults to the device of the model's first parameter. Every call decides afresh
    from the class's own forward, so kernelize can run again with another mode or mapping.
    A module whose kernel is not mapped, cannot be loaded, fails validation or cannot serve
    the mode keeps its original forward: one warning per reason when a mapped kernel was
    unusable (an INFO log when none was mapped); use_fallback=False raises KernelizeError
    instead. DISABLE_KERNEL_MAPPING=1 leaves every forward original.
    """
    check_kernelize_mode(mode)
    hosts = [
        (name, module, layer_name)
        for name, module in model.named_modules()
        if (layer_name := host_layer_name(module))
    ]
    for _, module, _ in hosts:
        use_original_forward(module)
    if not hosts:
        return model
    if kernel_mapping_disabled():
        logger.info("kernelize: %s is set, so every module keeps its original forward", DISABLE_ENV)
        return model
    report = FallbackReport(use_fallback)
    _Pass(target_for(device, model), mode, report).run(hosts)
    report.emit()
    return model


def kernel_mapping_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _Pass:
    """One kernelize call. Each repository is loaded, and each (layer, host class) pair
    validated, once per call, so a model with many identical modules reports a failure once."""

    def __init__(self, target: Target, mode: Mode, report: FallbackReport) -> None:
        self.target = target
        self.mode = mode
        self.report = report
        self.mapping = current_mapping()
        self._loaded: dict[int, type[nn.Module] | Exception] = {}
        self._validated: dict[tuple[int, type], Exception | None] = {}

    def run(self, hosts: list[tuple[str, nn.Module, str]]) -> None:
        for module_name, module, layer_name in hosts:
            self._kernelize_one(module_name, module, layer_name)

    def _kernelize_one(self, module_name: str, module: nn.Module, layer_name: str) -> None:
        repos = self.mapping.lookup(layer_name, self.target)
        if isinstance(repos, str):
            self.report.unmapped(module_name, repos)
            return
        picked = self._pick(repos)
        if picked is None:
            registered = ", ".join(str(mode) for mode in repos)
            self.report.unmapped(
                module_name,
                f"layer {layer_name!r} on {self.target.describe()} is mapped for {registered}, "
                f"none of which serves {self.mode}",
            )
            return
        repo_mode, repo = picked
        host = type(module)
        layer = self._load(repo)
        if isinstance(layer, Exception):
            self.report.unusable(
                module_name, f"{repo!r} could not be loaded: {type(layer).__name__}: {layer}", layer
            )
            return
        invalid = self._validate(repo, layer, host)
        if invalid is not None:
            self.report.unusable(
                module_name, f"{repo!r} cannot replace {host.__qualname__}: {invalid}", invalid
            )
            return
        unsupported = unsupported_mode_reason(layer, self.mode)
        if unsupported is not None:
            self.report.unusable(module_name, f"{repo!r}: {unsupported}")
            return
        use_layer_forward(module, layer)
        logger.debug(
            "kernelize: %s (%s) now runs %s.forward from %r "
            "(registered for %s, kernelize mode %s, device %s)",
            module_name or "<model>",
            host.__qualname__,
            layer.__qualname__,
            repo,
            repo_mode,
            self.mode,
            self.target.describe(),
        )

    def _pick(self, repos: ModeRepos) -> tuple[Mode, LayerSource] | None:
        for mode in search_order(self.mode):
            if mode in repos:
                return mode, repos[mode]
        return None

    def _load(self, repo: LayerSource) -> type[nn.Module] | Exception:
        key = id(repo)
        if key not in self._loaded:
            try:
                self._loaded[key] = repo.load()
            except Exception as error:  # any failure to load a kernel means: keep the original
                self._loaded[key] = error
        return self._loaded[key]

    def _validate(self, repo: LayerSource, layer: type[nn.Module], host: type) -> Exception | None:
        key = (id(repo), host)
        if key not in self._validated:
            try:
                validate_layer(layer, host)
                self._validated[key] = None
            except TypeError as error:
                self._validated[key] = error
        return self._validated[key]
