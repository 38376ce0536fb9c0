"""Defines every schema of `_schemas.SCHEMAS` under this build's op namespace."""

import torch

from ._ops import add_op_namespace_prefix
from ._schemas import SCHEMAS


def _has_schema(qualname: str) -> bool:
    try:
        torch._C._get_schema(qualname, "")
    except RuntimeError:
        return False
    return True


# Two Python copies of one build (same namespace) can be imported in one process, e.g. the
# same variant directory reached through two paths. The first copy owns every registration
# (schemas here, fakes, autograd and Python backends in the kernel modules); later copies
# reuse them, since registering twice is an error.
FIRST_LOAD = not _has_schema(add_op_namespace_prefix(next(iter(SCHEMAS))))

if FIRST_LOAD:
    for _name, _schema in SCHEMAS.items():
        torch.library.define(add_op_namespace_prefix(_name), _schema)
