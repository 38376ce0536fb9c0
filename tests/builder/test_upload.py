"""`kernel-builder upload` publishes our build/ to the test Hub (tests/hub_server.py, the real
huggingface_hub client) and kernel_hub.get_kernel loads it back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hub_server import HubServer
from kernel_builder.cli import main
from kernel_builder.upload import UploadError, upload_build
from kernel_hub import get_kernel
from kernel_hub.digest import variant_digests
from kernel_hub.hub import install_kernel

ROOT = Path(__file__).resolve().parents[2]
REPO = "transformer-kernels/uploaded"
CPU = "torch214-cxx11-cpu-x86_64-linux"
UPLOADED_VARIANTS = (CPU, "torch-cuda", "torch-rocm")


@pytest.fixture
def build(tmp_path) -> Path:
    """A copy of three of our staged variants (the large CUDA arch variant left out)."""
    if not (ROOT / "build" / CPU).is_dir():
        pytest.skip(f"build/{CPU} is not built")
    build = tmp_path / "project" / "build"
    for name in UPLOADED_VARIANTS:
        shutil.copytree(ROOT / "build" / name, build / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return build


def redigest(variant: Path) -> None:
    metadata_path = variant / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["digest"]["files"] = variant_digests(variant)
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")


def branch_files(hub: HubServer, branch: str = "v1") -> dict[str, bytes]:
    repo = hub.repos[("kernel", REPO)]
    return repo.commits[repo.branches[branch]].files


def test_upload_then_get_kernel_and_a_second_upload_replaces_only_its_variants(
    hub, build, capsys
):
    (build / CPU / "extra.py").write_text("STALE = True\n")
    redigest(build / CPU)
    assert main(["upload", str(build), "--repo-id", REPO,
                 "--config", str(ROOT / "build.toml")]) == 0
    assert "to transformer-kernels/uploaded@v1" in capsys.readouterr().out
    first = dict(branch_files(hub))
    assert {path.split("/")[1] for path in first} == set(UPLOADED_VARIANTS)
    kernel = get_kernel(REPO, version=1, backend="cpu", trust_remote_code=True)
    x, w = torch.randn(3, 40), torch.randn(40)
    torch.testing.assert_close(kernel.rms_norm(x, w, 1e-6).double(),
                               kernel.rms_norm_reference(x.double(), w.double(), 1e-6),
                               rtol=1e-5, atol=1e-5)

    shutil.rmtree(build / "torch-rocm")
    (build / CPU / "extra.py").unlink()
    with (build / CPU / "layers.py").open("a") as handle:
        handle.write("# second upload\n")
    redigest(build / CPU)
    result = upload_build(build, REPO, "v1")
    assert result.deleted == (f"build/{CPU}/extra.py",)
    second = branch_files(hub)
    assert set(first) - set(second) == {f"build/{CPU}/extra.py"}
    assert {path: data for path, data in second.items() if "/torch-rocm/" in path} == {
        path: data for path, data in first.items() if "/torch-rocm/" in path}
    assert second[f"build/{CPU}/layers.py"].endswith(b"# second upload\n")
    assert len([c for c in hub.repos[("kernel", REPO)].commits.values()
                if c.message.startswith("Upload")]) == 2
    variant_dir = install_kernel(REPO, version=1, backend="cpu")
    assert (variant_dir / "layers.py").read_text().endswith("# second upload\n")
    assert not (variant_dir / "extra.py").exists()


def test_a_variant_whose_files_do_not_match_its_digests_is_refused(hub, build, capsys):
    with (build / CPU / "rmsnorm.py").open("a") as handle:
        handle.write("# edited after staging\n")
    with pytest.raises(UploadError, match=rf"(?s){CPU}.*digest.*rmsnorm\.py"):
        upload_build(build, REPO, "v1")
    assert main(["upload", str(build), "--repo-id", REPO, "--branch", "v1"]) == 1
    assert "rmsnorm.py" in capsys.readouterr().err
    assert hub.repos == {}


def test_a_build_dir_without_variants_is_refused(hub, tmp_path):
    (tmp_path / "build" / ".staging-torch-cuda-x1").mkdir(parents=True)
    with pytest.raises(UploadError, match="no variant directories"):
        upload_build(tmp_path / "build", REPO, "v1")
    assert hub.requests == []
