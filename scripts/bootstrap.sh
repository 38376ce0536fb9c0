#!/usr/bin/env bash
# Creates .venv with the pinned tools (requirements-dev.txt) and installs this repo in
# editable mode, which builds the kernels in place for that torch. Safe to re-run: an
# unchanged tree compiles nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# The requirements already hold the build tools, so the editable build uses this torch as is.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .
