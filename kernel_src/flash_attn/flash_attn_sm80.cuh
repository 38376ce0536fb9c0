// The pieces every sm_80 FlashAttention kernel shares: which rows a block works on (batched or
// varlen), the mask, the cp.async tile loads, and the two warp-level matrix products.
// Framework-free: CUDA headers only.
//
// Shared-memory tiles are row-major [rows][head_dim + 8]: the 16 bytes of padding make the row
// pitch an odd number of 16-byte units for every supported head dim, so the 8 row addresses of
// one ldmatrix matrix fall in 8 different 4-bank groups (no bank conflicts).
//
// Every block has 4 warps. A warp owns 16 rows of each product (one mma row tile): the query
// rows of the forward and dq kernels, the key rows of the dk/dv kernel.
#pragma once

#include <cmath>
#include <cstdint>

#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_params.h"
#include "flash_attn/flash_attn_sm80_ptx.cuh"

namespace tk::flash_attn::sm80 {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = kWarps * 32;
inline constexpr float kLn2 = 0.6931471805599453f;

template <int kHeadDim>
inline constexpr int kSmemStride = kHeadDim + 8;

// One sequence of the batch: where its rows start and how many there are.
struct Sequence {
  int64_t batch;    // index into the batch dimension (0 in varlen)
  int64_t q_start;  // first row in the row dimension (0 when batched)
  int64_t k_start;
  int q_len;
  int k_len;
};

__device__ __forceinline__ Sequence sequence_of(const Params& p, int b) {
  if (p.cu_seqlens_q == nullptr) return {b, 0, 0, p.seqlen_q, p.seqlen_k};
  const int q0 = p.cu_seqlens_q[b];
  const int k0 = p.cu_seqlens_k[b];
  return {0, q0, k0, p.cu_seqlens_q[b + 1] - q0, p.cu_seqlens_k[b + 1] - k0};
}

// Key j is allowed for query i (both within the sequence) iff lo <= j - i <= hi, with
// lo = k_len - q_len - window_left and hi = k_len - q_len + window_right (flash_attn.h).
struct Mask {
  int lo;
  int hi;
  int q_len;
  int k_len;

  __device__ __forceinline__ bool allowed(int i, int j) const {
    const int d = j - i;
    return i < q_len && j < k_len && d >= lo && d <= hi;
  }
  // Every (i, j) of rows [i0, i0 + rows) x keys [j0, j0 + keys) is allowed.
  __device__ __forceinline__ bool all_allowed(int i0, int rows, int j0, int keys) const {
    return i0 + rows <= q_len && j0 + keys <= k_len &&
           static_cast<int64_t>(j0) - (i0 + rows - 1) >= lo &&
           static_cast<int64_t>(j0) + keys - 1 - i0 <= hi;
  }
  // Keys [begin, end) that some row of [i0, i1) may see (i0 < i1 <= q_len); empty when
  // end <= begin. In int64: i1 + hi can pass 2^31 when the window is unbounded.
  __device__ __forceinline__ int key_begin(int i0) const {
    const int64_t j = static_cast<int64_t>(i0) + lo;
    return j < 0 ? 0 : static_cast<int>(j);
  }
  __device__ __forceinline__ int key_end(int i1) const {
    const int64_t j = static_cast<int64_t>(i1) + hi;
    return j > k_len ? k_len : static_cast<int>(j);
  }
  // Rows [begin, end) that see some key of [j0, j1) (j0 < j1 <= k_len).
  __device__ __forceinline__ int query_begin(int j0) const {
    const int64_t i = static_cast<int64_t>(j0) - hi;
    return i < 0 ? 0 : static_cast<int>(i);
  }
  __device__ __forceinline__ int query_end(int j1) const {
    const int64_t i = static_cast<int64_t>(j1) - lo;
    return i > q_len ? q_len : static_cast<int>(i);
  }
};

__device__ __forceinline__ Mask mask_of(const Params& p, const Sequence& s) {
  const int diag = s.k_len - s.q_len;
  return {diag - p.window_left, diag + p.window_right, s.q_len, s.k_len};
}

// Element offsets of row i, head h.
__device__ __forceinline__ int64_t strided_row(const Sequence& s, int64_t batch_stride,
                                               int64_t row_stride, int64_t head_stride,
                                               int64_t start, int i, int h) {
  return s.batch * batch_stride + (start + i) * row_stride + h * head_stride;
}

// out / dq: contiguous [.., rows, heads_q, head_dim].
__device__ __forceinline__ int64_t q_like_row(const Params& p, const Sequence& s, int i, int h,
                                              int head_dim) {
  return ((s.batch * p.seqlen_q + s.q_start + i) * p.heads_q + h) * head_dim;
}

// dk / dv: contiguous [.., rows, heads_k, head_dim].
__device__ __forceinline__ int64_t k_like_row(const Params& p, const Sequence& s, int j, int h,
                                              int head_dim) {
  return ((s.batch * p.seqlen_k + s.k_start + j) * p.heads_k + h) * head_dim;
}

// lse / delta: [batch, heads_q, seqlen_q] or [heads_q, total_q].
__device__ __forceinline__ int64_t lse_index(const Params& p, const Sequence& s, int i, int h) {
  return (s.batch * p.heads_q + h) * p.seqlen_q + s.q_start + i;
}

// Starts the copy of rows [0, kRows) of a tile into shared memory (row r from
// first + r * row_stride); rows at or past `valid_rows` are zero-filled. `fallback` is any
// mapped address of the tensor. All threads of the block take part.
template <int kRows, int kHeadDim, typename T>
__device__ __forceinline__ void load_tile_async(T* tile, const T* first, int64_t row_stride,
                                                int valid_rows, const T* fallback) {
  constexpr int kChunks = kHeadDim / 8;
  static_assert((kRows * kChunks) % kThreads == 0, "whole passes of the block");
#pragma unroll
  for (int pass = 0; pass < kRows * kChunks / kThreads; ++pass) {
    const int c = pass * kThreads + threadIdx.x;
    const int r = c / kChunks;
    const int col = (c % kChunks) * 8;
    const bool valid = r < valid_rows;
    cp_async_16(tile + r * kSmemStride<kHeadDim> + col,
                valid ? first + r * row_stride + col : fallback, valid);
  }
}

// The query-row block of the forward and dq kernels: blockIdx = (row tile, query head,
// sequence). Its key tiles [first_tile, end_tile) are the ones some of its rows may see.
struct QueryBlock {
  Sequence seq;
  Mask mask;
  int m0;  // first query row
  int h;   // query head
  int hk;  // the key/value head it reads
  int first_tile;
  int end_tile;
};

// Row tile, query head and sequence default to the block's (x, y, z) of a one-block-per-tile grid.
template <int kRows, int kKeys>
__device__ __forceinline__ QueryBlock query_block(const Params& p, int row_tile = blockIdx.x,
                                                  int head = blockIdx.y,
                                                  int sequence = blockIdx.z) {
  QueryBlock b;
  b.seq = sequence_of(p, sequence);
  b.mask = mask_of(p, b.seq);
  b.m0 = row_tile * kRows;
  b.h = head;
  b.hk = b.h / p.group;
  b.first_tile = 0;
  b.end_tile = 0;
  if (b.m0 >= b.seq.q_len) return b;
  const int key_begin = b.mask.key_begin(b.m0);
  const int key_end = b.mask.key_end(min(b.m0 + kRows, b.seq.q_len));
  b.first_tile = key_begin / kKeys;
  b.end_tile = key_end > key_begin ? (key_end + kKeys - 1) / kKeys : b.first_tile;
  return b;
}

// Starts the copy of key tile `tile` of head hk (k and v, kKeys rows each) into stage `stage`
// of the double-buffered k_tiles / v_tiles ([2][kKeys][kStride] each).
template <int kKeys, int kHeadDim, typename T>
struct KvTileLoader {
  T* k_tiles;
  T* v_tiles;
  const T* k;       // the tensors (a mapped address for zero-filled rows)
  const T* v;
  const T* k_head;  // row 0 of the sequence, head hk
  const T* v_head;
  int64_t k_row;
  int64_t v_row;
  int k_len;

  __device__ __forceinline__ void operator()(int tile, int stage) const {
    constexpr int kStride = kSmemStride<kHeadDim>;
    const int j0 = tile * kKeys;
    load_tile_async<kKeys, kHeadDim>(k_tiles + stage * kKeys * kStride, k_head + j0 * k_row,
                                     k_row, k_len - j0, k);
    load_tile_async<kKeys, kHeadDim>(v_tiles + stage * kKeys * kStride, v_head + j0 * v_row,
                                     v_row, k_len - j0, v);
  }
};

template <int kKeys, int kHeadDim, typename T>
__device__ __forceinline__ KvTileLoader<kKeys, kHeadDim, T> kv_tile_loader(
    const Params& p, const Sequence& seq, int hk, T* k_tiles, T* v_tiles) {
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  return {k_tiles,
          v_tiles,
          k,
          v,
          k + strided_row(seq, p.k_batch, p.k_row, p.k_head, seq.k_start, 0, hk),
          v + strided_row(seq, p.v_batch, p.v_row, p.v_head, seq.k_start, 0, hk),
          p.k_row,
          p.v_row,
          seq.k_len};
}

// acc[n][.] += A * B^T for one warp: A is 16 rows of a tile, B kCols rows of a tile, both
// row-major with kDepth columns in shared memory (pitch kStride). acc holds kCols / 8 C tiles.
template <typename T, int kDepth, int kCols, int kStride>
__device__ __forceinline__ void mma_a_bt(float (&acc)[kCols / 8][4], const T* a, const T* b,
                                         int lane) {
  const int r = lane % 8;
  const int m = lane / 8;
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    uint32_t af[4];
    ldmatrix_x4(af, a + (r + (m & 1) * 8) * kStride + kk * 16 + (m >> 1) * 8);
#pragma unroll
    for (int nn = 0; nn < kCols / 16; ++nn) {
      uint32_t bf[4];
      ldmatrix_x4(bf, b + (nn * 16 + r + (m >> 1) * 8) * kStride + kk * 16 + (m & 1) * 8);
      mma_16816<T>(acc[2 * nn], af, bf[0], bf[1]);
      mma_16816<T>(acc[2 * nn + 1], af, bf[2], bf[3]);
    }
  }
}

// acc[n][.] += P * B for one warp: P (16 x kDepth) is given as the fp32 C tiles of an earlier
// product (rounded to T here), B is kDepth rows x kCols columns of a row-major tile in shared
// memory (pitch kStride). A C tile pair (2kk, 2kk+1) is exactly the A fragment of k-step kk.
template <typename T, int kDepth, int kCols, int kStride>
__device__ __forceinline__ void mma_p_b(float (&acc)[kCols / 8][4],
                                        const float (&p)[kDepth / 8][4], const T* b, int lane) {
  const int r = lane % 8;
  const int m = lane / 8;
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    const uint32_t af[4] = {pack2<T>(p[2 * kk][0], p[2 * kk][1]),
                            pack2<T>(p[2 * kk][2], p[2 * kk][3]),
                            pack2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                            pack2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int nn = 0; nn < kCols / 16; ++nn) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, b + (kk * 16 + r + (m & 1) * 8) * kStride + nn * 16 + (m >> 1) * 8);
      mma_16816<T>(acc[2 * nn], af, bf[0], bf[1]);
      mma_16816<T>(acc[2 * nn + 1], af, bf[2], bf[3]);
    }
  }
}

// Max and sum over the 4 lanes of a quad (the lanes that hold one C row).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Stores one warp's 16 x kCols fp32 C tiles as T: C row r (g, then g + 8) times scale[r / 8]
// goes to first_row + r * pitch of a contiguous tensor; rows at or past `valid_rows` are skipped.
template <typename T, int kCols>
__device__ __forceinline__ void store_c_tiles(T* first_row, int64_t pitch, int valid_rows,
                                              const float (&acc)[kCols / 8][4],
                                              const float (&scale)[2], int lane) {
  const int g = lane / 4;
  const int t = lane % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = g + 8 * half;
    if (r >= valid_rows) continue;
    T* row = first_row + r * pitch;
#pragma unroll
    for (int n = 0; n < kCols / 8; ++n) {
      *reinterpret_cast<uint32_t*>(row + n * 8 + 2 * t) =
          pack2<T>(acc[n][2 * half] * scale[half], acc[n][2 * half + 1] * scale[half]);
    }
  }
}

// Scores of one warp's 16 query rows (C rows row0, row0 + 8) against keys col0 + 8n + {0, 1}:
// times scale_log2 (the log2 domain of exp2), then -inf where the mask forbids the pair (when
// `check`; a tile the mask allows entirely skips the per-element test).
template <int kCols>
__device__ __forceinline__ void scale_and_mask_rows(float (&s)[kCols / 8][4], float scale_log2,
                                                    const Mask& mask, int row0, int col0,
                                                    bool check) {
#pragma unroll
  for (int n = 0; n < kCols / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[n][e] *= scale_log2;
      if (check && !mask.allowed(row0 + 8 * (e / 2), col0 + 8 * n + (e & 1))) s[n][e] = -INFINITY;
    }
  }
}

}  // namespace tk::flash_attn::sm80
