#!/usr/bin/env bash
# Installs what is needed and runs the test suite. Extra arguments go to pytest.
# CUDA variants are compiled for sm_90 only here (TK_CUDA_ARCHS), which keeps a CPU-only CI
# run short; the release matrix builds every capability.
set -euo pipefail
cd "$(dirname "$0")/.."
export TK_CUDA_ARCHS=${TK_CUDA_ARCHS:-9.0}
bash scripts/bootstrap.sh
.venv/bin/python -m pytest -q "$@"
