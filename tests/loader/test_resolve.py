"""Variant resolution on hand-made systems: each rule, the ranking, the GPU arch check."""

import pytest

from kernel_hub import SystemInfo, detect_system, resolve_variants, system_variant_names
from kernel_hub.resolve import cuda_archs_run_on
from kernel_hub.system import normalize_cpu, select_backend

H100 = SystemInfo((2, 14), True, "cuda", (13, 0), "x86_64", "linux", gpu_capability=(9, 0))
CPU_ONLY = SystemInfo((2, 14), True, "cpu", None, "x86_64", "linux")
GRACE = SystemInfo((2, 14), True, "cuda", (12, 8), "aarch64", "linux")
MI300 = SystemInfo((2, 14), True, "rocm", (6, 3), "x86_64", "linux", gpu_arch="gfx942")


def decide(name: str, system: SystemInfo, metadata: dict | None = None):
    (decision,) = resolve_variants([name], system, {name: metadata} if metadata else None)
    return decision


@pytest.mark.parametrize(
    ("system", "name", "accepted", "reason"),
    [
        (H100, "torch214-cxx11-cu130-x86_64-linux", True, "runs on this environment's CUDA 13.0"),
        (H100, "torch214-cxx11-cu130-aarch64-linux", False, "built for aarch64 CPUs, this machine is x86_64"),
        (H100, "torch211-cxx11-cu130-x86_64-linux", False, "built for torch 2.11, this environment has torch 2.14"),
        (H100, "torch24-cxx11-cu130-x86_64-linux", False, "built for torch 2.4, this environment has torch 2.14"),
        (H100, "torch214-cxx98-cu130-x86_64-linux", False, "cxx98 C++ ABI, this torch uses the cxx11 ABI"),
        (H100, "torch214-cxx11-cu128-x86_64-linux", False, "CUDA major must match"),
        (H100, "torch214-cxx11-cu131-x86_64-linux", False, "CUDA 13.1, newer than this environment's CUDA 13.0"),
        (H100, "torch214-cxx11-rocm63-x86_64-linux", False, "built for ROCm 6.3, this environment's torch is built for CUDA 13.0"),
        (H100, "torch214-cxx11-cpu-x86_64-linux", True, "a CPU build for torch 2.14; it ranks below CUDA builds"),
        (H100, "torch-cuda", True, "noarch CUDA build"),
        (H100, "torch-rocm", False, "noarch ROCm build, this environment's torch is built for CUDA 13.0"),
        (H100, "torch-npu", False, "noarch CANN build"),
        (H100, "torch-cpu", True, "noarch CPU build"),
        (H100, "torch-universal", True, "runs everywhere"),
        (H100, "build-leftovers", False, "rejected: not a variant name ('build-leftovers': an arch variant has 5"),
        (CPU_ONLY, "torch214-cxx11-cpu-x86_64-linux", True, "a CPU build for torch 2.14"),
        (CPU_ONLY, "torch214-cxx11-cu130-x86_64-linux", False, "built for CUDA 13.0, this environment's torch is built for CPU"),
        (CPU_ONLY, "torch-cuda", False, "noarch CUDA build, this environment's torch is built for CPU"),
        (CPU_ONLY, "torch-cpu", True, "noarch CPU build"),
        (GRACE, "torch214-cxx11-cu126-aarch64-linux", True, "CUDA 12.6, which runs on this environment's CUDA 12.8"),
        (GRACE, "torch214-cxx11-cu128-aarch64-linux", True, "CUDA 12.8"),
        (GRACE, "torch214-cxx11-cu128-x86_64-linux", False, "built for x86_64 CPUs, this machine is aarch64"),
        (GRACE, "torch214-cxx11-cpu-aarch64-linux", True, "CPU build"),
        (MI300, "torch214-cxx11-rocm63-x86_64-linux", True, "ROCm 6.3"),
        (MI300, "torch214-cxx11-rocm62-x86_64-linux", False, "built for ROCm 6.2, this environment has ROCm 6.3 and needs an exact match"),
        (MI300, "torch214-cxx11-rocm64-x86_64-linux", False, "exact match"),
        (MI300, "torch214-cxx11-cu130-x86_64-linux", False, "this environment's torch is built for ROCm 6.3"),
        (MI300, "torch-rocm", True, "noarch ROCm build"),
    ],
)
def test_rules(system, name, accepted, reason):
    decision = decide(name, system)
    assert decision.accepted is accepted
    assert reason in decision.reason
    assert decision.reason.startswith("accepted: " if accepted else "rejected: ")


def test_unknown_cann_version_rejects_cann_arch_variants():
    npu = SystemInfo((2, 14), True, "npu", None, "aarch64", "linux")
    assert "CANN version of this environment is unknown" in decide("torch214-cxx11-cann82-aarch64-linux", npu).reason
    assert decide("torch-npu", npu).accepted


def test_missing_torch_rejects_arch_variants():
    no_torch = SystemInfo(None, True, "cpu", None, "x86_64", "linux")
    assert "torch is not installed" in decide("torch214-cxx11-cpu-x86_64-linux", no_torch).reason
    assert decide("torch-universal", no_torch).accepted


EVERY_NAME = [
    "torch-universal",
    "torch214-cxx11-cpu-x86_64-linux",
    "torch-cpu",
    "torch214-cxx11-cu126-x86_64-linux",
    "torch-cuda",
    "torch214-cxx11-cu130-x86_64-linux",
    "torch211-cxx11-cu130-x86_64-linux",
    "torch-rocm",
    "not-a-variant",
]


@pytest.mark.parametrize(
    ("system", "best_first"),
    [
        (
            SystemInfo((2, 14), True, "cuda", (13, 2), "x86_64", "linux"),
            ["torch214-cxx11-cu130-x86_64-linux", "torch-cuda", "torch214-cxx11-cpu-x86_64-linux", "torch-cpu", "torch-universal"],
        ),
        (CPU_ONLY, ["torch214-cxx11-cpu-x86_64-linux", "torch-cpu", "torch-universal"]),
    ],
)
def test_ranking(system, best_first):
    decisions = resolve_variants(EVERY_NAME, system)
    accepted = [decision for decision in decisions if decision.accepted]
    assert [decision.name for decision in accepted] == best_first
    assert [decision.rank for decision in accepted] == list(range(len(best_first)))
    assert decisions[: len(accepted)] == accepted
    assert all(decision.rank is None for decision in decisions[len(accepted) :])
    assert sorted(decision.name for decision in decisions) == sorted(EVERY_NAME)


def test_highest_compatible_cuda_minor_ranks_first():
    system = SystemInfo((2, 14), True, "cuda", (12, 9), "x86_64", "linux")
    names = [f"torch214-cxx11-cu12{minor}-x86_64-linux" for minor in (4, 8, 6, 9)]
    names.append("torch214-cxx11-cu130-x86_64-linux")
    accepted = [d.name for d in resolve_variants(names, system) if d.accepted]
    assert accepted == [f"torch214-cxx11-cu12{minor}-x86_64-linux" for minor in (9, 8, 6, 4)]


def test_duplicate_names_are_decided_once():
    decisions = resolve_variants(["torch-cuda", "torch-cuda"], H100)
    assert [decision.name for decision in decisions] == ["torch-cuda"]


def test_forcing_the_cpu_backend():
    cpu_view = select_backend(H100, "cpu")
    names = ["torch214-cxx11-cu130-x86_64-linux", "torch214-cxx11-cpu-x86_64-linux", "torch-cuda"]
    decisions = resolve_variants(names, cpu_view)
    assert [d.name for d in decisions if d.accepted] == ["torch214-cxx11-cpu-x86_64-linux"]
    assert select_backend(H100, None) is H100
    assert select_backend(H100, "cuda") is H100
    with pytest.raises(ValueError, match="backend 'rocm' cannot be loaded here: this torch supports cpu, cuda"):
        select_backend(H100, "rocm")


CU130 = "torch214-cxx11-cu130-x86_64-linux"


def cuda_metadata(*archs: str) -> dict:
    return {"id": "_tk_x", "backend": {"type": "cuda", "archs": list(archs)}}


@pytest.mark.parametrize(
    ("archs", "accepted"),
    [
        (["8.0", "9.0"], True),
        (["8.0"], False),
        (["8.0+PTX"], True),
        (["9.0a"], True),
        (["8.9", "10.0"], False),
        (["10.0+PTX"], False),
        (["some-future-format"], True),
    ],
)
def test_gpu_arch_check(archs, accepted):
    decision = decide(CU130, H100, cuda_metadata(*archs))
    assert decision.accepted is accepted
    if not accepted:
        assert decision.reason == (
            f"rejected: built for CUDA archs {', '.join(archs)}, none of which runs on this GPU "
            "(compute capability 9.0)"
        )
    elif archs != ["some-future-format"]:
        assert f"its CUDA archs {', '.join(archs)} run on this GPU (9.0)" in decision.reason


def test_gpu_arch_check_moves_the_choice_to_the_next_variant():
    names = [CU130, "torch-cuda", "torch214-cxx11-cpu-x86_64-linux"]
    metadata = {CU130: cuda_metadata("10.0", "12.0"), "torch-cuda": cuda_metadata("9.0")}
    decisions = resolve_variants(names, H100, metadata)
    assert [d.name for d in decisions if d.accepted] == ["torch-cuda", "torch214-cxx11-cpu-x86_64-linux"]
    assert "CUDA archs 10.0, 12.0" in decisions[-1].reason


def test_gpu_arch_check_needs_a_visible_gpu():
    no_gpu = SystemInfo((2, 14), True, "cuda", (13, 0), "x86_64", "linux")
    assert decide(CU130, no_gpu, cuda_metadata("10.0")).accepted


def test_cpu_builds_skip_the_gpu_arch_check():
    metadata = {"backend": {"type": "cpu", "archs": ["10.0"]}}
    assert decide("torch214-cxx11-cpu-x86_64-linux", H100, metadata).accepted


def test_rocm_gpu_arch_check():
    name = "torch214-cxx11-rocm63-x86_64-linux"
    fits = {"backend": {"type": "rocm", "archs": ["gfx90a", "gfx942"]}}
    misses = {"backend": {"type": "rocm", "archs": ["gfx90a", "gfx1100"]}}
    assert decide(name, MI300, fits).accepted
    assert decide(name, MI300, misses).reason == (
        "rejected: built for ROCm archs gfx90a, gfx1100, this GPU is gfx942"
    )


@pytest.mark.parametrize(
    ("archs", "capability", "runs"),
    [
        (["8.0"], (8, 0), True),
        (["8.0"], (8, 9), True),
        (["8.0"], (9, 0), False),
        (["8.6"], (8, 0), False),
        (["9.0a"], (9, 0), True),
        (["9.0a"], (9, 1), False),
        (["9.0a+PTX"], (10, 0), False),
        (["9.0+PTX"], (12, 0), True),
        (["9.0+PTX"], (8, 9), False),
        (["10.0f"], (10, 3), True),
        (["10.0f"], (12, 0), False),
        (["garbage", "8.0"], (9, 0), False),
        ([], (9, 0), True),
    ],
)
def test_cuda_archs_run_on(archs, capability, runs):
    assert cuda_archs_run_on(archs, capability) is runs


def test_system_variant_names():
    assert system_variant_names(H100) == [
        "torch214-cxx11-cu130-x86_64-linux",
        "torch214-cxx11-cpu-x86_64-linux",
    ]
    assert system_variant_names(CPU_ONLY) == ["torch214-cxx11-cpu-x86_64-linux"]
    assert system_variant_names(MI300)[0] == "torch214-cxx11-rocm63-x86_64-linux"


def test_describe():
    assert H100.describe() == (
        "torch 2.14 (cxx11 ABI), CUDA 13.0, x86_64 linux, GPU compute capability 9.0"
    )
    assert CPU_ONLY.describe() == "torch 2.14 (cxx11 ABI), CPU, x86_64 linux, no GPU visible"


@pytest.mark.parametrize(
    ("machine", "cpu"),
    [("arm64", "aarch64"), ("AMD64", "x86_64"), ("x86_64", "x86_64"), ("aarch64", "aarch64")],
)
def test_normalize_cpu(machine, cpu):
    assert normalize_cpu(machine) == cpu


def test_detect_system_matches_the_installed_torch():
    import torch

    system = detect_system()
    assert system is detect_system()
    assert system.torch == tuple(int(part) for part in torch.__version__.split(".")[:2])
    assert system.cxx11 == torch.compiled_with_cxx11_abi()
    if torch.version.cuda and not torch.version.hip:
        assert system.backend == "cuda"
        assert system.backend_version == tuple(int(p) for p in torch.version.cuda.split(".")[:2])


def test_detect_system_reads_the_gpu_capability(monkeypatch):
    import torch

    if not torch.version.cuda:
        pytest.skip("needs a CUDA build of torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert detect_system.__wrapped__().gpu_capability == (9, 0)
