"""Local development install: `pip install -e .` or `uv pip install -e .`.

Installs kernel_builder (CLI `kernel-builder`), kernel_hub and transformer_kernels, and
builds transformer_kernels in place for the active torch by running the same builder as
`kernel-builder build --inplace`. Metadata lives in pyproject.toml.
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def builder_env() -> dict[str, str]:
    """The environment for the builder subprocess.

    pip's build isolation hides the target environment's packages (torch above all) behind
    PYTHONPATH/PYTHONNOUSERSITE; the kernels must be built for the torch that will import
    them, so those are dropped unless torch is importable right here.
    """
    env = dict(os.environ)
    try:
        import torch  # noqa: F401
    except ImportError:
        env.pop("PYTHONNOUSERSITE", None)
        env.pop("PYTHONPATH", None)
    paths = [str(ROOT / "builder"), str(ROOT / "loader")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class BuildPyWithKernels(build_py):
    def run(self):
        command = [sys.executable, "-m", "kernel_builder", "build", "--inplace"]
        subprocess.run(command, cwd=ROOT, env=builder_env(), check=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithKernels})
