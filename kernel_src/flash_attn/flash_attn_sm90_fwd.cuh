// The sm_90a FlashAttention forward: warpgroup MMA (wgmma) fed by the tensor memory accelerator
// (TMA), with producer/consumer warp specialization. One block per (128 query rows, query head,
// sequence) and three warpgroups:
//   warpgroup 0, the producer: one thread issues the TMA copies of the Q tile and of the K and V
//     tiles through kStages shared-memory stages, each stage guarded by a "full" mbarrier (the
//     copy landed) and an "empty" one (both consumers are done with it); it keeps 24 registers.
//   warpgroups 1 and 2, the consumers: 64 query rows each, 240 registers. Per key tile:
//     S = Q K^T (wgmma, both operands in shared memory), the mask and the online softmax in
//     registers (the sm_80 code: a wgmma accumulator row is laid out like an mma.sync C tile),
//     then O += P V with P converted in registers into wgmma's A fragments.
// While one consumer runs its softmax the other's wgmma keeps the tensor cores busy, and the
// producer keeps the next tiles in flight. The mask, sequence and key-tile range logic is the
// sm_80 kernels' (flash_attn_sm80.cuh). Framework-free: CUDA headers only.
#pragma once

#include <cuda.h>

#include "flash_attn/flash_attn_sm80_fwd.cuh"
#include "flash_attn/flash_attn_sm80_params.h"
#include "flash_attn/flash_attn_sm90_ptx.cuh"
#include "flash_attn/flash_attn_sm90_wgmma.cuh"

namespace tk::flash_attn::sm90 {

using sm80::Params;

// The host API's arguments plus one TMA descriptor per input. Each map is 4-D, innermost
// first: (head_dim, a, b, batch) where (a, b) is (heads, rows) or (rows, heads), whichever puts
// the smaller stride first; `rows_first` says which. Varlen maps have batch 1.
struct FwdParams {
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;
  Params base;
  bool q_rows_first;
  bool k_rows_first;
  bool v_rows_first;
};

template <int kHeadDim>
struct FwdShape {
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kRows = 64 * kConsumers;
  // Head dim 256 takes 64-key tiles: its O accumulator is already 128 registers per thread.
  static constexpr int kKeys = kHeadDim <= 128 ? 128 : 64;
  static constexpr int kStages = 2;
  static constexpr int kChunks = kHeadDim / kChunkElements;
  static constexpr int kQBytes = kRows * kHeadDim * 2;
  static constexpr int kKvBytes = kKeys * kHeadDim * 2;  // one K or V tile
  static constexpr int kBarriers = 1 + 4 * kStages;
  // Tiles, barriers, and slack to align the tiles to the swizzle period.
  static constexpr int kSmemBytes = kQBytes + 2 * kStages * kKvBytes + 8 * kBarriers +
                                    kSwizzleBytes;
  // 24 + 2 x 240 registers per thread of a warpgroup stay within the 64K of a multiprocessor.
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
};

// Copies rows [row, row + box rows) of one head into a tile, one 64-column chunk per copy.
template <int kHeadDim, int kBoxRows, typename T>
__device__ __forceinline__ void load_tile(T* tile, const CUtensorMap* map, bool rows_first,
                                          uint64_t* bar, int head, int row, int batch) {
#pragma unroll
  for (int c = 0; c < kHeadDim / kChunkElements; ++c) {
    T* chunk = tile + c * kBoxRows * kChunkElements;
    if (rows_first) {
      tma_load_4d(chunk, map, bar, c * kChunkElements, row, head, batch);
    } else {
      tma_load_4d(chunk, map, bar, c * kChunkElements, head, row, batch);
    }
  }
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(FwdShape<kHeadDim>::kThreads, 1)
    fwd_kernel(const __grid_constant__ FwdParams fp) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Compiled for another architecture: never launched there (flash_attn_cuda.cu dispatches
  // here only on sm_90 with sm_90a code in the build).
#else
  using Shape = FwdShape<kHeadDim>;
  constexpr int kRows = Shape::kRows;
  constexpr int kKeys = Shape::kKeys;
  constexpr int kStages = Shape::kStages;
  const Params& p = fp.base;

  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem =
      smem_raw + (kSwizzleBytes - shared_address(smem_raw) % kSwizzleBytes) % kSwizzleBytes;
  T* q_tile = reinterpret_cast<T*>(smem);             // [kChunks][kRows][64]
  T* k_tiles = q_tile + kRows * kHeadDim;             // [kStages][kChunks][kKeys][64]
  T* v_tiles = k_tiles + kStages * kKeys * kHeadDim;  // [kStages][kChunks][kKeys][64]
  uint64_t* q_full = reinterpret_cast<uint64_t*>(v_tiles + kStages * kKeys * kHeadDim);
  uint64_t* k_full = q_full + 1;
  uint64_t* v_full = k_full + kStages;
  uint64_t* k_empty = v_full + kStages;
  uint64_t* v_empty = k_empty + kStages;

  const sm80::QueryBlock block = sm80::query_block<kRows, kKeys>(p);
  const sm80::Sequence& seq = block.seq;
  if (block.m0 >= seq.q_len) return;
  const int first_tile = block.first_tile;
  const int end_tile = block.end_tile;

  if (threadIdx.x == 0) {
    mbarrier_init(q_full, 1);
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&k_full[s], 1);
      mbarrier_init(&v_full[s], 1);
      // Lane 0 of every consumer warp arrives once its part of the wgmma reading the stage is done.
      mbarrier_init(&k_empty[s], 4 * Shape::kConsumers);
      mbarrier_init(&v_empty[s], 4 * Shape::kConsumers);
    }
    fence_barrier_init();
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    release_registers<Shape::kProducerRegisters>();
    if (threadIdx.x != 0 || first_tile >= end_tile) return;
    const int batch = static_cast<int>(seq.batch);
    const int q_row = static_cast<int>(seq.q_start) + block.m0;
    mbarrier_arrive_expect_tx(q_full, Shape::kQBytes);
    load_tile<kHeadDim, kRows>(q_tile, &fp.q_map, fp.q_rows_first, q_full, block.h, q_row, batch);
    for (int tile = first_tile; tile < end_tile; ++tile) {
      const int it = tile - first_tile;
      const int s = it % kStages;
      const uint32_t free_parity = ((it / kStages) & 1) ^ 1;
      const int k_row = static_cast<int>(seq.k_start) + tile * kKeys;
      mbarrier_wait(&k_empty[s], free_parity);
      mbarrier_arrive_expect_tx(&k_full[s], Shape::kKvBytes);
      load_tile<kHeadDim, kKeys>(k_tiles + s * kKeys * kHeadDim, &fp.k_map, fp.k_rows_first,
                                 &k_full[s], block.hk, k_row, batch);
      mbarrier_wait(&v_empty[s], free_parity);
      mbarrier_arrive_expect_tx(&v_full[s], Shape::kKvBytes);
      load_tile<kHeadDim, kKeys>(v_tiles + s * kKeys * kHeadDim, &fp.v_map, fp.v_rows_first,
                                 &v_full[s], block.hk, k_row, batch);
    }
    return;
  }
  claim_registers<Shape::kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  const int warp_row0 = block.m0 + consumer * 64 + warp * 16;
  float o[kHeadDim / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  if (first_tile < end_tile) mbarrier_wait(q_full, 0);
  // This warpgroup's 64 rows of each Q chunk.
  const uint32_t q_rows = shared_address(q_tile) + consumer * 64 * 128;
  for (int tile = first_tile; tile < end_tile; ++tile) {
    const int it = tile - first_tile;
    const int s = it % kStages;
    const uint32_t parity = (it / kStages) & 1;
    const uint32_t k_stage = shared_address(k_tiles + s * kKeys * kHeadDim);
    const uint32_t v_stage = shared_address(v_tiles + s * kKeys * kHeadDim);

    float sc[kKeys / 8][4] = {};
    mbarrier_wait(&k_full[s], parity);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      // k-step kk: chunk kk / 4, bytes 32 (kk % 4) into its 128-byte rows.
      const uint32_t chunk = kk / 4;
      const uint32_t within = (kk % 4) * 32;
      wgmma_ss<T>(sc, smem_descriptor(q_rows + chunk * kRows * 128 + within, 0),
                  smem_descriptor(k_stage + chunk * kKeys * 128 + within, 0), kk > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(sc);
    if (lane == 0) mbarrier_arrive(&k_empty[s]);

    const int j0 = tile * kKeys;
    sm80::scale_and_mask_rows<kKeys>(sc, p.scale_log2, block.mask, warp_row0 + lane / 4,
                                     j0 + 2 * (lane % 4),
                                     !block.mask.all_allowed(warp_row0, 16, j0, kKeys));
    sm80::online_softmax<kKeys, kHeadDim>(sc, o, row_max, row_sum);

    // P as the A fragments of every k-step, all converted before the first wgmma reads them
    // (a register written between two wgmmas makes ptxas serialise them: warning C7519).
    uint32_t pa[kKeys / 16][4];
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      pa[kk][0] = sm80::pack2<T>(sc[2 * kk][0], sc[2 * kk][1]);
      pa[kk][1] = sm80::pack2<T>(sc[2 * kk][2], sc[2 * kk][3]);
      pa[kk][2] = sm80::pack2<T>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pa[kk][3] = sm80::pack2<T>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
    }
    mbarrier_wait(&v_full[s], parity);
    fence_registers(o);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      // Keys 16 kk .. 16 kk + 15: two 8-row groups of every chunk; chunks kKeys rows apart.
      wgmma_rs<T>(o, pa[kk], smem_descriptor(v_stage + kk * 16 * 128, kKeys * 128), true);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(o);
    if (lane == 0) mbarrier_arrive(&v_empty[s]);
  }

  // A row with no allowed key has sum 0: out 0, lse -inf.
  float inverse[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float sum = sm80::quad_sum(row_sum[half]);
    inverse[half] = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int i = warp_row0 + lane / 4 + 8 * half;
    if (lane % 4 == 0 && i < seq.q_len) {
      p.lse[sm80::lse_index(p, seq, i, block.h)] =
          sum > 0.0f ? (row_max[half] + log2f(sum)) * sm80::kLn2 : -INFINITY;
    }
  }
  if (warp_row0 >= seq.q_len) return;
  T* out = static_cast<T*>(p.out) + sm80::q_like_row(p, seq, warp_row0, block.h, kHeadDim);
  sm80::store_c_tiles<T, kHeadDim>(out, static_cast<int64_t>(p.heads_q) * kHeadDim,
                                   seq.q_len - warp_row0, o, inverse, lane);
#endif
}

}  // namespace tk::flash_attn::sm90
