#!/usr/bin/env bash
# An A/B of two builds in one device-machine command: the tree as it is ("new") against the same
# tree with the files under BASE_DIR copied over it ("base"; the same relative paths). Copies
# base in, builds and benchmarks it, puts the tree's own files back, rebuilds (ninja recompiles
# only what changed) and benchmarks that, then prints `benchmarks.compare` for each peer in
# TK_AB_PEERS (default: ours). Both runs share the GPU, host and driver; two runs of the same
# code on two H100 machines of one day differed by 4% (benchmarks/README.md).
#
#   bash scripts/gpu_ab.sh BASE_DIR BENCH [bench flags...]
#   e.g. mkdir -p ab/kernel_src/adaln
#        git show main:kernel_src/adaln/adaln.cu > ab/kernel_src/adaln/adaln.cu   (locally)
#        bash scripts/gpu_ab.sh ab bench_adaln --dtype bf16 --direction both      (device)
#
# Writes $OUT/ab-new/<gpu>.json, $OUT/ab-base/<gpu>.json, $OUT/ab.txt and the build logs; the
# tree and its build are left as the tree's own files make them. Wheels in .whl/ are installed
# first, as in gpu_session.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ] || [ ! -d "$1" ]; then
  echo "usage: bash scripts/gpu_ab.sh BASE_DIR BENCH [bench flags...]" >&2
  exit 2
fi
BASE_DIR=$1
BENCH=$2
shift 2
OUT=${OUT:-/tmp/tk-gpu-out}
PEERS=${TK_AB_PEERS:-ours}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/builder:$PWD/loader${PYTHONPATH:+:$PYTHONPATH}"
export TK_CUDA_ARCHS="${TK_GPU_ARCH:-9.0}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

build() {
  if ! python3 -m kernel_builder build --arch "$TK_CUDA_ARCHS" --jobs 16 > "$OUT/build-$1.log" 2>&1
  then
    tail -30 "$OUT/build-$1.log"
    exit 1
  fi
  echo "built $1 (${SECONDS}s)"
}

bench() {
  local name=$1
  shift
  python3 -m "benchmarks.$BENCH" --peers "$PEERS" --no-plot --out "$OUT/ab-$name" "$@" \
    > "$OUT/bench-$name.log" 2>&1 || { tail -30 "$OUT/bench-$name.log"; exit 1; }
  echo "benchmarked $name (${SECONDS}s)"
}

# Base first, new last: the tree, and the build outputs in it, end as they came. A later device
# call copies the tree over with the files' original times, older than a base build made here,
# so ninja would keep the base objects (session 7 benchmarked a stale build that way).
SAVED=$(mktemp -d)
(cd "$BASE_DIR" && find . -type f) > "$SAVED/paths"
while read -r path; do
  mkdir -p "$SAVED/tree/$(dirname "$path")"
  cp -p "$path" "$SAVED/tree/$path"
  cp "$BASE_DIR/$path" "$path"
done < "$SAVED/paths"
build base
bench base "$@"
# cp without -p: the restored files are newer than the base objects, so ninja rebuilds them.
while read -r path; do cp "$SAVED/tree/$path" "$path"; done < "$SAVED/paths"
rm -rf "$SAVED"
build new
bench new "$@"
: > "$OUT/ab.txt"
for peer in ${PEERS//,/ }; do
  echo "## $peer: base / new (above 1: new is faster)" | tee -a "$OUT/ab.txt"
  python3 -m benchmarks.compare "$OUT"/ab-base/*.json "$OUT"/ab-new/*.json --peer "$peer" \
    2>&1 | tee -a "$OUT/ab.txt" || true
done
