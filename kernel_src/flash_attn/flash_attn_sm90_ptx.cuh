// The Hopper instructions the sm_90a FlashAttention forward is built from, as inline PTX:
// mbarriers with transaction counts, the bulk tensor copy (TMA) that completes on them,
// the wgmma fence / commit / wait, named barriers, setmaxnreg, the transposing matrix store,
// the backward's bulk reduction into global memory, programmatic dependent launch, and a warp's
// hand-over of state to a warp of another block.
// The wgmma instructions themselves are generated (flash_attn_sm90_wgmma.cuh). TMA and
// mbarriers exist on sm_90; wgmma and setmaxnreg need sm_90a. Framework-free: CUDA headers only.
//
// Tile layout (what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B and wgmma reads with a 128-byte
// swizzle descriptor): a tile of R rows x D elements (16-bit) is stored as D / 64 column chunks,
// each R rows of 128 bytes; inside a chunk, 16-byte unit u of row r sits at unit u ^ (r % 8).
// A chunk starts on a 1024-byte boundary (8 rows: the period of the swizzle).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "_common/dependent_launch.cuh"
#include "flash_attn/flash_attn_sm90_tensor_map.h"

namespace tk::flash_attn::sm90 {

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// ---- mbarrier -------------------------------------------------------------------------------

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)),
               "r"(arrivals)
               : "memory");
}

// Makes the initialised barriers visible to the copy engine; a __syncthreads must follow.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` of copies completing on this phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   shared_address(bar)),
               "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar)) : "memory");
}

// Waits until the phase of parity `parity` has completed. A new barrier is in phase 0, so a
// wait for parity 1 returns at once: producers wait on "slot free" with the flipped parity.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n"
      "}\n" ::"r"(shared_address(bar)),
      "r"(parity)
      : "memory");
}

// ---- TMA --------------------------------------------------------------------------------------

// Copies the box at (c0, c1, c2, c3) of a 4-D tensor map into shared memory; the bytes count
// toward `bar`'s transaction count. Coordinates past the tensor's extent read as zero.
__device__ __forceinline__ void tma_load_4d(void* dst, const CUtensorMap* map, uint64_t* bar,
                                            int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(shared_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(bar)), "r"(c0), "r"(c1), "r"(c2),
      "r"(c3)
      : "memory");
}

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// ---- wgmma ------------------------------------------------------------------------------------

// Orders this thread's register writes before the next wgmma reads them.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most kPending committed wgmma groups of this warpgroup are in flight.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving accesses of the accumulators across a wgmma boundary (the
// asynchronous instruction reads and writes them behind its back).
template <int kTiles>
__device__ __forceinline__ void fence_registers(float (&d)[kTiles][4]) {
#pragma unroll
  for (int n = 0; n < kTiles; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[n][e])::"memory");
  }
}

// Makes this thread's ordinary shared-memory stores visible to the asynchronous proxy (wgmma
// operand reads, TMA); a barrier between the writers and the wgmma issuers must follow.
__device__ __forceinline__ void fence_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ---- stores from accumulator fragments --------------------------------------------------------

// Warp-collective: four 8 x 8 matrices of 16-bit elements, each held as the mma C-fragment
// (lane 4g + t: row g, columns 2t, 2t + 1; matrix m in r[m]), stored as they are held: lane l
// gives the shared address of row l % 8 of matrix l / 8 (16 contiguous bytes).
__device__ __forceinline__ void stmatrix_x4(uint32_t row_address, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                   row_address),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

// Warp-collective: four 8 x 8 matrices of 16-bit elements, each held as the mma C-fragment
// (lane 4g + t: row g, columns 2t, 2t + 1; matrix m in r[m]), stored transposed: lane l gives
// the shared address of row l % 8 of matrix l / 8 of the result (16 contiguous bytes), which is
// column l % 8 of the held matrix.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t row_address, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                   row_address),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

// ---- bulk reductions into global memory -------------------------------------------------------

// global[0 .. bytes / 4) += shared[0 ..) as one asynchronous bulk copy (the L2 adds), in this
// thread's current bulk group; both addresses 16-byte aligned, bytes a multiple of 16.
__device__ __forceinline__ void bulk_reduce_add(float* global, uint32_t shared, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(
                   global),
               "r"(shared), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

// Waits until at most kPending of this thread's bulk groups still read their shared memory.
template <int kPending>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}

// Waits until at most kPending of this thread's bulk groups are still incomplete.
template <int kPending>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// ---- a warp's hand-over of state between blocks (the forward's split query blocks) -------------

// Warp-collective: lane 0 adds one to `counter`; every lane gets the value before the add.
__device__ __forceinline__ int warp_count_arrival(int* counter, int lane) {
  int before = 0;
  if (lane == 0) before = atomicAdd(counter, 1);
  return __shfl_sync(0xffffffffu, before, 0);
}

// Per-thread state, read and written in L2 only (no stale L1 line of another SM's write).
__device__ __forceinline__ void store_state(float* at, float value) { __stcg(at, value); }
__device__ __forceinline__ float load_state(const float* at) { return __ldcg(at); }

// Warp-collective, after every lane's store_state: sets `flag` once those stores are visible
// to the whole GPU.
__device__ __forceinline__ void warp_publish(int* flag, int lane) {
  __syncwarp();
  if (lane == 0) {
    __threadfence();
    asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(flag), "r"(1) : "memory");
  }
}

// Warp-collective: returns once `flag` is set (warp_publish), every lane then seeing the stores
// published with it. Every lane polls, and the loop ends for all at once: with lane 0 polling
// alone, ptxas moved the forward's per-step index math off the uniform datapath (37 more
// instructions in the hd-128 main loop) and spilled.
__device__ __forceinline__ void warp_wait_published(const int* flag) {
  int set = 0;
  do {
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(set) : "l"(flag) : "memory");
  } while (__any_sync(0xffffffffu, set == 0));
}

// ---- named barriers ---------------------------------------------------------------------------

// Waits until `threads` threads (whole warps) have reached barrier `id` by sync or arrive.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Counts this warp toward barrier `id` without waiting.
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- register reallocation between warpgroups ---------------------------------------------------

template <int kRegisters>
__device__ __forceinline__ void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

template <int kRegisters>
__device__ __forceinline__ void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

// ---- programmatic dependent launch ------------------------------------------------------------

// _common/dependent_launch.cuh's, named here so that the emulator's copy of this file can
// replace them too.
using ::tk::allow_dependent_launch;
using ::tk::wait_for_previous_grid;

}  // namespace tk::flash_attn::sm90
