// Launch shapes of the AdaLN CUDA kernels, as data. Host-only, no CUDA headers.
//
// Register-resident kernels (rows whose bytes are a multiple of 16 and every pointer 16-byte
// aligned): a row is cut into 16-byte vectors (8 bf16/fp16, 4 fp32). The threads_per_row
// threads that share a row hold vectors lane, lane + threads_per_row, ... (vecs_per_thread of
// them), so every warp-wide access is coalesced and each input is read once. A row takes the
// first shape whose capacity (threads_per_row * vecs_per_thread vectors) holds it.
//
// Looped kernels (everything else: narrower vectors, or rows past the last capacity): one block
// per row walks the row several times, re-reading it (from L2 for any row that fits there).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "_common/launch_shapes.h"

namespace tk::adaln {

// Forward: the row (z) stays in registers across its one (rms) or two (layer) reductions.
// Shapes of at most two vectors per thread also hold scale, shift and weight across them
// (loaded with x, see adaln_fwd_resident); shapes of four load those after the reductions.
// threads_per_block * min_blocks_per_sm <= 1024 everywhere (the sm_75 thread limit), so the
// compiler may use up to 64 registers per thread.
// Capacities in bf16 elements (fp32: half as many).
inline constexpr ResidentShape kFwdShapes[] = {
    {32, 1, 4, 8},     // hidden <= 256
    {32, 2, 4, 8},     // <= 512
    {32, 4, 4, 8},     // <= 1024
    {128, 2, 1, 8},    // <= 2048
    {192, 2, 1, 5},    // <= 3072
    {256, 2, 1, 4},    // <= 4096
    {512, 2, 1, 2},    // <= 8192
    {1024, 2, 1, 1},   // <= 16384
    {1024, 4, 1, 1},   // <= 32768
};

// Forward of plain rows whose scale and shift are both per sample: x is their one DRAM stream
// (the modulation rows are L1/L2 hits), so a row puts few bytes in flight, and with kFwdShapes
// these rows moved at 76-88% of copy where per-token ones moved at 91-99% (H100, f0acdfd;
// Nsight Compute at 2x4096x3072: 69% of DRAM bandwidth, 43% occupancy). Here each thread holds
// four vectors (and so loads the modulation after the reductions) in blocks of half the threads,
// twice as many per SM: the same threads per SM and registers per thread as kFwdShapes, with
// twice the bytes of x in flight. Same capacities as kFwdShapes.
inline constexpr ResidentShape kFwdSampleShapes[] = {
    {32, 1, 4, 8},     // hidden <= 256
    {32, 2, 4, 8},     // <= 512
    {32, 4, 4, 8},     // <= 1024
    {64, 4, 1, 16},    // <= 2048
    {96, 4, 1, 10},    // <= 3072
    {128, 4, 1, 8},    // <= 4096
    {256, 4, 1, 4},    // <= 8192
    {512, 4, 1, 2},    // <= 16384
    {1024, 4, 1, 1},   // <= 32768
};
constexpr bool same_capacities(const ResidentShape (&a)[std::size(kFwdShapes)],
                               const ResidentShape (&b)[std::size(kFwdShapes)]) {
  for (size_t i = 0; i < std::size(kFwdShapes); ++i) {
    if (a[i].capacity_vecs() != b[i].capacity_vecs()) return false;
  }
  return true;
}
static_assert(same_capacities(kFwdSampleShapes, kFwdShapes),
              "the shape index found in kFwdShapes serves kFwdSampleShapes too");

// Backward: one vector per thread, since each thread also keeps up to three fp32 accumulator
// vectors (per-sample dscale/dweight, dshift and dgate sums over its columns) in registers across
// the rows of its block. threads_per_block * min_blocks_per_sm = 768 allows 80 registers per
// thread: ptxas (sm_75, sm_86, sm_89, sm_90) then spills nothing for any dtype, sm_80 one
// 4-byte value of 16-bit rows per row (since the layer-norm sums share one barrier), where 1024
// threads per block (64 registers) spilled 16-bit rows, so rows of more than 768 vectors take the
// looped kernel. The 32-thread shape runs 16 blocks per SM (the sm_75 limit), which caps nothing.
inline constexpr ResidentShape kBwdShapes[] = {
    {32, 1, 1, 16},    // hidden <= 256
    {64, 1, 1, 12},    // <= 512
    {128, 1, 1, 6},    // <= 1024
    {256, 1, 1, 3},    // <= 2048
    {384, 1, 1, 2},    // <= 3072
    {768, 1, 1, 1},    // <= 6144
};

// The backward grid is batch * chunks blocks: block (b, c) walks a contiguous run of the rows
// of sample b, so its partial sums belong to one sample. Enough chunks to give every SM
// blocks_per_sm blocks, never more chunks than rows of a sample (and at least one).
constexpr int64_t bwd_chunks_per_sample(int64_t batch, int64_t seq, int blocks_per_sm,
                                        int multiprocessors) {
  if (batch <= 0 || seq <= 0) return 1;
  const int64_t target = static_cast<int64_t>(blocks_per_sm) * multiprocessors;
  return std::clamp<int64_t>((target + batch - 1) / batch, 1, seq);
}

// The fused backward (resident kernels, launched cooperatively) sums its partial rows itself
// after a grid barrier, so its grid must fit on the device at once: as many chunks per sample as
// fill blocks_per_sm blocks per SM without going over, or 0 when even one chunk per sample
// would (then the backward is not fused).
constexpr int64_t fused_bwd_chunks_per_sample(int64_t batch, int64_t seq, int blocks_per_sm,
                                              int multiprocessors) {
  const int64_t capacity = static_cast<int64_t>(blocks_per_sm) * multiprocessors;
  if (batch <= 0 || seq <= 0 || batch > capacity) return 0;
  return std::min<int64_t>(capacity / batch, seq);
}

// Width of the fused backward's column slices (sum_partials_in_grid): the narrowest power of two
// from 4 to 128 with which a sample's chunks cover the row in one slice each, or 128.
constexpr int fused_slice_columns(int64_t hidden, int64_t chunks) {
  int slice = 4;
  while (slice < 128 && slice * chunks < hidden) slice *= 2;
  return slice;
}

static_assert(fused_bwd_chunks_per_sample(2, 4096, 2, 132) == 132, "264 blocks, 2 per SM");
static_assert(fused_bwd_chunks_per_sample(5, 4096, 2, 132) == 52, "floor: 260 of 264 blocks");
static_assert(fused_bwd_chunks_per_sample(265, 8, 1, 264) == 0, "more samples than blocks");
static_assert(fused_bwd_chunks_per_sample(1, 3, 2, 132) == 3, "never more chunks than rows");
static_assert(fused_slice_columns(3072, 132) == 32 && fused_slice_columns(2048, 396) == 8 &&
                  fused_slice_columns(3072, 10) == 128 && fused_slice_columns(8, 100) == 4,
              "see fused_slice_columns");

static_assert(valid_resident_shapes(kFwdShapes), "see valid_resident_shapes");
static_assert(valid_resident_shapes(kFwdSampleShapes), "see valid_resident_shapes");
static_assert(valid_resident_shapes(kBwdShapes), "see valid_resident_shapes");

}  // namespace tk::adaln
