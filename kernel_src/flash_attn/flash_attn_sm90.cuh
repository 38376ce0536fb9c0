// The pieces the sm_90a FlashAttention kernels share: the TMA tile copy, the per-element mask,
// and the conversion of an accumulator into wgmma A fragments. The sequence, mask and tile-range
// logic is the sm_80 kernels' (flash_attn_sm80.cuh). Framework-free: CUDA headers only.
#pragma once

#include <cuda.h>

#include "flash_attn/flash_attn_sm80.cuh"
#include "flash_attn/flash_attn_sm80_params.h"
#include "flash_attn/flash_attn_sm90_ptx.cuh"
#include "flash_attn/flash_attn_sm90_wgmma.cuh"

namespace tk::flash_attn::sm90 {

using sm80::Params;

// Named barriers kTailBarrier + consumer: the 128 threads of one consumer warpgroup
// (zero_tail_rows). The forward's turn-taking uses 1 .. 3.
inline constexpr int kTailBarrier = 4;

// A TMA box reads on past the end of a packed (varlen) sequence into the next sequence's rows.
// Masking their scores does not keep those rows out: their P or dS is 0, and 0 * inf is NaN.
// Zeroes rows first_row .. kBoxRows - 1 of a [kHeadDim / 64][kBoxRows][64] tile of 16-bit
// elements (whole 128-byte rows, so the swizzle inside a row does not matter) with the 128
// threads of consumer warpgroup `consumer`, all of which call it with the same first_row once
// the tile has landed, and makes the zeros visible to their later wgmma and ldmatrix reads.
// Warpgroups sharing the tile each zero it before reading it: they write the same zeros.
template <int kHeadDim, int kBoxRows, typename T>
__device__ __forceinline__ void zero_tail_rows(T* tile, int first_row, int consumer) {
  if (first_row >= kBoxRows) return;
  first_row = first_row > 0 ? first_row : 0;
  const int rows = kBoxRows - first_row;
  const int pieces = kHeadDim / kChunkElements * rows * 8;  // 16 bytes each
  for (int i = threadIdx.x % 128; i < pieces; i += 128) {
    const int chunk = i / (rows * 8);
    const int row = first_row + (i / 8) % rows;
    reinterpret_cast<uint4*>(tile + (chunk * kBoxRows + row) * kChunkElements)[i % 8] =
        make_uint4(0, 0, 0, 0);
  }
  fence_async_shared();
  named_barrier_sync(kTailBarrier + consumer, 128);
}

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

// Sets the scores of pairs the mask forbids to -inf (rows row0 + lane / 4 (+ 8), keys
// col0 + 8n + 2 (lane % 4) (+ 1)).
template <int kCols>
__device__ __forceinline__ void mask_rows(float (&s)[kCols / 8][4], const sm80::Mask& mask,
                                          int row0, int col0) {
#pragma unroll
  for (int n = 0; n < kCols / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!mask.allowed(row0 + 8 * (e / 2), col0 + 8 * n + (e & 1))) s[n][e] = -INFINITY;
    }
  }
}

// A product's fp32 C tiles (one warp's 16 rows: P, dS, or their transposes) rounded to T in the
// A-fragment order of wgmma with A in registers: k-step kk takes C tiles 2kk and 2kk + 1.
template <typename T, int kKeys>
__device__ __forceinline__ void a_fragments(uint32_t (&pa)[kKeys / 16][4],
                                            const float (&c)[kKeys / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    pa[kk][0] = sm80::pack2<T>(c[2 * kk][0], c[2 * kk][1]);
    pa[kk][1] = sm80::pack2<T>(c[2 * kk][2], c[2 * kk][3]);
    pa[kk][2] = sm80::pack2<T>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    pa[kk][3] = sm80::pack2<T>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
  }
}

// Keeps registers an in-flight wgmma reads (its A fragments) live until it has completed.
template <int kSteps>
__device__ __forceinline__ void fence_fragments(uint32_t (&pa)[kSteps][4]) {
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk) {
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(pa[kk][e])::"memory");
  }
}

// Descriptor of k-step kk (16 columns) of a K-major tile of kTileRows rows at shared address
// `rows`: chunk kk / 4 (64 columns, kTileRows x 128 bytes), 32 (kk % 4) bytes into its rows.
template <int kTileRows>
__device__ __forceinline__ uint64_t kmajor_step(uint32_t rows, int kk) {
  return smem_descriptor(rows + (kk / 4) * kTileRows * 128 + (kk % 4) * 32, 0);
}

// acc = A B^T for one warpgroup (both K-major in shared memory, kDepth columns): A is 64 rows of
// a tile of kARows rows starting at shared address `a_rows`, B the first kBCols rows (all by
// default) of a tile of kBRows rows.
template <typename T, int kDepth, int kARows, int kBRows, int kBCols = kBRows>
__device__ __forceinline__ void issue_a_bt(float (&acc)[kBCols / 8][4], uint32_t a_rows,
                                           uint32_t b_tile) {
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    wgmma_ss<T>(acc, kmajor_step<kARows>(a_rows, kk), kmajor_step<kBRows>(b_tile, kk), kk > 0);
  }
}

// acc += A B for one warpgroup: A (64 x kDepth) as register fragments, B the first kDepth rows
// (kCols columns, N-major) of a tile of kBRows rows at shared address `b_tile`.
template <typename T, int kDepth, int kCols, int kBRows>
__device__ __forceinline__ void issue_p_b(float (&acc)[kCols / 8][4],
                                          const uint32_t (&a)[kDepth / 16][4], uint32_t b_tile) {
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    // Rows 16 kk .. 16 kk + 15: two 8-row groups of every chunk; chunks kBRows rows apart.
    wgmma_rs<T>(acc, a[kk], smem_descriptor(b_tile + kk * 16 * 128, kBRows * 128), true);
  }
}

}  // namespace tk::flash_attn::sm90
