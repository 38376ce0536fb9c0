// Launch shapes of the GEGLU / GELU CUDA kernels. Host-only, no CUDA headers.
//
// Gated kernels: a row of y holds row_vecs vectors (16 bytes each when hidden and every pointer
// allow it, else single elements). A block of kThreads threads is tx x ty: tx threads share a
// row piece and each takes vecs_per_thread vectors of it, tx apart (a warp's accesses are
// contiguous), and ty row pieces sit side by side. tx is a warp for long rows and shrinks
// (power of two) for short ones so the block's threads stay busy; blockIdx.x walks the pieces
// of a row, blockIdx.y (with a stride loop) the rows.
//
// Elementwise kernels: a flat 1-D grid; each thread takes vecs_per_thread vectors kThreads apart.
#pragma once

#include <algorithm>
#include <cstdint>

#include "_common/launch_util.h"

namespace tk::geglu {

inline constexpr int kThreads = 256;
// Given to __launch_bounds__: 1024 threads per SM, so at most 64 registers per thread. Every
// kernel fits without spilling (ptxas -v, sm_90); letting the backward take 80 registers (3
// blocks per SM) with 4 vectors per thread spilled 28 bytes in fp16.
inline constexpr int kMinBlocksPerSm = 4;
inline constexpr int kMaxGridY = 65535;

// Vectors (or single elements on the scalar path) each thread loads before it computes. The
// forward keeps 4 x 16 bytes of a and of b in flight per thread, the backward 2 x 16 bytes of
// dy, a and b (4 would need 80 registers): about 128 KB and 96 KB per SM at 1024 threads, well
// above what covers DRAM latency (bandwidth x latency / SMs is about 30 KB on an H200).
template <bool kVectors, bool kBackward>
inline constexpr int kGatedPerThread = kVectors ? (kBackward ? 2 : 4) : (kBackward ? 4 : 8);
// Elementwise: 4 x 16 bytes of x (and of dy) per thread; 8 single elements on the scalar path.
template <bool kVectors>
inline constexpr int kElementwisePerThread = kVectors ? 4 : 8;

// Threads sharing one row piece: the smallest power of two whose vecs_per_thread-wide sweep
// covers the row, at most a warp.
constexpr int threads_per_row(int64_t row_vecs, int vecs_per_thread) {
  const int64_t needed = ceil_div(row_vecs, vecs_per_thread);
  int tx = 1;
  while (tx < 32 && tx < needed) tx *= 2;
  return tx;
}

struct GatedLaunch {
  int tx;
  int ty;
  int64_t grid_x;   // row pieces
  int64_t grid_y;   // row groups, capped at kMaxGridY (the kernel loops over the rest)
};

constexpr GatedLaunch gated_launch(int64_t rows, int64_t row_vecs, int vecs_per_thread) {
  const int tx = threads_per_row(row_vecs, vecs_per_thread);
  const int ty = kThreads / tx;
  return {tx, ty, ceil_div(row_vecs, static_cast<int64_t>(tx) * vecs_per_thread),
          std::min<int64_t>(ceil_div(rows, ty), kMaxGridY)};
}

}  // namespace tk::geglu
