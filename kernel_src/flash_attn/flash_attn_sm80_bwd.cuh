// The sm_80 FlashAttention backward, deterministic by construction (no atomics): three kernels
// on the caller's stream.
//   1. delta[i] = dot(dout[i], out[i]), one warp per row (which also zeroes the row in
//      dq_accum when there is one: the sm_90a backward's dQ sum; padding rows stay unwritten).
//   2. dk, dv: one block per (key block, key head, sequence). Each warp owns 16 keys (and, for
//      head dims above 128, half of the head dim of dk and dv, to keep the accumulators in
//      registers). The block walks the group's query heads and then the query blocks that see
//      its keys, in a fixed order, with Q, dout, lse and delta double-buffered by cp.async.
//      Per step a warp computes S^T = K Q^T and dP^T = V dout^T for its keys, P^T from lse and
//      dS^T = P^T (dP^T - delta), then dV += P^T dout and dK += dS^T Q, all from registers.
//   3. dq: one block per (64 query rows, query head, sequence), like the forward: per key tile
//      S = Q K^T, dP = dout V^T, dS = P (dP - delta), dQ += dS K.
// Probabilities are recomputed from lse; masked pairs and rows without keys give exactly 0.
// Framework-free: CUDA headers only.
#pragma once

#include <type_traits>

#include "_common/reduce.cuh"
#include "_common/vec.cuh"
#include "flash_attn/flash_attn_sm80.cuh"

namespace tk::flash_attn::sm80 {

inline constexpr int kDeltaRowsPerBlock = 16;

// Where row i (of sequence b) of query head h starts in half `half` of its dq_accum tile
// (flash_attn_sm80_params.h): head_dim / 2 floats, pairs in the sm_90a kernel's order.
__device__ __forceinline__ int64_t dq_accum_row(const Params& p, const Sequence& seq, int b, int i,
                                                int h, int half, int head_dim) {
  const int64_t block =
      dq_accum_first_block(p.cu_seqlens_q != nullptr, p.seqlen_q, b, seq.q_start) +
      i / kDqAccumRows;
  return (((block * p.heads_q + h) * 2 + half) * kDqAccumRows + i % kDqAccumRows) * (head_dim / 2);
}

template <int kHeadDim>
struct DkDvShape {
  // Head dims above 128 split dk and dv over two warps per 16 keys: whole, the two
  // accumulators alone would take head_dim fp32 registers per thread (of the 255 a thread can
  // have); split, S^T and dP^T are computed by both warps of a pair.
  static constexpr int kSplit = kHeadDim > 128 ? 2 : 1;
  static constexpr int kKeys = 16 * kWarps / kSplit;
  static constexpr int kCols = kHeadDim / kSplit;   // dk / dv columns of one warp
  static constexpr int kRows = kHeadDim >= 128 ? 32 : 64;  // query rows per step
  static constexpr int kStride = kSmemStride<kHeadDim>;
  static constexpr int kSmemBytes =
      (2 * kKeys + 4 * kRows) * kStride * 2 + 4 * kRows * static_cast<int>(sizeof(float));
};

template <int kHeadDim>
struct DqShape {
  static constexpr int kRows = 16 * kWarps;
  static constexpr int kKeys = kHeadDim <= 128 ? 64 : 32;
  static constexpr int kStride = kSmemStride<kHeadDim>;
  static constexpr int kSmemBytes = (2 * kRows + 4 * kKeys) * kStride * 2;
};

// lse in the log2 domain of exp2. A row without keys (lse -inf) is masked everywhere; +inf
// makes its probabilities 0 even so.
__device__ __forceinline__ float lse_log2(float lse) {
  return lse == -INFINITY ? INFINITY : lse * kLog2e;
}

// lse (log2 domain) and delta of query row i of head h; a row past the sequence gets +inf and
// 0, so its probabilities and dS are 0.
__device__ __forceinline__ void row_stats(const Params& p, const Sequence& seq, int i, int h,
                                          float& lse, float& delta) {
  const bool inside = i < seq.q_len;
  const int64_t index = lse_index(p, seq, inside ? i : 0, h);
  lse = inside ? lse_log2(p.lse[index]) : INFINITY;
  delta = inside ? p.delta[index] : 0.0f;
}

// row_stats of this thread's two rows of a warp's 16 (row0 + g, + 8).
__device__ __forceinline__ void load_row_stats(const Params& p, const Sequence& seq, int row0,
                                               int h, int lane, float (&row_lse)[2],
                                               float (&row_delta)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_stats(p, seq, row0 + lane / 4 + 8 * half, h, row_lse[half], row_delta[half]);
  }
}

// The backward's probability of query i and key j from the unscaled score s:
// 2^(s * scale_log2 - lse) (lse in the log2 domain), or 0 where the mask forbids the pair. Tiles
// test Mask::all_allowed once and call kMasked = false where it holds (with_mask_test): no
// mask test and no branch per score there. A per-score `allowed ? exp2 : 0` compiled to a
// branch and a convergence barrier around every exponential (sm_90a hd-128 backward SASS).
template <bool kMasked>
__device__ __forceinline__ float probability(float s, float scale_log2, float lse,
                                             const Mask& mask, int i, int j) {
  const float prob = exp2_ftz(s * scale_log2 - lse);
  if constexpr (kMasked) return mask.allowed(i, j) ? prob : 0.0f;
  return prob;
}

// Runs body(std::true_type) where the tile needs the mask test, body(std::false_type) where not.
template <class Body>
__device__ __forceinline__ void with_mask_test(bool needs_test, Body&& body) {
  if (needs_test) {
    body(std::true_type{});
  } else {
    body(std::false_type{});
  }
}

// dS = P (dP - delta) in place of one warp's tile of unscaled scores s (C tiles: rows row0 + g
// (+ 8), keys j0 + 8n + 2t (+ 1)), P recomputed from lse and 0 where the mask forbids.
template <int kKeys>
__device__ __forceinline__ void scores_to_ds(float (&s)[kKeys / 8][4],
                                             const float (&dp)[kKeys / 8][4], const Mask& mask,
                                             int row0, int j0, int lane, float scale_log2,
                                             const float (&row_lse)[2],
                                             const float (&row_delta)[2]) {
  with_mask_test(!mask.all_allowed(row0, 16, j0, kKeys), [&](auto masked) {
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = row0 + lane / 4 + 8 * (e / 2);
        const int j = j0 + n * 8 + 2 * (lane % 4) + (e & 1);
        const float prob = probability<decltype(masked)::value>(s[n][e], scale_log2,
                                                                 row_lse[e / 2], mask, i, j);
        s[n][e] = prob * (dp[n][e] - row_delta[e / 2]);
      }
    }
  });
}

// The dk/dv kernels' transposed tile of one warp (C row = key warp_key0 + g, + 8; C column =
// query row m0 + 8n + 2t, + 1), in place: st, the scores, becomes P^T, and dpt, dP^T, becomes
// dS^T = P^T (dP^T - delta). lse and delta hold the tile's kRows rows (row_stats; 8-byte
// aligned, read as pairs).
template <int kRows>
__device__ __forceinline__ void transposed_probs_to_ds(float (&st)[kRows / 8][4],
                                                       float (&dpt)[kRows / 8][4],
                                                       const float* lse, const float* delta,
                                                       const Mask& mask, int m0, int warp_key0,
                                                       int lane, float scale_log2) {
  with_mask_test(!mask.all_allowed(m0, kRows, warp_key0, 16), [&](auto masked) {
#pragma unroll
    for (int n = 0; n < kRows / 8; ++n) {
      const int r = n * 8 + 2 * (lane % 4);
      const float2 lse2 = *reinterpret_cast<const float2*>(lse + r);
      const float2 delta2 = *reinterpret_cast<const float2*>(delta + r);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = warp_key0 + lane / 4 + 8 * (e / 2);
        const float row_lse = (e & 1) ? lse2.y : lse2.x;
        const float row_delta = (e & 1) ? delta2.y : delta2.x;
        const float prob = probability<decltype(masked)::value>(st[n][e], scale_log2, row_lse,
                                                                 mask, m0 + r + (e & 1), j);
        st[n][e] = prob;
        dpt[n][e] = prob * (dpt[n][e] - row_delta);
      }
    }
  });
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) bwd_delta_kernel(const Params p) {
  static_assert(kHeadDim / 8 <= 32, "one 16-byte piece per lane");
  const Sequence seq = sequence_of(p, blockIdx.z);
  const int h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const T* out = static_cast<const T*>(p.out);
  const T* dout = static_cast<const T*>(p.dout);
  for (int r = threadIdx.x / 32; r < kDeltaRowsPerBlock; r += kWarps) {
    const int i = blockIdx.x * kDeltaRowsPerBlock + r;
    if (i >= seq.q_len) break;
    float sum = 0.0f;
    if (lane < kHeadDim / 8) {
      float o[8];
      float d[8];
      to_floats(*reinterpret_cast<const Vec<T, 8>*>(out + q_like_row(p, seq, i, h, kHeadDim) +
                                                    lane * 8),
                o);
      to_floats(*reinterpret_cast<const Vec<T, 8>*>(
                    dout + strided_row(seq, p.dout_batch, p.dout_row, p.dout_head, seq.q_start, i,
                                       h) +
                    lane * 8),
                d);
#pragma unroll
      for (int e = 0; e < 8; ++e) sum += o[e] * d[e];
    }
    sum = warp_sum(sum);
    if (lane == 0) p.delta[lse_index(p, seq, i, h)] = sum;
    if (p.dq_accum != nullptr && lane < kHeadDim / 8) {
      constexpr int kHalfPieces = kHeadDim / 16;
      *reinterpret_cast<Vec<float, 8>*>(
          p.dq_accum + dq_accum_row(p, seq, blockIdx.z, i, h, lane / kHalfPieces, kHeadDim) +
          lane % kHalfPieces * 8) = zeros<float, 8>();
    }
  }
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) bwd_dk_dv_kernel(const Params p) {
  using Shape = DkDvShape<kHeadDim>;
  constexpr int kKeys = Shape::kKeys;
  constexpr int kRows = Shape::kRows;
  constexpr int kCols = Shape::kCols;
  constexpr int kStride = Shape::kStride;
  extern __shared__ __align__(16) unsigned char smem[];
  T* k_tile = reinterpret_cast<T*>(smem);
  T* v_tile = k_tile + kKeys * kStride;
  T* q_tiles = v_tile + kKeys * kStride;             // [2][kRows][kStride]
  T* dout_tiles = q_tiles + 2 * kRows * kStride;     // [2][kRows][kStride]
  float* lse_tiles = reinterpret_cast<float*>(dout_tiles + 2 * kRows * kStride);  // [2][kRows]
  float* delta_tiles = lse_tiles + 2 * kRows;                                      // [2][kRows]

  const Sequence seq = sequence_of(p, blockIdx.z);
  const int n0 = blockIdx.x * kKeys;
  if (n0 >= seq.k_len) return;
  const int hk = blockIdx.y;
  const Mask mask = mask_of(p, seq);
  const int row_begin = mask.query_begin(n0);
  const int row_end = mask.query_end(min(n0 + kKeys, seq.k_len));
  const int first_block = row_begin / kRows;
  const int blocks = row_end > row_begin ? (row_end + kRows - 1) / kRows - first_block : 0;
  const int steps = blocks * p.group;

  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* dout = static_cast<const T*>(p.dout);
  // Step s: query head hk * group + s / blocks, query block first_block + s % blocks.
  const auto load_step = [&](int step, int stage) {
    const int h = hk * p.group + step / blocks;
    const int m0 = (first_block + step % blocks) * kRows;
    load_tile_async<kRows, kHeadDim>(
        q_tiles + stage * kRows * kStride,
        q + strided_row(seq, p.q_batch, p.q_row, p.q_head, seq.q_start, m0, h), p.q_row,
        seq.q_len - m0, q);
    load_tile_async<kRows, kHeadDim>(
        dout_tiles + stage * kRows * kStride,
        dout + strided_row(seq, p.dout_batch, p.dout_row, p.dout_head, seq.q_start, m0, h),
        p.dout_row, seq.q_len - m0, dout);
    if (threadIdx.x < kRows) {
      row_stats(p, seq, m0 + threadIdx.x, h, lse_tiles[stage * kRows + threadIdx.x],
                delta_tiles[stage * kRows + threadIdx.x]);
    }
  };

  load_tile_async<kKeys, kHeadDim>(
      k_tile, k + strided_row(seq, p.k_batch, p.k_row, p.k_head, seq.k_start, n0, hk), p.k_row,
      seq.k_len - n0, k);
  load_tile_async<kKeys, kHeadDim>(
      v_tile, v + strided_row(seq, p.v_batch, p.v_row, p.v_head, seq.k_start, n0, hk), p.v_row,
      seq.k_len - n0, v);
  if (steps > 0) load_step(0, 0);
  cp_async_commit();

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int key_warp = warp % (kWarps / Shape::kSplit);  // which 16 keys
  const int col_part = warp / (kWarps / Shape::kSplit);  // which columns of dk and dv
  const int warp_key0 = n0 + key_warp * 16;
  float dk[kCols / 8][4] = {};
  float dv[kCols / 8][4] = {};
  for (int step = 0; step < steps; ++step) {
    const int stage = step & 1;
    if (step + 1 < steps) load_step(step + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const int m0 = (first_block + step % blocks) * kRows;
    const T* q_s = q_tiles + stage * kRows * kStride;
    const T* dout_s = dout_tiles + stage * kRows * kStride;
    const float* lse_s = lse_tiles + stage * kRows;
    const float* delta_s = delta_tiles + stage * kRows;
    // C row = key (warp_key0 + g, + 8), C column = query row m0 + 8n + 2t (+ 1).
    float s[kRows / 8][4] = {};
    mma_a_bt<T, kHeadDim, kRows, kStride>(s, k_tile + key_warp * 16 * kStride, q_s, lane);
    float dp[kRows / 8][4] = {};
    mma_a_bt<T, kHeadDim, kRows, kStride>(dp, v_tile + key_warp * 16 * kStride, dout_s, lane);
    transposed_probs_to_ds<kRows>(s, dp, lse_s, delta_s, mask, m0, warp_key0, lane,
                                  p.scale_log2);
    mma_p_b<T, kRows, kCols, kStride>(dv, s, dout_s + col_part * kCols, lane);
    mma_p_b<T, kRows, kCols, kStride>(dk, dp, q_s + col_part * kCols, lane);
    // The next iteration's copy overwrites this stage.
    __syncthreads();
  }
  cp_async_wait<0>();

  const int64_t pitch = static_cast<int64_t>(p.heads_k) * kHeadDim;
  const int64_t first = k_like_row(p, seq, warp_key0, hk, kHeadDim) + col_part * kCols;
  const float dk_scale[2] = {p.softmax_scale, p.softmax_scale};
  const float dv_scale[2] = {1.0f, 1.0f};
  store_c_tiles<T, kCols>(static_cast<T*>(p.dk) + first, pitch, seq.k_len - warp_key0, dk,
                          dk_scale, lane);
  store_c_tiles<T, kCols>(static_cast<T*>(p.dv) + first, pitch, seq.k_len - warp_key0, dv,
                          dv_scale, lane);
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) bwd_dq_kernel(const Params p) {
  using Shape = DqShape<kHeadDim>;
  constexpr int kRows = Shape::kRows;
  constexpr int kKeys = Shape::kKeys;
  constexpr int kStride = Shape::kStride;
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_tile = reinterpret_cast<T*>(smem);
  T* dout_tile = q_tile + kRows * kStride;
  T* k_tiles = dout_tile + kRows * kStride;  // [2][kKeys][kStride]
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
  const T* dout = static_cast<const T*>(p.dout);
  const auto load_kv = kv_tile_loader<kKeys, kHeadDim>(p, seq, block.hk, k_tiles, v_tiles);

  load_tile_async<kRows, kHeadDim>(
      q_tile, q + strided_row(seq, p.q_batch, p.q_row, p.q_head, seq.q_start, m0, h), p.q_row,
      seq.q_len - m0, q);
  load_tile_async<kRows, kHeadDim>(
      dout_tile,
      dout + strided_row(seq, p.dout_batch, p.dout_row, p.dout_head, seq.q_start, m0, h),
      p.dout_row, seq.q_len - m0, dout);
  if (first_tile < end_tile) load_kv(first_tile, 0);
  cp_async_commit();

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int warp_row0 = m0 + warp * 16;
  float row_lse[2];
  float row_delta[2];
  load_row_stats(p, seq, warp_row0, h, lane, row_lse, row_delta);

  float dq[kHeadDim / 8][4] = {};
  for (int tile = first_tile; tile < end_tile; ++tile) {
    const int stage = (tile - first_tile) & 1;
    if (tile + 1 < end_tile) load_kv(tile + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const int j0 = tile * kKeys;
    const T* k_s = k_tiles + stage * kKeys * kStride;
    // C row = query (warp_row0 + g, + 8), C column = key j0 + 8n + 2t (+ 1).
    float s[kKeys / 8][4] = {};
    mma_a_bt<T, kHeadDim, kKeys, kStride>(s, q_tile + warp * 16 * kStride, k_s, lane);
    float dp[kKeys / 8][4] = {};
    mma_a_bt<T, kHeadDim, kKeys, kStride>(dp, dout_tile + warp * 16 * kStride,
                                          v_tiles + stage * kKeys * kStride, lane);
    scores_to_ds<kKeys>(s, dp, mask, warp_row0, j0, lane, p.scale_log2, row_lse, row_delta);
    mma_p_b<T, kKeys, kHeadDim, kStride>(dq, s, k_s, lane);
    // The next iteration's copy overwrites this stage.
    __syncthreads();
  }
  cp_async_wait<0>();

  const float dq_scale[2] = {p.softmax_scale, p.softmax_scale};
  T* first = static_cast<T*>(p.dq) + q_like_row(p, seq, warp_row0, h, kHeadDim);
  store_c_tiles<T, kHeadDim>(first, static_cast<int64_t>(p.heads_q) * kHeadDim,
                             seq.q_len - warp_row0, dq, dq_scale, lane);
}

}  // namespace tk::flash_attn::sm80
