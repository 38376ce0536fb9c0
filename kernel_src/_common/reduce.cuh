// Sum reductions across a warp and across a block, in fp32. Framework-free: CUDA headers only.
#pragma once

#include <cuda_runtime.h>

namespace tk {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullWarpMask = 0xffffffffu;

// Butterfly over the 32 lanes: every lane returns the sum. All 32 lanes must call it.
__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullWarpMask, value, offset);
  }
  return value;
}

// Shared-memory scratch for block_sums of up to kCapacity values: a partial per value per warp,
// up to 1024 threads.
template <int kCapacity>
struct BlockSumsScratch {
  float warp_partials[kWarpSize][kCapacity];
};
using BlockSumScratch = BlockSumsScratch<1>;

// Sums of kValues independent values over a 1-D block whose size is a multiple of 32, in place:
// every thread gets the totals. All threads of the block must call it. One barrier serves all
// the values (each is summed in the order a call for it alone would use, so the bits are the
// same), and there is no trailing one, so a loop that calls it repeatedly must alternate between
// two scratch buffers: a warp can then only write a buffer again after the next call's barrier,
// which every warp passes only after reading that buffer.
template <int kValues, int kCapacity>
__device__ __forceinline__ void block_sums(float (&values)[kValues],
                                           BlockSumsScratch<kCapacity>& scratch) {
  static_assert(kValues <= kCapacity, "the scratch holds kCapacity values per warp");
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
#pragma unroll
  for (int i = 0; i < kValues; ++i) {
    values[i] = warp_sum(values[i]);
    if (lane == 0) scratch.warp_partials[warp][i] = values[i];
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kValues; ++i) {
    values[i] = warp_sum(lane < num_warps ? scratch.warp_partials[lane][i] : 0.0f);
  }
}

__device__ __forceinline__ float block_sum(float value, BlockSumScratch& scratch) {
  float values[1] = {value};
  block_sums(values, scratch);
  return values[0];
}

// Sums over the threads that share a row, in place: one warp when threads_per_row is 32, else
// the whole 1-D block (block_sums' rules). Kernels with a fixed row width pass a constant.
template <int kValues, int kCapacity>
__device__ __forceinline__ void row_sums(float (&values)[kValues], int threads_per_row,
                                         BlockSumsScratch<kCapacity>& scratch) {
  if (threads_per_row == kWarpSize) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) values[i] = warp_sum(values[i]);
  } else {
    block_sums(values, scratch);
  }
}

template <int kCapacity>
__device__ __forceinline__ float row_sum(float value, int threads_per_row,
                                         BlockSumsScratch<kCapacity>& scratch) {
  float values[1] = {value};
  row_sums(values, threads_per_row, scratch);
  return values[0];
}

}  // namespace tk
