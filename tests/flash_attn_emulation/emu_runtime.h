// The CUDA execution model the sm_80 FlashAttention kernels rely on, emulated on the host so
// that the kernels' own source runs (slowly) on a machine without a GPU: one OS thread per CUDA
// thread, a block's threads synchronised by std::barrier, warp-collective instructions as an
// exchange of every lane's operands. Blocks run one after another, so one static array serves
// as every block's shared memory.
#pragma once

#include <cuda_runtime.h>

#include <barrier>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// Device-code qualifiers mean nothing here (cuda_runtime.h defines some as attributes).
#undef __device__
#undef __global__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n)

namespace emu {

inline constexpr int kBlockThreads = 128;
inline constexpr int kWords = 6;  // operands one lane contributes to a warp-collective instruction

struct Warp {
  std::barrier<> barrier{32};
  uint64_t slots[32][kWords];
};

struct Block {
  std::barrier<> barrier{kBlockThreads};
  Warp warps[kBlockThreads / 32];
};

inline thread_local uint3 thread_idx;
inline thread_local uint3 block_idx;
inline thread_local Block* block;

// Every lane of the calling warp gives its words and gets all 32 lanes' words.
inline void exchange(const uint64_t (&mine)[kWords], uint64_t (&all)[32][kWords]) {
  Warp& warp = block->warps[thread_idx.x / 32];
  std::memcpy(warp.slots[thread_idx.x % 32], mine, sizeof(mine));
  warp.barrier.arrive_and_wait();
  std::memcpy(all, warp.slots, sizeof(all));
  warp.barrier.arrive_and_wait();
}

template <typename Kernel, typename Params>
void launch(Kernel kernel, dim3 grid, const Params& p) {
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        Block b;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < kBlockThreads; ++t) {
          threads.emplace_back([&, t] {
            thread_idx = {t, 0, 0};
            block_idx = {x, y, z};
            block = &b;
            kernel(p);
          });
        }
        for (std::thread& thread : threads) thread.join();
      }
    }
  }
}

}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim (dim3(emu::kBlockThreads, 1, 1))

inline float __uint_as_float(unsigned bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

inline unsigned __float_as_uint(float value) {
  unsigned bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

inline void __syncthreads() { emu::block->barrier.arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float value, int lane_mask, int = 32) {
  uint64_t mine[emu::kWords] = {__float_as_uint(value)};
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  return __uint_as_float(static_cast<uint32_t>(all[(threadIdx.x % 32) ^ lane_mask][0]));
}
