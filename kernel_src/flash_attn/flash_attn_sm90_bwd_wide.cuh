// The sm_90a FlashAttention backward for head dims whose accumulators do not fit one
// warpgroup's registers (256: dK and dV of 64 keys would take 256 registers a thread), on the
// machinery of flash_attn_sm90_bwd.cuh (its producer warp, shared-memory layout and stages).
// Each of the two consumer warpgroups owns half the head dim of the block's accumulators and
// half of each step's scores; the halves of P^T and dS^T (or of dS) go through shared memory so
// that both warpgroups multiply by the whole of them. Two kernels after the delta kernel (the
// same form with or without determinism: no sums across blocks):
//   dk/dv: one block per (64 keys, key head, sequence); K and V stay, each (query head of the
//     group, 64-query block) step streams Q and dout. Per step warpgroup c computes
//     S^T = K Q^T and dP^T = V dout^T for query rows 32c .. 32c + 31 of the step, P^T and
//     dS^T, which it writes into the step's exchange tiles; after a barrier of both warpgroups,
//     dV[:, half c] += P^T dout[:, half c] and dK[:, half c] += dS^T Q[:, half c].
//   dq: one block per (64 query rows, query head, sequence); Q and dout stay, K and V stream in
//     64-key tiles. Warpgroup c computes S = Q K^T and dP = dout V^T for keys 32c .. 32c + 31
//     of the tile and dS = P (dP - delta) into the exchange tile; then
//     dQ[:, half c] += dS K[:, half c].
// Seven products per (64 x 64) pair, as the two-kernel form of flash_attn_sm90_bwd.cuh.
// Framework-free: CUDA headers only.
#pragma once

#include <cuda.h>

#include "flash_attn/flash_attn_sm80_bwd.cuh"
#include "flash_attn/flash_attn_sm90.cuh"
#include "flash_attn/flash_attn_sm90_bwd.cuh"

namespace tk::flash_attn::sm90 {

// Named barrier of both consumer warpgroups: a step's exchange tiles are written.
inline constexpr int kExchangeBarrier = kTailBarrier + 2;

// Both wide kernels' blocks, in BwdSmem's terms: its dS stages are the exchange tiles, two
// buffers (a step's and the next's) of two 64 x 64 tiles (P^T and dS^T; the dq kernel uses
// one, dS); no dQ stages.
template <int kDim>
struct WideBwdShape {
  static constexpr int kHeadDim = kDim;
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kResident = 64;
  static constexpr int kStreamed = 64;
  static constexpr int kCols = kHeadDim / kConsumers;     // of the accumulators, a warpgroup
  static constexpr int kPart = kStreamed / kConsumers;    // of a step's scores, a warpgroup
  static constexpr int kResidentBytes = 2 * kResident * kHeadDim * 2;
  static constexpr int kStreamedBytes = 2 * kStreamed * kHeadDim * 2;
  static constexpr int kExchangeBuffers = 2;
  static constexpr int kDsStages = 2 * kExchangeBuffers;
  static constexpr int kDsBytes = kStreamed * kResident * 2;
  static constexpr int kDqStageBytes = 0;
  static constexpr int kStages = 2;
  static constexpr int smem_bytes() {
    return bwd_smem_bytes(kResidentBytes, kStreamedBytes, kStreamed, kStages, kDsStages, kDsBytes,
                          kConsumers, kDqStageBytes, true);
  }
  static_assert(smem_bytes() <= kMaxBlockSmemBytes, "the tiles fit");
  static_assert(kCols % 64 == 0, "a warpgroup's columns are whole 64-column chunks");
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
};

// One warp's 16 rows (row0 ..) of a product's A fragments (a_fragments) over kSteps * 16
// columns from col0, stored as they are held into a 128-byte-swizzled K-major tile of
// kTileRows rows: one store of four 8 x 8 matrices per k-step (load_a_fragments' inverse).
template <int kTileRows, int kSteps>
__device__ __forceinline__ void store_a_fragments(uint32_t tile, const uint32_t (&a)[kSteps][4],
                                                  int row0, int col0, int lane) {
  const int m = lane / 8;
  const int row = row0 + 8 * (m % 2) + lane % 8;
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk) {
    stmatrix_x4(tile + swizzled_unit<kTileRows>(row, col0 + 16 * kk + 8 * (m / 2)), a[kk]);
  }
}

// acc += A B, issued, waited for and fenced (flash_attn_sm90.cuh's rules for in-flight
// accumulators), for both of a step's products: x += A_x B_x, y += A_y B_y.
template <typename T, int kDepth, int kCols, int kBRows>
__device__ __forceinline__ void accumulate_two(float (&x)[kCols / 8][4], uint32_t a_x,
                                               uint32_t b_x, float (&y)[kCols / 8][4],
                                               uint32_t a_y, uint32_t b_y) {
  fence_registers(x);
  fence_registers(y);
  wgmma_fence();
  issue_ss_b_nmajor<T, kDepth, kCols, 64, kBRows>(x, a_x, b_x, true);
  issue_ss_b_nmajor<T, kDepth, kCols, 64, kBRows>(y, a_y, b_y, true);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(x);
  fence_registers(y);
}

// Shared address of exchange tile `tile` (0 or 1) of the buffer of `step`.
template <typename T, class Shape>
__device__ __forceinline__ uint32_t exchange_tile(const BwdSmem<T, Shape, true>& sm, int step,
                                                  int tile) {
  const int buffer = step % Shape::kExchangeBuffers;
  return shared_address(sm.ds + (2 * buffer + tile) * Shape::kDsBytes / 2);
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(WideBwdShape<kHeadDim>::kThreads, 1)
    bwd_dk_dv_wide_kernel(const __grid_constant__ BwdParams bp) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Compiled for another architecture: never launched there.
#else
  using Shape = WideBwdShape<kHeadDim>;
  constexpr int kKeys = Shape::kResident;
  constexpr int kRows = Shape::kStreamed;
  constexpr int kPart = Shape::kPart;
  constexpr int kCols = Shape::kCols;
  const Params& p = bp.base;
  extern __shared__ unsigned char smem_raw[];
  BwdSmem<T, Shape, true> sm(smem_raw);
  // The dq kernel reads none of this kernel's output.
  allow_dependent_launch();

  const GridBlock block = heaviest_first_block<false>();
  const sm80::Sequence seq = sm80::sequence_of(p, block.sequence);
  const int n0 = block.tile * kKeys;
  if (n0 >= seq.k_len) return;
  const int hk = block.head;
  const sm80::Mask mask = sm80::mask_of(p, seq);
  const KeySteps<kKeys, kRows> plan(p, seq, mask, n0, hk);
  const int steps = plan.steps;

  if (threadIdx.x == 0) sm.init_barriers();
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    release_registers<Shape::kProducerRegisters>();
    if (threadIdx.x < 32) produce_key_block(bp, sm, seq, plan, n0);
    return;
  }
  claim_registers<Shape::kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  // Both warpgroups' scores cover all 64 keys; their accumulators, columns consumer * kCols ..
  const int warp_key0 = n0 + warp * 16;
  const int part = consumer * kPart;
  const uint32_t col_chunks = (consumer * kCols / 64) * kRows * 128;
  float dk[kCols / 8][4] = {};
  float dv[kCols / 8][4] = {};
  if (steps > 0) {
    mbarrier_wait(sm.resident_full, 0);
    sm.zero_resident_tails(static_cast<int>(seq.k_len) - n0, consumer);
  }
  const uint32_t k_rows = shared_address(sm.resident[0]);
  const uint32_t v_rows = shared_address(sm.resident[1]);
  // step % blocks, kept as a counter (no division on the consumers' path).
  int row_block = -1;
  for (int step = 0; step < steps; ++step) {
    const int s = step % Shape::kStages;
    if (++row_block == plan.blocks) row_block = 0;
    const int m0 = (plan.first_block + row_block) * kRows;
    const uint32_t q_stage = shared_address(sm.streamed[0] + s * kRows * kHeadDim);
    const uint32_t dout_stage = shared_address(sm.streamed[1] + s * kRows * kHeadDim);
    // C row = key (warp_key0 + g, + 8), C column = query row m0 + part + 8n + 2t (+ 1).
    float st[kPart / 8][4];
    float dpt[kPart / 8][4];
    mbarrier_wait(&sm.full[s], (step / Shape::kStages) & 1);
    sm.zero_streamed_tails(s, static_cast<int>(seq.q_len) - m0, consumer);
    two_products<T, kHeadDim, kKeys, kRows, kPart>(st, k_rows, q_stage + part * 128, dpt, v_rows,
                                                   dout_stage + part * 128);
    sm80::transposed_probs_to_ds<kPart>(st, dpt, sm.lse + s * kRows + part,
                                        sm.delta + s * kRows + part, mask, m0 + part, warp_key0,
                                        lane, p.scale_log2);
    uint32_t pa[kPart / 16][4];
    uint32_t dsa[kPart / 16][4];
    a_fragments<T, kPart>(pa, st);
    a_fragments<T, kPart>(dsa, dpt);
    // Keys x query rows: the A operands of dV and dK.
    const uint32_t pt_tile = exchange_tile(sm, step, 0);
    const uint32_t dst_tile = exchange_tile(sm, step, 1);
    store_a_fragments<kKeys>(pt_tile, pa, warp * 16, part, lane);
    store_a_fragments<kKeys>(dst_tile, dsa, warp * 16, part, lane);
    fence_async_shared();
    // Both halves written. The other buffer, written next step, was last read by the products
    // of the step before this one, which both warpgroups waited for before this barrier.
    named_barrier_sync(kExchangeBarrier, 128 * Shape::kConsumers);
    accumulate_two<T, kRows, kCols, kRows>(dv, pt_tile, dout_stage + col_chunks, dk, dst_tile,
                                           q_stage + col_chunks);
    if (lane == 0) mbarrier_arrive(&sm.empty[s]);
  }

  if (warp_key0 >= seq.k_len) return;
  const int64_t pitch = static_cast<int64_t>(p.heads_k) * kHeadDim;
  const int64_t first = sm80::k_like_row(p, seq, warp_key0, hk, kHeadDim) + consumer * kCols;
  const float dk_scale[2] = {p.softmax_scale, p.softmax_scale};
  const float dv_scale[2] = {1.0f, 1.0f};
  sm80::store_c_tiles<T, kCols>(static_cast<T*>(p.dk) + first, pitch, seq.k_len - warp_key0, dk,
                                dk_scale, lane);
  sm80::store_c_tiles<T, kCols>(static_cast<T*>(p.dv) + first, pitch, seq.k_len - warp_key0, dv,
                                dv_scale, lane);
#endif
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(WideBwdShape<kHeadDim>::kThreads, 1)
    bwd_dq_wide_kernel(const __grid_constant__ BwdParams bp) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Compiled for another architecture: never launched there.
#else
  using Shape = WideBwdShape<kHeadDim>;
  constexpr int kRows = Shape::kResident;
  constexpr int kKeys = Shape::kStreamed;
  constexpr int kPart = Shape::kPart;
  constexpr int kCols = Shape::kCols;
  const Params& p = bp.base;
  extern __shared__ unsigned char smem_raw[];
  BwdSmem<T, Shape, true> sm(smem_raw);

  const GridBlock tile = heaviest_first_block<true>();
  const sm80::QueryBlock block =
      sm80::query_block<kRows, kKeys>(p, tile.tile, tile.head, tile.sequence);
  const sm80::Sequence& seq = block.seq;
  // Launched to overlap the dk/dv kernel: one thread of each block waits for that grid, so
  // that this grid completes after it.
  if (block.m0 >= seq.q_len) {
    if (threadIdx.x == 0) wait_for_previous_grid();
    return;
  }
  const int first_tile = block.first_tile;
  const int steps = block.end_tile - first_tile;

  if (threadIdx.x == 0) sm.init_barriers();
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    release_registers<Shape::kProducerRegisters>();
    produce_query_block(bp, sm, block, steps);
    return;
  }
  claim_registers<Shape::kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  // Both warpgroups' scores cover all 64 rows; their dQ, columns consumer * kCols ..
  const int warp_row0 = block.m0 + warp * 16;
  const int part = consumer * kPart;
  const uint32_t col_chunks = (consumer * kCols / 64) * kKeys * 128;
  float row_lse[2];
  float row_delta[2];
  sm80::load_row_stats(p, seq, warp_row0, block.h, lane, row_lse, row_delta);

  float dq[kCols / 8][4] = {};
  if (steps > 0) {
    mbarrier_wait(sm.resident_full, 0);
    sm.zero_resident_tails(static_cast<int>(seq.q_len) - block.m0, consumer);
  }
  const uint32_t q_rows = shared_address(sm.resident[0]);
  const uint32_t dout_rows = shared_address(sm.resident[1]);
  for (int step = 0; step < steps; ++step) {
    const int s = step % Shape::kStages;
    const int j0 = (first_tile + step) * kKeys;
    const uint32_t k_stage = shared_address(sm.streamed[0] + s * kKeys * kHeadDim);
    const uint32_t v_stage = shared_address(sm.streamed[1] + s * kKeys * kHeadDim);
    // C row = query (warp_row0 + g, + 8), C column = key j0 + part + 8n + 2t (+ 1).
    float sc[kPart / 8][4];
    float dp[kPart / 8][4];
    mbarrier_wait(&sm.full[s], (step / Shape::kStages) & 1);
    sm.zero_streamed_tails(s, static_cast<int>(seq.k_len) - j0, consumer);
    two_products<T, kHeadDim, kRows, kKeys, kPart>(sc, q_rows, k_stage + part * 128, dp,
                                                   dout_rows, v_stage + part * 128);
    sm80::scores_to_ds<kPart>(sc, dp, block.mask, warp_row0, j0 + part, lane, p.scale_log2,
                              row_lse, row_delta);
    uint32_t dsa[kPart / 16][4];
    a_fragments<T, kPart>(dsa, sc);
    // Query rows x keys: the A operand of dQ.
    const uint32_t ds_tile = exchange_tile(sm, step, 0);
    store_a_fragments<kRows>(ds_tile, dsa, warp * 16, part, lane);
    fence_async_shared();
    named_barrier_sync(kExchangeBarrier, 128 * Shape::kConsumers);
    fence_registers(dq);
    wgmma_fence();
    issue_ss_b_nmajor<T, kKeys, kCols, kRows, kKeys>(dq, ds_tile, k_stage + col_chunks, true);
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dq);
    if (lane == 0) mbarrier_arrive(&sm.empty[s]);
  }

  if (warp_row0 >= seq.q_len) return;
  const float dq_scale[2] = {p.softmax_scale, p.softmax_scale};
  T* first = static_cast<T*>(p.dq) +
             sm80::q_like_row(p, seq, warp_row0, block.h, kHeadDim) + consumer * kCols;
  sm80::store_c_tiles<T, kCols>(first, static_cast<int64_t>(p.heads_q) * kHeadDim,
                                seq.q_len - warp_row0, dq, dq_scale, lane);
#endif
}

}  // namespace tk::flash_attn::sm90
