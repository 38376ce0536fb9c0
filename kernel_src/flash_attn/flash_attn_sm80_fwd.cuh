// The sm_80 FlashAttention forward (FlashAttention-2): one block per (64 query rows, query
// head, sequence), 4 warps of 16 rows. The block's Q tile stays in shared memory; K and V tiles
// stream through two cp.async stages, so the copy of tile t + 1 overlaps the math of tile t.
// Per tile a warp computes S = Q K^T (fp32), the online softmax in the log2 domain
// (exp2_ftz), and O += P V with P rounded to the input type. Key tiles that no row of the block
// may see are never loaded. Framework-free: CUDA headers only.
#pragma once

#include "flash_attn/flash_attn_sm80.cuh"

namespace tk::flash_attn::sm80 {

template <int kHeadDim>
struct FwdShape {
  static constexpr int kRows = 16 * kWarps;
  // Head dims above 128 take 32-key tiles: the O accumulator already holds head_dim / 2 fp32
  // registers per thread, and shared memory (Q + 2 stages of K and V) stays at 75 KiB for 192
  // and 101 KiB for 256 (ptxas: 168 and 254 registers on sm_90, no spills).
  static constexpr int kKeys = kHeadDim <= 128 ? 64 : 32;
  static constexpr int kStride = kSmemStride<kHeadDim>;
  static constexpr int kSmemBytes = (kRows + 4 * kKeys) * kStride * 2;
};

// Online softmax over one tile of log2-domain scores s (C rows g and g + 8 of the warp): the
// running max and (per-thread partial) sum are updated, O rescaled, and s replaced by
// p = exp2(s - max).
template <int kKeys, int kHeadDim>
__device__ __forceinline__ void online_softmax(float (&s)[kKeys / 8][4],
                                               float (&o)[kHeadDim / 8][4], float (&row_max)[2],
                                               float (&row_sum)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      tile_max = fmaxf(tile_max, fmaxf(s[n][2 * half], s[n][2 * half + 1]));
    }
    const float new_max = fmaxf(row_max[half], quad_max(tile_max));
    // -inf while every key seen so far is masked for the row: subtract 0 instead, so that the
    // masked scores give exp2(-inf) = 0 rather than NaN.
    const float base = new_max == -INFINITY ? 0.0f : new_max;
    const float rescale = exp2_ftz(row_max[half] - base);
    row_max[half] = new_max;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      s[n][2 * half] = exp2_ftz(s[n][2 * half] - base);
      s[n][2 * half + 1] = exp2_ftz(s[n][2 * half + 1] - base);
      sum += s[n][2 * half] + s[n][2 * half + 1];
    }
    row_sum[half] = row_sum[half] * rescale + sum;
#pragma unroll
    for (int d = 0; d < kHeadDim / 8; ++d) {
      o[d][2 * half] *= rescale;
      o[d][2 * half + 1] *= rescale;
    }
  }
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const Params p) {
  using Shape = FwdShape<kHeadDim>;
  constexpr int kRows = Shape::kRows;
  constexpr int kKeys = Shape::kKeys;
  constexpr int kStride = Shape::kStride;
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_tile = reinterpret_cast<T*>(smem);
  T* k_tiles = q_tile + kRows * kStride;  // [2][kKeys][kStride]
  T* v_tiles = k_tiles + 2 * kKeys * kStride;

  const QueryBlock block = query_block<kRows, kKeys>(p);
  const Sequence& seq = block.seq;
  const Mask& mask = block.mask;
  const int m0 = block.m0;
  const int h = block.h;
  const int first_tile = block.first_tile;
  const int end_tile = block.end_tile;
  if (m0 >= seq.q_len) return;

  const T* q = static_cast<const T*>(p.q);
  const auto load_kv = kv_tile_loader<kKeys, kHeadDim>(p, seq, block.hk, k_tiles, v_tiles);

  load_tile_async<kRows, kHeadDim>(
      q_tile, q + strided_row(seq, p.q_batch, p.q_row, p.q_head, seq.q_start, m0, h), p.q_row,
      seq.q_len - m0, q);
  if (first_tile < end_tile) load_kv(first_tile, 0);
  cp_async_commit();

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int warp_row0 = m0 + warp * 16;
  float o[kHeadDim / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  for (int tile = first_tile; tile < end_tile; ++tile) {
    const int stage = (tile - first_tile) & 1;
    if (tile + 1 < end_tile) load_kv(tile + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const int j0 = tile * kKeys;
    float s[kKeys / 8][4] = {};
    mma_a_bt<T, kHeadDim, kKeys, kStride>(s, q_tile + warp * 16 * kStride,
                                          k_tiles + stage * kKeys * kStride, lane);
    scale_and_mask_rows<kKeys>(s, p.scale_log2, mask, warp_row0 + lane / 4, j0 + 2 * (lane % 4),
                               !mask.all_allowed(warp_row0, 16, j0, kKeys));
    online_softmax<kKeys, kHeadDim>(s, o, row_max, row_sum);
    mma_p_b<T, kKeys, kHeadDim, kStride>(o, s, v_tiles + stage * kKeys * kStride, lane);
    // The next iteration's copy overwrites this stage.
    __syncthreads();
  }
  cp_async_wait<0>();

  // A row with no allowed key has sum 0: out 0, lse -inf.
  float inverse[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float sum = quad_sum(row_sum[half]);
    inverse[half] = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int i = warp_row0 + lane / 4 + 8 * half;
    if (lane % 4 == 0 && i < seq.q_len) {
      p.lse[lse_index(p, seq, i, h)] =
          sum > 0.0f ? (row_max[half] + log2f(sum)) * kLn2 : -INFINITY;
    }
  }
  T* out = static_cast<T*>(p.out) + q_like_row(p, seq, warp_row0, h, kHeadDim);
  store_c_tiles<T, kHeadDim>(out, static_cast<int64_t>(p.heads_q) * kHeadDim,
                             seq.q_len - warp_row0, o, inverse, lane);
}

}  // namespace tk::flash_attn::sm80
