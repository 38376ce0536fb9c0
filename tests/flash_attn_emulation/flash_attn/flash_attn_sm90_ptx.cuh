// Stands in for kernel_src/flash_attn/flash_attn_sm90_ptx.cuh (this directory comes first on
// the include path): the same functions on the host, from the PTX ISA's definitions.
//   mbarrier: a phase counter, pending arrivals and a transaction count, guarded by one mutex;
//     a wait blocks on a condition variable until the phase of the asked parity has completed.
//   bar.sync / bar.arrive: a per-id thread count that opens at the asked number of threads.
//   TMA: the copy happens when issued (box elements past the tensor read as zero, the
//     128-byte swizzle applied to the shared-memory address), then completes its bytes on the
//     barrier. The tensor map is EmulatedTensorMap, written by the emulator's
//     cuTensorMapEncodeTiled (emu_launch.cpp).
//   wgmma: flash_attn_sm90_wgmma.cuh beside this; fence, commit and wait are no-ops (the
//     emulated instruction completes before it returns), as are setmaxnreg and the proxy fence.
//   stmatrix: the warp exchanges its fragments; each lane writes the row whose address it gave.
//   The bulk reduction: the adds happen when issued, under one mutex; commit and wait are no-ops.
//   The hand-over between blocks: std::atomic_ref on the counter and the flag (blocks run one
//     after another, so a second half always finds the first's state published).
// Shared-memory addresses are offsets into smem_raw (the kernels' extern __shared__ array),
// which is 1024-byte aligned, so the swizzle sees the same address bits as on the GPU.
#pragma once

#include "emu_runtime.h"

#include <cuda.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "flash_attn/flash_attn_sm90_tensor_map.h"

namespace tk::flash_attn::sm90 {

using std::max;
using std::min;

extern unsigned char smem_raw[];

// What the emulated cuTensorMapEncodeTiled keeps in a CUtensorMap's 128 opaque bytes.
struct EmulatedTensorMap {
  const unsigned char* data;
  uint64_t dims[4];
  uint64_t strides[4];  // bytes; strides[0] is the element size
  uint32_t box[4];
};
static_assert(sizeof(EmulatedTensorMap) <= sizeof(CUtensorMap), "fits the opaque map");

inline uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(static_cast<const unsigned char*>(pointer) - smem_raw);
}

// Where 128-byte-swizzled shared-memory address `address` is stored: 16-byte unit u of a
// 128-byte row r (of its 1024-byte period) sits at unit u ^ (r % 8).
inline uint32_t swizzled(uint32_t address) { return address ^ (((address >> 7) & 7) << 4); }

// ---- mbarrier -------------------------------------------------------------------------------

struct Mbarrier {
  int arrivals = 0;  // per phase
  int pending = 0;
  int64_t transactions = 0;
  uint32_t completed_phases = 0;
};

inline std::mutex mbarrier_mutex;
inline std::condition_variable mbarrier_changed;
inline std::unordered_map<const uint64_t*, Mbarrier> mbarriers;

inline void complete_if_done(Mbarrier& b) {
  if (b.pending == 0 && b.transactions == 0) {
    ++b.completed_phases;
    b.pending = b.arrivals;
    mbarrier_changed.notify_all();
  }
}

inline void mbarrier_init(uint64_t* bar, int arrivals) {
  std::lock_guard<std::mutex> lock(mbarrier_mutex);
  mbarriers[bar] = Mbarrier{arrivals, arrivals, 0, 0};
}

inline void fence_barrier_init() {}

inline void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  std::lock_guard<std::mutex> lock(mbarrier_mutex);
  Mbarrier& b = mbarriers.at(bar);
  b.transactions += bytes;
  --b.pending;
  complete_if_done(b);
}

inline void mbarrier_arrive(uint64_t* bar) {
  std::lock_guard<std::mutex> lock(mbarrier_mutex);
  Mbarrier& b = mbarriers.at(bar);
  --b.pending;
  complete_if_done(b);
}

inline void mbarrier_complete_tx(uint64_t* bar, uint32_t bytes) {
  std::lock_guard<std::mutex> lock(mbarrier_mutex);
  Mbarrier& b = mbarriers.at(bar);
  b.transactions -= bytes;
  complete_if_done(b);
}

// The phase of parity `parity` has completed once the current phase's parity differs.
inline void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  std::unique_lock<std::mutex> lock(mbarrier_mutex);
  mbarrier_changed.wait(lock, [&] { return (mbarriers.at(bar).completed_phases & 1) != parity; });
}

// ---- named barriers ---------------------------------------------------------------------------

struct NamedBarrier {
  int arrived = 0;
  uint64_t generation = 0;
};

inline NamedBarrier named_barriers[16];

// Counts one thread; the barrier completes (and opens) at `threads`. Holds mbarrier_mutex.
inline void named_barrier_count(int id, int threads) {
  NamedBarrier& b = named_barriers[id];
  if (++b.arrived == threads) {
    b.arrived = 0;
    ++b.generation;
    mbarrier_changed.notify_all();
  }
}

inline void named_barrier_sync(int id, int threads) {
  std::unique_lock<std::mutex> lock(mbarrier_mutex);
  const uint64_t generation = named_barriers[id].generation;
  named_barrier_count(id, threads);
  mbarrier_changed.wait(lock, [&] { return named_barriers[id].generation != generation; });
}

inline void named_barrier_arrive(int id, int threads) {
  std::lock_guard<std::mutex> lock(mbarrier_mutex);
  named_barrier_count(id, threads);
}

// ---- stores from accumulator fragments --------------------------------------------------------

inline void fence_async_shared() {}

// Lane l writes row l % 8 of matrix l / 8 at the address it gave: as held (element c from lane
// 4 (l % 8) + c / 2, half c % 2) or transposed (column l % 8 of the held matrix: element c from
// lane 4c + (l % 8) / 2, half (l % 8) % 2), from register l / 8.
inline void emulated_stmatrix(uint32_t row_address, const uint32_t (&r)[4], bool transposed) {
  uint64_t mine[emu::kWords] = {row_address, r[0], r[1], r[2], r[3]};
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  const int lane = threadIdx.x % 32;
  const int m = lane / 8;
  const int line = lane % 8;
  for (int c = 0; c < 8; ++c) {
    const int holder = transposed ? 4 * c + line / 2 : 4 * line + c / 2;
    const bool high = (transposed ? line : c) % 2;
    const uint32_t word = static_cast<uint32_t>(all[holder][1 + m]);
    const uint16_t half = static_cast<uint16_t>(high ? word >> 16 : word & 0xFFFF);
    std::memcpy(smem_raw + row_address + 2 * c, &half, 2);
  }
  // Every lane's writes land before any lane goes on (the warp's store completes as one).
  emu::exchange(mine, all);
}

inline void stmatrix_x4(uint32_t row_address, const uint32_t (&r)[4]) {
  emulated_stmatrix(row_address, r, false);
}

inline void stmatrix_x4_trans(uint32_t row_address, const uint32_t (&r)[4]) {
  emulated_stmatrix(row_address, r, true);
}

// ---- bulk reductions into global memory -------------------------------------------------------

inline std::mutex bulk_mutex;

inline void bulk_reduce_add(float* global, uint32_t shared, uint32_t bytes) {
  std::lock_guard<std::mutex> lock(bulk_mutex);
  for (uint32_t at = 0; at < bytes; at += 4) {
    float value;
    std::memcpy(&value, smem_raw + shared + at, 4);
    global[at / 4] += value;
  }
}

inline void bulk_commit_group() {}
template <int kPending>
inline void bulk_wait_read() {}
template <int kPending>
inline void bulk_wait() {}

// ---- a warp's hand-over of state between blocks ------------------------------------------------

inline int warp_count_arrival(int* counter, int lane) {
  uint64_t mine[emu::kWords] = {};
  if (lane == 0) mine[0] = static_cast<uint32_t>(std::atomic_ref<int>(*counter).fetch_add(1));
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  return static_cast<int>(all[0][0]);
}

inline void store_state(float* at, float value) { *at = value; }
inline float load_state(const float* at) { return *at; }

inline void warp_publish(int* flag, int lane) {
  __syncwarp();
  if (lane == 0) std::atomic_ref<int>(*flag).store(1, std::memory_order_release);
}

inline void warp_wait_published(const int* flag) {
  while (std::atomic_ref<int>(*const_cast<int*>(flag)).load(std::memory_order_acquire) == 0) {
    std::this_thread::yield();
  }
  __syncwarp();
}

// ---- TMA --------------------------------------------------------------------------------------

inline void tma_load_4d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1, int c2,
                        int c3) {
  EmulatedTensorMap m;
  std::memcpy(&m, map, sizeof(m));
  const int coords[4] = {c0, c1, c2, c3};
  const uint32_t base = shared_address(dst);
  uint32_t offset = 0;
  for (uint32_t i3 = 0; i3 < m.box[3]; ++i3) {
    for (uint32_t i2 = 0; i2 < m.box[2]; ++i2) {
      for (uint32_t i1 = 0; i1 < m.box[1]; ++i1) {
        for (uint32_t i0 = 0; i0 < m.box[0]; ++i0, offset += 2) {
          const int64_t at[4] = {coords[0] + int64_t{i0}, coords[1] + int64_t{i1},
                                 coords[2] + int64_t{i2}, coords[3] + int64_t{i3}};
          uint16_t value = 0;
          bool inside = true;
          int64_t byte = 0;
          for (int d = 0; d < 4; ++d) {
            inside = inside && at[d] >= 0 && at[d] < static_cast<int64_t>(m.dims[d]);
            byte += at[d] * static_cast<int64_t>(m.strides[d]);
          }
          if (inside) std::memcpy(&value, m.data + byte, 2);
          std::memcpy(smem_raw + swizzled(base + offset), &value, 2);
        }
      }
    }
  }
  mbarrier_complete_tx(bar, offset);
}

inline void tma_prefetch_map(const CUtensorMap*) {}

// ---- wgmma ------------------------------------------------------------------------------------

inline void wgmma_fence() {}
inline void wgmma_commit() {}
template <int kPending>
inline void wgmma_wait() {}
template <int kTiles>
inline void fence_registers(float (&)[kTiles][4]) {}

template <int kRegisters>
inline void release_registers() {}
template <int kRegisters>
inline void claim_registers() {}

// Kernels run one after another here: nothing to overlap or wait for.
inline void allow_dependent_launch() {}
inline void wait_for_previous_grid() {}

}  // namespace tk::flash_attn::sm90
