#!/usr/bin/env bash
# An A/B of builds in one device-machine command: the tree with the files under each BASE_DIR
# copied over it ("bases", the same relative paths; several dirs separated by commas), then the
# tree as it is ("new"). Builds and benchmarks each in turn (ninja recompiles only what the
# copies changed), then prints `benchmarks.compare` of every base against new for each peer in
# TK_AB_PEERS (default: ours). All runs share the GPU, host and driver; two runs of the same code
# on two H100 machines of one day differed by 4% (benchmarks/README.md).
#
#   bash scripts/gpu_ab.sh BASE_DIR[,BASE_DIR...] BENCH [bench flags...]
#   e.g. mkdir -p main/kernel_src/adaln
#        git show main:kernel_src/adaln/adaln.cu > main/kernel_src/adaln/adaln.cu   (locally)
#        bash scripts/gpu_ab.sh main bench_adaln --dtype bf16 --direction both     (device)
#
# $OUT gets ab.txt and one results JSON per build, ab-<base dir name>.json and ab-new.json: the
# device tool brings back at most 8 files, so the build and bench logs stay in $TK_AB_WORK
# (default /tmp/tk-ab) and only their tails are printed on a failure. A build that fails (ptxas's
# slow-code notes included) stops the A/B. Wheels in .whl/ are installed first, as in
# gpu_session.sh.
#
# With TK_AB_ROUNDS=N each build's output is kept ($TK_AB_WORK/builds/<name>) instead of being
# benchmarked at once, and after the last build `python -m benchmarks.ab` loads them all in one
# process and times them in N interleaved rounds, one peer of TK_AB_PEERS at a time (bench flags
# as benchmarks.ab takes them: --shapes, --dtype, --ops, --direction, --warmup, --rep); $OUT
# then gets ab.txt and ab-<peer>.json. Builds benchmarked one after the other drift apart with
# the GPU's clock and temperature over the call (cuDNN's unchanged kernel: 0.960-1.009).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/gpu_ab.sh BASE_DIR[,BASE_DIR...] BENCH [bench flags...]" >&2
  exit 2
fi
IFS=, read -r -a BASES <<< "$1"
BENCH=$2
shift 2
NAMES=()
for base in "${BASES[@]}"; do
  [ -d "$base" ] || { echo "gpu_ab.sh: no directory $base" >&2; exit 2; }
  name=$(basename "$base")
  if [[ " new ${NAMES[*]} " == *" $name "* ]]; then
    echo "gpu_ab.sh: two builds named $name" >&2
    exit 2
  fi
  NAMES+=("$name")
done
OUT=${OUT:-/tmp/tk-gpu-out}
WORK=${TK_AB_WORK:-/tmp/tk-ab}
PEERS=${TK_AB_PEERS:-ours}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/builder:$PWD/loader${PYTHONPATH:+:$PYTHONPATH}"
export TK_CUDA_ARCHS="${TK_GPU_ARCH:-9.0}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

build() {
  if ! python3 -m kernel_builder build --arch "$TK_CUDA_ARCHS" --jobs 16 > "$WORK/build-$1.log" 2>&1
  then
    tail -30 "$WORK/build-$1.log"
    exit 1
  fi
  echo "built $1 (${SECONDS}s)"
}

# Keeps the build's output for the interleaved run (TK_AB_ROUNDS), or benchmarks it now.
bench() {
  local name=$1
  shift
  if [ -n "${TK_AB_ROUNDS:-}" ]; then
    rm -rf "$WORK/builds/$name"
    mkdir -p "$WORK/builds"
    cp -r build "$WORK/builds/$name"
    echo "kept $name (${SECONDS}s)"
    return
  fi
  rm -rf "$WORK/ab-$name"
  python3 -m "benchmarks.$BENCH" --peers "$PEERS" --no-plot --out "$WORK/ab-$name" "$@" \
    > "$WORK/bench-$name.log" 2>&1 || { tail -30 "$WORK/bench-$name.log"; exit 1; }
  cp "$WORK/ab-$name"/*.json "$OUT/ab-$name.json"
  echo "benchmarked $name (${SECONDS}s)"
}

# The tree's own copy of every path some base replaces, put back before each build: the tree,
# and the build outputs in it, end as they came. cp without -p everywhere, so every copy is
# newer than the objects built before it and ninja recompiles its users (session 7 benchmarked
# a stale build when a copy kept its original time).
SAVED="$WORK/tree"
rm -rf "$SAVED"
for base in "${BASES[@]}"; do
  while read -r path; do
    if [ ! -e "$SAVED/$path" ]; then
      mkdir -p "$SAVED/$(dirname "$path")"
      cp "$path" "$SAVED/$path"
    fi
  done < <(cd "$base" && find . -type f)
done
# Copies every file under a dir over the tree, at the same relative paths.
copy_over() { (cd "$1" && find . -type f) | while read -r path; do cp "$1/$path" "$path"; done; }

for i in "${!BASES[@]}"; do
  copy_over "$SAVED"
  copy_over "${BASES[$i]}"
  build "${NAMES[$i]}"
  bench "${NAMES[$i]}" "$@"
done
copy_over "$SAVED"
build new
bench new "$@"
: > "$OUT/ab.txt"
if [ -n "${TK_AB_ROUNDS:-}" ]; then
  BUILT=()
  for name in "${NAMES[@]}" new; do BUILT+=("$WORK/builds/$name"); done
  for peer in ${PEERS//,/ }; do
    echo "## $peer, $TK_AB_ROUNDS interleaved rounds (above 1: new is faster)" | tee -a "$OUT/ab.txt"
    python3 -m benchmarks.ab "${BENCH#bench_}" "${BUILT[@]}" --peer "$peer" \
      --rounds "$TK_AB_ROUNDS" --out "$OUT/ab-$peer.json" "$@" > "$WORK/ab-$peer.log" 2>&1 \
      || { tail -30 "$WORK/ab-$peer.log"; exit 1; }
    sed -n '/^A: /,$p' "$WORK/ab-$peer.log" | tee -a "$OUT/ab.txt"
  done
  exit 0
fi
for peer in ${PEERS//,/ }; do
  for name in "${NAMES[@]}"; do
    echo "## $peer: $name / new (above 1: new is faster)" | tee -a "$OUT/ab.txt"
    python3 -m benchmarks.compare "$OUT/ab-$name.json" "$OUT/ab-new.json" --peer "$peer" \
      2>&1 | tee -a "$OUT/ab.txt" || true
  done
done
