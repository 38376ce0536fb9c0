"""The kernel-hub command against the test Hub, through main(argv)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hub_server import HubServer
from publishing import publish_build
from kernel_hub import cache
from kernel_hub.cli import main

ROOT = Path(__file__).resolve().parents[2]
REPO = "transformer-kernels/transformer-kernels"
CPU = "torch214-cxx11-cpu-x86_64-linux"
VARIANTS = sorted(path.name for path in (ROOT / "build").iterdir() if path.is_dir()) \
    if (ROOT / "build").is_dir() else []

pytestmark = [
    pytest.mark.skipif(CPU not in VARIANTS, reason=f"build/{CPU} has not been built"),
    pytest.mark.filterwarnings("ignore:.*version 2 exists:UserWarning"),
]


@pytest.fixture
def published(hub: HubServer, tmp_path) -> str:
    oid = publish_build(hub, REPO, tmp_path)
    HfApi().create_branch(REPO, branch="v2", revision="v1", repo_type="kernel")
    hub.requests.clear()
    return oid


def test_versions_lists_the_v_branches(published, capsys):
    assert main(["versions", REPO]) == 0
    assert capsys.readouterr().out.splitlines() == [f"v1\t{published}", f"v2\t{published}"]


def test_download_one_then_all_variants(published, capsys):
    assert main(["download", REPO, "--version", "1", "--backend", "cpu"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"/build/{CPU}")
    assert main(["download", REPO, "--revision", "v1", "--all-variants"]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(line).name for line in printed] == VARIANTS
    assert cache.read_ref(REPO, "v1") == published


def test_lock_writes_kernels_lock(published, tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.kernel-hub.dependencies]\n"{REPO}" = {{ revision = "v1" }}\n')
    assert main(["lock", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "kernels.lock")
    [entry] = json.loads((tmp_path / "kernels.lock").read_text())
    assert entry["sha"] == published and sorted(entry["variants"]) == VARIANTS


def test_info_explains_every_variant(published, capsys):
    assert main(["info", REPO, "--version", "1", "--backend", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["commit"] == published and report["name"] == "transformer-kernels"
    assert sorted(v["name"] for v in report["variants"]) == VARIANTS
    assert report["variants"][0]["name"] == CPU and report["variants"][0]["accepted"]
    assert all(v["reason"] for v in report["variants"])
    assert main(["info", REPO]) == 0
    text = capsys.readouterr().out
    assert f"commit:  {published}" in text and "variants:" in text


def test_info_on_a_local_path_lists_archs(capsys):
    assert main(["info", str(ROOT / "build"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["commit"] is None
    assert sorted(v["name"] for v in report["variants"]) == VARIANTS
    for variant in report["variants"]:
        metadata = json.loads((ROOT / "build" / variant["name"] / "metadata.json").read_text())
        assert variant["archs"] == list(metadata["backend"].get("archs") or [])


def test_verify_exits_1_on_a_damaged_cache(published, tmp_path, capsys):
    assert main(["verify", REPO, "--version", "1"]) == 2
    assert "run `kernel-hub download` first" in capsys.readouterr().err
    main(["download", REPO, "--version", "1", "--backend", "cpu"])
    assert main(["verify", REPO, "--version", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"/build/{CPU}: ok")
    variant_dir = cache.snapshot_dir(REPO, published) / "build" / CPU
    (variant_dir / "layers.py").resolve().write_text("tampered\n")
    assert main(["verify", REPO, "--revision", published]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "layers.py" in out


def test_verify_against_a_lockfile(published, tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(f'[tool.kernel-hub.dependencies]\n"{REPO}" = 1\n')
    main(["lock", str(tmp_path)])
    main(["download", REPO, "--version", "1", "--backend", "cpu"])
    lockfile = tmp_path / "kernels.lock"
    assert main(["verify", REPO, "--version", "1", "--lockfile", str(lockfile)]) == 0
    locks = json.loads(lockfile.read_text())
    locks[0]["variants"][CPU]["hash"] = "sha256-wrong"
    lockfile.write_text(json.dumps(locks))
    capsys.readouterr()
    assert main(["verify", REPO, "--version", "1", "--lockfile", str(lockfile)]) == 1
    assert "does not match kernels.lock" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["download", REPO],
    ["download", REPO, "--version", "1", "--revision", "v1"],
    ["nonsense"],
])
def test_usage_errors_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_hub_errors_are_one_line_and_exit_2(published, capsys):
    assert main(["download", REPO, "--version", "9"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no version 9" in err
    assert main(["versions", "nobody/nothing"]) == 2
