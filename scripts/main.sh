#!/usr/bin/env bash
# The main job: install, build every variant this machine can build, check them, and run a
# short demo that loads the result through kernel_hub and compares RMSNorm with PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/kernel-builder build
.venv/bin/kernel-builder check build
.venv/bin/python examples/demo.py
