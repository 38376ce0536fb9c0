"""flake.nix, evaluated against a stub nixpkgs: which systems get the app, the package and the
shell, what the build-and-copy script runs, and what it does when bash runs it.

Nix here cannot fetch nixpkgs (no network), so `outputs` is called with a stub that provides
only what the flake uses; each stub package is a directory path under the test's tmp dir,
named after its system, so the script's tools can be stood in for by fakes there.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAKE = ROOT / "flake.nix"
SYSTEMS = {"x86_64-linux", "aarch64-linux"}
STUB_TORCH_VERSION = "2.9.1"

pytestmark = pytest.mark.skipif(
    shutil.which("nix-instantiate") is None,
    reason="nix-instantiate is not on PATH: flake.nix is evaluated only where Nix is installed",
)

# The nixpkgs attributes flake.nix uses. torch is named after the config it was imported with,
# and refuses CUDA without allowUnfree as nixpkgs does.
STUB_NIXPKGS = """
{ system, config ? { } }:
let
  root = @ROOT@;
  drv = name: attrs: attrs // { inherit name; outPath = "${root}/${system}/${name}"; };
  cuda = config.cudaSupport or false;
  cudaPackages = {
    cudaMajorMinorVersion = "12.8";
    cudatoolkit = drv "cudatoolkit" { };
    backendStdenv.cc = drv "gcc-wrapper" { suffixSalt = "stub_salt"; };
  };
  ps = {
    torch =
      if cuda && !(config.allowUnfree or false) then
        throw "stub nixpkgs: CUDA is unfree and allowUnfree is not set"
      else
        drv (if cuda then "torch-cuda" else "torch-cpu") {
          version = "@TORCH@";
          inherit cudaPackages;
        };
    pip = drv "pip" { };
    huggingface-hub = drv "huggingface-hub" { };
  };
in
{
  python3Packages = ps;
  python3.withPackages = f: drv "python3-env" { packages = f ps; };
  ninja = drv "ninja" { };
  mkShell = args: drv "shell" { mkShellArgs = args; };
  writeShellApplication = args: drv args.name { writeShellApplicationArgs = args; };
}
"""

# Calls the flake's outputs with the stub and turns the result into JSON: a derivation-like
# set keeps its other attributes and shows its path as __outPath (toJSON alone would give
# only the path).
EVAL_EXPR = """
let
  plain = v:
    if builtins.isAttrs v then
      builtins.mapAttrs (_: plain) (builtins.removeAttrs v [ "outPath" ])
      // (if v ? outPath then { __outPath = toString v.outPath; } else { })
    else if builtins.isList v then map plain v
    else if builtins.isFunction v then "<function>"
    else v;
  flake = import @FLAKE@;
  outputs = flake.outputs { self = outputs; nixpkgs = { outPath = @STUB@; }; };
in
plain { inherit (flake) description inputs; inherit outputs; }
"""


def _nix_string(value) -> str:
    text = json.dumps(str(value))
    assert "${" not in text
    return text


@pytest.fixture(scope="module")
def flake(tmp_path_factory):
    """{"root": the stub packages' root, "description", "inputs", "outputs"} of flake.nix."""
    tmp = tmp_path_factory.mktemp("flake")
    root = tmp / "pkgs"
    stub = tmp / "nixpkgs"
    stub.mkdir()
    (stub / "default.nix").write_text(
        STUB_NIXPKGS.replace("@ROOT@", _nix_string(root)).replace("@TORCH@", STUB_TORCH_VERSION)
    )
    expr = EVAL_EXPR.replace("@FLAKE@", _nix_string(FLAKE)).replace("@STUB@", _nix_string(stub))
    completed = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    return {"root": root, **json.loads(completed.stdout)}


def _script_args(flake, system: str) -> dict:
    return flake["outputs"]["packages"][system]["build-and-copy"]["writeShellApplicationArgs"]


def _systems_referenced(flake, value) -> set[str]:
    """The systems of every stub path in value: derivations, app programs, script texts."""
    stub_path = re.escape(str(flake["root"])) + r"/([^/\"]+)/"
    return set(re.findall(stub_path, json.dumps(value)))


def test_flake_nix_parses():
    completed = subprocess.run(
        ["nix-instantiate", "--parse", str(FLAKE)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr


def test_nixpkgs_follows_a_branch_with_torch_2_11(flake):
    # nixos-25.11 and older carry a torch below 2.11; flake.lock pins the revision.
    assert flake["inputs"]["nixpkgs"]["url"] == "github:NixOS/nixpkgs/nixos-unstable"


@pytest.mark.parametrize("output", ["apps", "packages", "devShells"])
def test_every_system_has_the_output(flake, output):
    assert set(flake["outputs"][output]) == SYSTEMS


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_build_and_copy_is_the_default_app_and_runs_the_script(flake, system):
    apps = flake["outputs"]["apps"][system]
    app = apps["build-and-copy"]
    assert apps["default"] == app
    assert app["type"] == "app"
    assert app["meta"]["description"]
    script = flake["outputs"]["packages"][system]["build-and-copy"]
    assert _script_args(flake, system)["name"] == "build-and-copy"
    assert app["program"] == f"{script['__outPath']}/bin/build-and-copy"
    assert app["program"] == f"{flake['root']}/{system}/build-and-copy/bin/build-and-copy"


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_each_system_is_built_from_its_own_nixpkgs(flake, system):
    for output in ("apps", "packages", "devShells"):
        assert _systems_referenced(flake, flake["outputs"][output][system]) == {system}, output


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_script_checks_for_build_toml_then_builds_then_checks(flake, system):
    text = _script_args(flake, system)["text"]
    python = f"{flake['root']}/{system}/python3-env/bin/python"
    refuse = text.index("[ ! -f build.toml ]")
    build = text.index(f'{python} -m kernel_builder build "$@"')
    check = text.index(f"{python} -m kernel_builder check build")
    assert refuse < build < check
    assert 'export PYTHONPATH="$PWD/builder:$PWD/loader' in text
    assert f"export CUDA_HOME={flake['root']}/{system}/cudatoolkit\n" in text


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_shell_has_cuda_torch_ninja_nvcc_and_the_builder(flake, system):
    shell = flake["outputs"]["devShells"][system]["default"]["mkShellArgs"]
    packages = {p["name"]: p for p in shell["packages"]}
    assert {"python3-env", "ninja", "cudatoolkit", "gcc-wrapper", "kernel-builder"} <= set(packages)
    python_packages = {p["name"] for p in packages["python3-env"]["packages"]}
    assert {"torch-cuda", "pip"} <= python_packages
    cli = packages["kernel-builder"]["writeShellApplicationArgs"]["text"]
    assert "-m kernel_builder \"$@\"" in cli
    assert f"export CUDA_HOME={flake['root']}/{system}/cudatoolkit\n" in shell["shellHook"]
    assert 'export PYTHONPATH="$PWD/builder:$PWD/loader' in shell["shellHook"]


# The script is run the way writeShellApplication writes it (bash, errexit, nounset, pipefail,
# runtimeInputs on PATH), with a fake python at the stub python's path that logs each call.
FAKE_PYTHON = """#!{interpreter}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                          "PYTHONPATH": os.environ.get("PYTHONPATH"),
                          "CUDA_HOME": os.environ.get("CUDA_HOME")}}) + "\\n")
if sys.argv[1:4] == ["-m", "kernel_builder", "build"]:
    sys.exit(int(os.environ.get("FAKE_BUILD_RC", "0")))
"""
SYSTEM = "x86_64-linux"


@pytest.fixture(scope="module")
def script(flake, tmp_path_factory) -> Path:
    args = _script_args(flake, SYSTEM)
    python = flake["root"] / SYSTEM / "python3-env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.format(interpreter=sys.executable))
    python.chmod(0o755)
    path = ":".join(f"{p['__outPath']}/bin" for p in args["runtimeInputs"])
    header = (
        "#!/usr/bin/env bash\nset -o errexit\nset -o nounset\nset -o pipefail\n\n"
        f'export PATH="{path}:$PATH"\n\n'
    )
    script = tmp_path_factory.mktemp("script") / "build-and-copy"
    script.write_text(header + args["text"])
    return script


def _checkout(tmp_path: Path) -> Path:
    (tmp_path / "build.toml").write_text("")
    (tmp_path / "builder" / "kernel_builder").mkdir(parents=True)
    (tmp_path / "loader" / "kernel_hub").mkdir(parents=True)
    return tmp_path


def _run(script: Path, cwd: Path, *args: str, build_rc: int = 0):
    log = cwd.parent / f"{cwd.name}.log"
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_BUILD_RC": str(build_rc)}
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(
        ["bash", str(script), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return completed, calls


def test_script_builds_with_the_arguments_then_checks_build(script, tmp_path):
    checkout = _checkout(tmp_path)
    completed, calls = _run(script, checkout, "--variant", "torch-cuda", "--jobs", "2")
    assert completed.returncode == 0, completed.stderr
    assert [c["argv"] for c in calls] == [
        ["-m", "kernel_builder", "build", "--variant", "torch-cuda", "--jobs", "2"],
        ["-m", "kernel_builder", "check", "build"],
    ]
    for call in calls:
        assert call["cwd"] == str(checkout)
        assert call["PYTHONPATH"] == f"{checkout}/builder:{checkout}/loader"
        assert call["CUDA_HOME"].endswith(f"/{SYSTEM}/cudatoolkit")


def test_script_stops_when_the_build_fails(script, tmp_path):
    completed, calls = _run(script, _checkout(tmp_path), build_rc=1)
    assert completed.returncode == 1
    assert [c["argv"][2] for c in calls] == ["build"]


def test_script_refuses_a_directory_without_build_toml(script, tmp_path):
    checkout = _checkout(tmp_path)
    (checkout / "build.toml").unlink()
    completed, calls = _run(script, checkout)
    assert completed.returncode == 2
    assert "no build.toml" in completed.stderr
    assert calls == []


def test_script_refuses_a_build_toml_without_the_builder(script, tmp_path):
    (tmp_path / "build.toml").write_text("")
    completed, calls = _run(script, tmp_path)
    assert completed.returncode == 2
    assert "builder/kernel_builder" in completed.stderr
    assert calls == []


@pytest.mark.parametrize("option", ["--out", "--out=elsewhere", "--config", "--conf"])
def test_script_refuses_another_output_or_config(script, tmp_path, option):
    completed, calls = _run(script, _checkout(tmp_path), option, "x")
    assert completed.returncode == 2
    assert "refused" in completed.stderr
    assert calls == []


def test_help_names_the_one_torch_and_where_the_matrix_is_built(script, tmp_path):
    completed, calls = _run(script, tmp_path, "--help")
    assert completed.returncode == 0
    assert calls == []
    assert STUB_TORCH_VERSION in completed.stdout
    assert "2.11 and 2.14" in completed.stdout
    assert "CI" in completed.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not on PATH")
def test_script_passes_shellcheck(script):
    """writeShellApplication runs shellcheck on the script and fails the build on any finding."""
    completed = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout
