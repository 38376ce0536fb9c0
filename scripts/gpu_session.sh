#!/usr/bin/env bash
# One device-machine session (H100/H200, torch 2.11 + CUDA 13.0): build the variants for
# this GPU with the builder, check them, run the kernel tests (every tests/test_<kernel>.py, the opcheck walker, compile,
# layers) and every kernel benchmark.
# Logs and results go to $OUT (the device tool brings them back, 8 files at most): gpu.txt,
# build.log (the build, then its check), tests.log, bench.log and the results JSON. The plots
# are drawn here from that JSON (python -m benchmarks.plot), not there. The device copy of the tree
# has no git history: pass TK_GIT_COMMIT=<sha> so the results record the commit measured.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tk-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/builder:$PWD/loader${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
  | tee "$OUT/gpu.txt"

python3 -m kernel_builder build --arch "${TK_GPU_ARCH:-9.0}" --jobs 16 2>&1 | tee "$OUT/build.log"
python3 -m kernel_builder check build > /tmp/tk-check.log 2>&1 && echo "check: ok" || tail -30 /tmp/tk-check.log
cat /tmp/tk-check.log >> "$OUT/build.log"
export TK_CUDA_ARCHS="${TK_GPU_ARCH:-9.0}"
python3 -m pytest -v -p no:cacheprovider ${TK_GPU_TESTS:-$(ls tests/test_*.py | grep -v -e test_triton_aot -e test_bench_loader -e test_interop)} 2>&1 \
  | tee "$OUT/tests.log" | tail -25
if [ "${TK_SKIP_BENCH:-0}" != "1" ]; then
  python3 -m benchmarks.run_all --out "$OUT" --no-plot ${TK_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | tail -60
fi
