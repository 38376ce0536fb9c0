"""Shared test facts: the repo root, import paths, and whether a GPU or Triton's interpreter
is in use. Imported first by conftest.py, so its environment choice precedes any Triton
import."""

import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "builder", ROOT / "loader", ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

HAS_GPU = torch.cuda.is_available()
# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors. It must be
# chosen before any @triton.jit function is created.
if not HAS_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
