// Launch-shape pieces shared by the register-resident / looped kernel families (RMSNorm,
// AdaLN). Host-only, no CUDA headers. Each kernel keeps its own shape tables in its own
// launch_config.h.
//
// Register-resident kernels: a row is cut into 16-byte vectors; the threads_per_row threads
// that share a row hold vectors lane, lane + threads_per_row, ... (vecs_per_thread of them), so
// every warp-wide access is coalesced. A row takes the first shape of a table whose capacity
// (threads_per_row * vecs_per_thread vectors) holds it.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tk {

struct ResidentShape {
  int threads_per_row;    // 32: one warp per row; more: the whole block per row
  int vecs_per_thread;    // 16-byte vectors each thread keeps in registers
  int rows_per_block;     // > 1 only with threads_per_row == 32
  int min_blocks_per_sm;  // given to __launch_bounds__, so the compiler keeps the registers
                          // within this occupancy

  constexpr int threads_per_block() const { return threads_per_row * rows_per_block; }
  constexpr int64_t capacity_vecs() const {
    return static_cast<int64_t>(threads_per_row) * vecs_per_thread;
  }
};

// Every shape of a table is one the resident kernels can run: whole warps per row (their row
// sums use warp shuffles and block_sums), one row per block unless a row is one warp, at most
// 1024 threads per block, and capacities that grow along the table (the first fit is the
// smallest).
template <int64_t kCount>
constexpr bool valid_resident_shapes(const ResidentShape (&table)[kCount]) {
  for (int64_t i = 0; i < kCount; ++i) {
    const ResidentShape& s = table[i];
    if (s.threads_per_row <= 0 || s.threads_per_row % 32 != 0) return false;
    if (s.rows_per_block != 1 && s.threads_per_row != 32) return false;
    if (s.threads_per_block() > 1024 || s.vecs_per_thread <= 0) return false;
    if (i > 0 && table[i].capacity_vecs() <= table[i - 1].capacity_vecs()) return false;
  }
  return true;
}

// Index of the first shape that holds num_vecs vectors, or -1 when none does.
template <int64_t kCount>
constexpr int find_resident_shape(const ResidentShape (&table)[kCount], int64_t num_vecs) {
  for (int64_t i = 0; i < kCount; ++i) {
    if (num_vecs <= table[i].capacity_vecs()) return static_cast<int>(i);
  }
  return -1;
}

// Looped kernels: a block per row, about 16 elements per thread per pass, 32 to 512 threads.
// Depends on the element count only (not the vector width), so a workspace size can be
// computed without the pointers.
inline constexpr int kLoopedMaxThreads = 512;

constexpr int looped_threads_per_row(int64_t hidden) {
  const int64_t warps = (hidden + 16 * 32 - 1) / (16 * 32);
  return static_cast<int>(std::clamp<int64_t>(warps, 1, kLoopedMaxThreads / 32) * 32);
}

// Looped blocks per SM of a persistent grid: up to 1024 threads and 16 blocks per SM (both
// sm_75 limits).
constexpr int looped_blocks_per_sm(int threads_per_row) {
  return std::min(16, 1024 / threads_per_row);
}

}  // namespace tk
