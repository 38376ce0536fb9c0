"""One test that walks every registered op and runs torch.library.opcheck on it.

Sample inputs come from tests/opcheck_samples/<kernel>.py; an op in _schemas.SCHEMAS without
samples fails the walk, so a new op cannot skip opcheck.
"""

import importlib
import pkgutil

import pytest
import torch

import opcheck_samples
from support import HAS_GPU


def _sample_builders():
    return [
        importlib.import_module(f"opcheck_samples.{m.name}").samples
        for m in pkgutil.iter_modules(opcheck_samples.__path__)
    ]


def _variants_and_devices(variant_modules):
    pairs = [(name, "cpu") for name in ("cpu", "triton") if name in variant_modules]
    if HAS_GPU:
        pairs += [(name, "cuda") for name in ("cuda", "triton") if name in variant_modules]
    return pairs


def test_opcheck_every_registered_op(variant_modules):
    pairs = _variants_and_devices(variant_modules)
    assert pairs, "no variant to check"
    for name, device in pairs:
        kernel = variant_modules[name]
        schemas = kernel._schemas.SCHEMAS
        samples = {}
        for build in _sample_builders():
            samples.update(build(kernel, device))
        assert set(samples) == set(schemas), (
            f"ops without opcheck samples: {sorted(set(schemas) - set(samples))}"
        )
        for op_name, arg_sets in samples.items():
            op = getattr(kernel.ops, op_name)
            for args in arg_sets:
                try:
                    torch.library.opcheck(op, args)
                except Exception as error:
                    pytest.fail(f"opcheck {name}/{device} {op_name}: {error}")
