"""Which variants an environment builds, and the reason for each it skips."""

import dataclasses
from pathlib import Path

import pytest

from kernel_builder.config import load_config
from kernel_builder.plan import load_matrix, plan_variants
from kernel_builder.toolchain import Toolchain
from kernel_hub.variants import format_variant

ROOT = Path(__file__).resolve().parents[2]

CUDA_214 = Toolchain(
    python=Path("/usr/bin/python3"),
    python_include=Path("/usr/include/python3.11"),
    torch_version="2.14.1+cu130",
    torch_dir=Path("/site/torch"),
    cxx11_abi=True,
    torch_cuda="13.0",
    nvcc=Path("/usr/local/cuda/bin/nvcc"),
    nvcc_version="13.0",
    cuda_home=Path("/usr/local/cuda"),
    cxx="g++",
    cxx_version="g++ 12.2.0",
    cpu="x86_64",
    os="linux",
    triton_version="3.8.0",
)


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "build.toml")


def _plan(config, toolchain):
    planned, skipped = plan_variants(config, toolchain)
    return [p.name for p in planned], {s.name: s.reason for s in skipped}


def test_cuda_torch_with_nvcc_builds_cuda_cpu_and_triton_variants(config):
    planned, skipped = _plan(config, CUDA_214)
    assert planned[:2] == ["torch214-cxx11-cu130-x86_64-linux", "torch214-cxx11-cpu-x86_64-linux"]
    assert {"torch-cuda", "torch-rocm"} <= set(planned)
    assert skipped["torch211-cxx11-cu130-x86_64-linux"] == (
        "needs torch 2.11 (this environment has torch 2.14.1+cu130)"
    )
    assert "aarch64" in skipped["torch214-cxx11-cu130-aarch64-linux"]


def test_cpu_only_torch_skips_cuda_with_the_reason(config):
    cpu_torch = dataclasses.replace(CUDA_214, torch_version="2.14.1+cpu", torch_cuda=None)
    planned, skipped = _plan(config, cpu_torch)
    assert "torch214-cxx11-cpu-x86_64-linux" in planned
    assert skipped["torch214-cxx11-cu130-x86_64-linux"] == (
        "needs a CUDA 13.0 build of torch (this torch is CPU-only)"
    )


def test_missing_nvcc_is_a_skip_reason_not_a_crash(config):
    no_nvcc = dataclasses.replace(CUDA_214, nvcc=None, nvcc_version=None, cuda_home=None)
    planned, skipped = _plan(config, no_nvcc)
    assert "torch214-cxx11-cu130-x86_64-linux" not in planned
    assert "nvcc" in skipped["torch214-cxx11-cu130-x86_64-linux"]


def test_environment_variant_outside_the_matrix_is_still_built(config):
    torch_213 = dataclasses.replace(CUDA_214, torch_version="2.13.0+cu130")
    planned, _ = _plan(config, torch_213)
    assert "torch213-cxx11-cu130-x86_64-linux" in planned


def test_matrix_names_round_trip_through_the_grammar():
    names = [format_variant(v) for v in load_matrix()]
    assert len(names) == len(set(names))
    assert "torch211-cxx11-cu130-x86_64-linux" in names and "torch-cuda" in names
