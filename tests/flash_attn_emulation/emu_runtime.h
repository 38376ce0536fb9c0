// The CUDA execution model the FlashAttention kernels rely on, emulated on the host so that the
// kernels' own source runs (slowly) on a machine without a GPU: one OS thread per CUDA thread, a
// block's threads synchronised by std::barrier, warp- and warpgroup-collective instructions as an
// exchange of every lane's operands. Blocks run one after another, so one static array serves
// as every block's shared memory.
#pragma once

#include <cuda_runtime.h>

#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

// Device-code qualifiers mean nothing here (cuda_runtime.h defines some as attributes).
#undef __device__
#undef __global__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#undef __grid_constant__
#define __grid_constant__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n)

namespace emu {

inline constexpr int kWords = 6;  // operands one lane contributes to a warp-collective instruction

struct Warp {
  std::barrier<> barrier{32};
  uint64_t slots[32][kWords];
};

// wgmma: the 128 threads of 4 consecutive warps.
struct Warpgroup {
  std::barrier<> barrier{128};
  uint64_t slots[128][kWords];
};

struct Block {
  explicit Block(int threads)
      : barrier(threads),
        warps(std::make_unique<Warp[]>(threads / 32)),
        warpgroups(std::make_unique<Warpgroup[]>((threads + 127) / 128)) {}
  std::barrier<> barrier;
  std::unique_ptr<Warp[]> warps;
  std::unique_ptr<Warpgroup[]> warpgroups;
};

inline thread_local uint3 thread_idx;
inline thread_local uint3 block_idx;
inline thread_local dim3 grid_dim;
inline thread_local dim3 block_dim;
inline thread_local Block* block;

// Every lane of the calling warp gives its words and gets all 32 lanes' words.
inline void exchange(const uint64_t (&mine)[kWords], uint64_t (&all)[32][kWords]) {
  Warp& warp = block->warps[thread_idx.x / 32];
  std::memcpy(warp.slots[thread_idx.x % 32], mine, sizeof(mine));
  warp.barrier.arrive_and_wait();
  std::memcpy(all, warp.slots, sizeof(all));
  warp.barrier.arrive_and_wait();
}

// The same over the calling warpgroup's 128 threads.
inline void exchange_warpgroup(const uint64_t (&mine)[kWords], uint64_t (&all)[128][kWords]) {
  Warpgroup& group = block->warpgroups[thread_idx.x / 128];
  std::memcpy(group.slots[thread_idx.x % 128], mine, sizeof(mine));
  group.barrier.arrive_and_wait();
  std::memcpy(all, group.slots, sizeof(all));
  group.barrier.arrive_and_wait();
}

// Runs `kernel(p)` on every block of `grid`, `threads` OS threads per block, x fastest: in
// increasing blockIdx order, or with TK_EMULATED_BLOCK_ORDER=reverse in decreasing order (a GPU
// promises no order; a result that depends on it differs between the two).
template <typename Kernel, typename Params>
void launch(Kernel kernel, dim3 grid, int threads, const Params& p) {
  const char* order = std::getenv("TK_EMULATED_BLOCK_ORDER");
  const bool reverse = order != nullptr && std::strcmp(order, "reverse") == 0;
  const auto index = [reverse](unsigned i, unsigned n) { return reverse ? n - 1 - i : i; };
  for (unsigned k = 0; k < grid.z; ++k) {
    const unsigned z = index(k, grid.z);
    for (unsigned j = 0; j < grid.y; ++j) {
      const unsigned y = index(j, grid.y);
      for (unsigned i = 0; i < grid.x; ++i) {
        const unsigned x = index(i, grid.x);
        Block b(threads);
        std::vector<std::thread> running;
        for (int t = 0; t < threads; ++t) {
          running.emplace_back([&, t] {
            thread_idx = {static_cast<unsigned>(t), 0, 0};
            block_idx = {x, y, z};
            grid_dim = grid;
            block_dim = dim3(threads, 1, 1);
            block = &b;
            kernel(p);
          });
        }
        for (std::thread& thread : running) thread.join();
      }
    }
  }
}

}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define gridDim emu::grid_dim
#define blockDim emu::block_dim

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

inline void __syncwarp(unsigned = 0xffffffffu) {
  emu::block->warps[threadIdx.x / 32].barrier.arrive_and_wait();
}

inline float __shfl_xor_sync(unsigned, float value, int lane_mask, int = 32) {
  uint64_t mine[emu::kWords] = {__float_as_uint(value)};
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  return __uint_as_float(static_cast<uint32_t>(all[(threadIdx.x % 32) ^ lane_mask][0]));
}
