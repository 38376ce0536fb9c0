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

// Shared-memory scratch for block_sum: one partial per warp, up to 1024 threads.
struct BlockSumScratch {
  float warp_partials[kWarpSize];
};

// Sum over a 1-D block whose size is a multiple of 32; every thread returns the total. All
// threads of the block must call it. It has one barrier and no trailing one, so a loop that
// calls it repeatedly must alternate between two scratch buffers: a warp can then only write
// a buffer again after the next call's barrier, which every warp passes only after reading
// that buffer.
__device__ __forceinline__ float block_sum(float value, BlockSumScratch& scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) scratch.warp_partials[warp] = value;
  __syncthreads();
  const float partial = lane < num_warps ? scratch.warp_partials[lane] : 0.0f;
  return warp_sum(partial);
}

}  // namespace tk
