"""Interop with Hugging Face's ecosystem:

(a) kernel_hub loads a repo laid out the way kernels-community publishes (flattened
    build/<variant>/ with __init__.py, _ops.py and their metadata.json fields), uploaded to the
    test Hub with plain huggingface_hub, as their upload does;
(b) Hugging Face's kernels.kernelize (pinned 0.17.2) swaps in our RMSNorm layer from this
    checkout through kernels.LocalLayerRepository.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from hub_server import HubServer
from kernel_hub import get_kernel, get_kernel_variants
from kernel_hub.digest import ALGORITHM, variant_digests

ROOT = Path(__file__).resolve().parents[2]
ORG = "kernels-community"
CPU_ARCH_VARIANT = "torch214-cxx11-cpu-x86_64-linux"

OPS_SOURCE = '''import torch

NAMESPACE = "{ops_id}"
ops = getattr(torch.ops, NAMESPACE)


def add_op_namespace_prefix(op_name: str) -> str:
    return f"{{NAMESPACE}}::{{op_name}}"
'''

INIT_SOURCE = '''import torch

from . import layers
from ._ops import add_op_namespace_prefix, ops


@torch.library.custom_op(add_op_namespace_prefix("relu"), mutates_args=())
def _relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(x, 0)


def relu(x: torch.Tensor) -> torch.Tensor:
    return ops.relu(x)


VARIANT = "{variant}"
__all__ = ["layers", "relu"]
'''

LAYERS_SOURCE = '''import torch
from torch import nn


class ReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from . import relu

        return relu(x)
'''


def write_community_variant(build: Path, variant: str, ops_id: str) -> Path:
    """One flattened variant as kernels-community's builder lays it out (pure Python)."""
    directory = build / variant
    directory.mkdir(parents=True)
    (directory / "__init__.py").write_text(INIT_SOURCE.format(variant=variant))
    (directory / "_ops.py").write_text(OPS_SOURCE.format(ops_id=ops_id))
    (directory / "layers.py").write_text(LAYERS_SOURCE)
    metadata = {
        "name": "relu",
        "id": ops_id,
        "version": 1,
        "license": "apache-2.0",
        "python-depends": [],
        "backend": {"type": "cpu"},
        "digest": {"algorithm": ALGORITHM, "files": variant_digests(directory)},
        "provenance": {"kernel-builder": {"version": "0.13.0",
                                          "git": {"commit": "0a1b2c3", "dirty": False}}},
    }
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return directory


def publish(build: Path, repo_id: str) -> None:
    api = HfApi()
    api.create_repo(repo_id, repo_type="kernel")
    api.create_branch(repo_id, branch="v1", repo_type="kernel")
    api.upload_folder(repo_id=repo_id, folder_path=build, path_in_repo="build", revision="v1",
                      repo_type="kernel")


def test_a_community_noarch_repo_loads_from_a_trusted_publisher(hub: HubServer, tmp_path):
    repo_id = f"{ORG}/relu-noarch"
    write_community_variant(tmp_path / "build", "torch-cpu", "_relu_cpu_c0ffee1")
    publish(tmp_path / "build", repo_id)
    hub.trusted_orgs.add(ORG)
    kernel = get_kernel(repo_id, version=1, backend="cpu")
    assert kernel.VARIANT == "torch-cpu"
    x = torch.randn(5, 7)
    torch.testing.assert_close(kernel.relu(x), torch.relu(x))
    torch.testing.assert_close(kernel.layers.ReLU()(x), torch.relu(x))


def test_a_community_arch_variant_is_preferred_to_its_noarch_one(hub: HubServer, tmp_path):
    if not torch.__version__.startswith("2.14."):
        pytest.skip(f"the arch variant is named for torch 2.14; this is {torch.__version__}")
    repo_id = f"{ORG}/relu"
    write_community_variant(tmp_path / "build", "torch-cpu", "_relu_cpu_d00d001")
    write_community_variant(tmp_path / "build", CPU_ARCH_VARIANT, "_relu_cpu_a1b2c3d")
    publish(tmp_path / "build", repo_id)
    decisions = get_kernel_variants(repo_id, version=1, backend="cpu")
    assert [d.name for d in decisions if d.accepted] == [CPU_ARCH_VARIANT, "torch-cpu"]
    kernel = get_kernel(repo_id, version=1, backend="cpu", trust_remote_code=True)
    assert kernel.VARIANT == CPU_ARCH_VARIANT
    x = torch.randn(3, 4)
    torch.testing.assert_close(kernel.relu(x), torch.relu(x))


KERNELIZE_SCRIPT = '''
from pathlib import Path

import kernels
import torch
from torch import nn


@kernels.use_kernel_forward_from_hub("RMSNorm")
class HostRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


torch.manual_seed(0)
model = nn.Sequential(HostRMSNorm(64), nn.Linear(64, 64), HostRMSNorm(64))
x = torch.randn(4, 9, 64)
with torch.no_grad():
    expected = model(x)
repo = kernels.LocalLayerRepository(repo_path=Path({root!r}), layer_name="RMSNorm")
with kernels.use_kernel_mapping({{"RMSNorm": {{"cpu": repo}}}}, inherit_mapping=False):
    kernels.kernelize(model, mode=kernels.Mode.INFERENCE, device="cpu", use_fallback=False)
with torch.no_grad():
    actual = model(x)
torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
print(model[0].forward.__func__.__module__)
'''


def test_hugging_face_kernelize_uses_our_rmsnorm_layer():
    pytest.importorskip("kernels", reason="Hugging Face's kernels is not installed")
    build = ROOT / "build"
    if not build.is_dir() or not any(entry.is_dir() for entry in build.iterdir()):
        pytest.skip(f"{build} has no variants; run `kernel-builder build`")
    out = subprocess.run([sys.executable, "-c", KERNELIZE_SCRIPT.format(root=str(ROOT))],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("_transformer_kernels_"), out.stdout
    assert out.stdout.strip().endswith(".layers")
