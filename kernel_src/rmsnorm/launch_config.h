// Launch shapes of the RMSNorm CUDA kernels, as data. Host-only, no CUDA headers.
//
// Register-resident kernels (rows whose bytes are a multiple of 16 and pointers 16-byte
// aligned): a row is cut into 16-byte vectors (8 bf16/fp16, 4 fp32). The threads_per_row
// threads that share a row hold vectors lane, lane + threads_per_row, lane + 2 *
// threads_per_row, ... (vecs_per_thread of them), so every warp-wide access is coalesced and
// the row is read from device memory once. A row takes the first shape whose capacity
// (threads_per_row * vecs_per_thread vectors) holds it.
//
// Looped kernels (everything else: narrower vectors, or rows past the last capacity): one block
// per row walks the row twice, the second pass re-reading it from L2.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "_common/launch_shapes.h"

namespace tk::rmsnorm {

// Every shape keeps threads_per_block * min_blocks_per_sm <= 1024, the thread limit of an
// sm_75 multiprocessor, so all architectures get the same register budget from one table.
// Capacities are given in bf16 elements (fp32: half as many).
inline constexpr ResidentShape kFwdShapes[] = {
    {32, 1, 4, 8},     // hidden <= 256
    {32, 2, 4, 8},     // <= 512
    {32, 4, 4, 8},     // <= 1024
    {128, 2, 1, 8},    // <= 2048
    {128, 4, 1, 8},    // <= 4096
    {256, 4, 1, 4},    // <= 8192
    {512, 4, 1, 2},    // <= 16384
    {1024, 4, 1, 1},   // <= 32768
};

// The backward keeps dy, z and weight in registers and its dweight sums in shared memory
// (4 bytes per element of capacity, so 8192 bf16 elements at most within the 48 KB of static
// shared memory). 4 vectors per thread need up to 128 registers, hence 512 threads per SM.
// Measured on an H200, bf16: [16384, 8192] ran at 92.5% of copy bandwidth with 256 x 4 against
// 68.7% with 512 x 2, and [32768, 4096] at 94.1% with 128 x 4 against 89.8% with 256 x 2 (3
// blocks per SM); on an H100, [4096, 2048] ran 3% faster with 256 x 1 than with 128 x 2.
inline constexpr ResidentShape kBwdShapes[] = {
    {32, 1, 8, 4},     // hidden <= 256
    {32, 2, 8, 3},     // <= 512
    {128, 1, 1, 8},    // <= 1024
    {256, 1, 1, 4},    // <= 2048
    {128, 4, 1, 4},    // <= 4096
    {256, 4, 1, 2},    // <= 8192
};

// Blocks of the persistent backward grid, which is also the number of fp32 partial-dweight
// rows in the workspace: enough to fill the GPU, never more blocks than rows to give them.
constexpr int64_t bwd_grid_blocks(int64_t rows, int rows_per_block, int blocks_per_sm,
                                  int multiprocessors) {
  const int64_t needed = (rows + rows_per_block - 1) / rows_per_block;
  return std::min<int64_t>(needed, static_cast<int64_t>(blocks_per_sm) * multiprocessors);
}

static_assert(valid_resident_shapes(kFwdShapes), "see valid_resident_shapes");
static_assert(valid_resident_shapes(kBwdShapes), "see valid_resident_shapes");

}  // namespace tk::rmsnorm
