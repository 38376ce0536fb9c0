// RMSNorm device code: forward and backward kernels, framework-free (CUDA headers only).
// rmsnorm.h states the math; launch_config.h the launch shapes; rmsnorm.cu picks and launches.
//
// Two families:
//   *_resident: 16-byte vectors, the row held in registers between its reduction and its
//               output, so each input is read once. Shapes are template arguments, so every
//               register array is indexed by compile-time constants only.
//   *_looped:   any vector width and row length; two passes over the row, the second
//               re-reading it (from L2 for any row that fits there).
// Row offsets are 64-bit (rows * hidden may exceed 2^31); offsets inside a row are int.
#pragma once

#include <cstdint>

#include "_common/reduce.cuh"
#include "_common/vec.cuh"
#include "rmsnorm/launch_config.h"

namespace tk::rmsnorm {

template <typename T>
struct FwdParams {
  T* y;
  float* rstd;
  const T* x;
  const T* weight;      // nullptr: no weight
  const T* residual;    // nullptr: not fused
  T* residual_out;      // set iff residual is
  int64_t rows;
  int hidden;
  float inv_hidden;
  float eps;
};

template <typename T>
struct BwdParams {
  T* dx;
  float* partial_dweight;  // [gridDim.x, hidden] fp32, one row per block; nullptr: no dweight
  const T* dy;
  const T* z;
  const T* weight;         // nullptr: no weight
  const float* rstd;
  const T* dresidual;      // nullptr: nothing to add to dx
  int64_t rows;
  int hidden;
  float inv_hidden;
};

// Loads this thread's vectors of one row; vectors past the row's end read as zero.
template <int kThreadsPerRow, int kVecsPerThread, typename T, int N>
__device__ __forceinline__ void load_row(Vec<T, N> (&out)[kVecsPerThread], const Vec<T, N>* row,
                                         int lane, int num_vecs) {
#pragma unroll
  for (int k = 0; k < kVecsPerThread; ++k) {
    const int v = lane + k * kThreadsPerRow;
    out[k] = v < num_vecs ? row[v] : zeros<T, N>();
  }
}

// The weight row, or ones when there is no weight.
template <int kThreadsPerRow, int kVecsPerThread, typename T, int N>
__device__ __forceinline__ void load_weight_row(Vec<T, N> (&out)[kVecsPerThread], const T* weight,
                                                int lane, int num_vecs) {
  if (weight != nullptr) {
    load_row<kThreadsPerRow>(out, reinterpret_cast<const Vec<T, N>*>(weight), lane, num_vecs);
    return;
  }
#pragma unroll
  for (int k = 0; k < kVecsPerThread; ++k) out[k] = filled<T, N>(1.0f);
}

template <int kThreadsPerRow, int kVecsPerThread, typename V>
__device__ __forceinline__ void store_row(V* row, const V (&in)[kVecsPerThread], int lane,
                                          int num_vecs) {
#pragma unroll
  for (int k = 0; k < kVecsPerThread; ++k) {
    const int v = lane + k * kThreadsPerRow;
    if (v < num_vecs) row[v] = in[k];
  }
}

// z = x + residual in fp32, rounded to T: the value written to residual_out and normalized.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> add_rounded(const Vec<T, N>& a, const Vec<T, N>& b) {
  float fa[N], fb[N];
  to_floats(a, fa);
  to_floats(b, fb);
#pragma unroll
  for (int i = 0; i < N; ++i) fa[i] += fb[i];
  return from_floats<T>(fa);
}

template <typename T, int N>
__device__ __forceinline__ float sum_of_squares(const Vec<T, N>& v) {
  float f[N];
  to_floats(v, f);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < N; ++i) sum += f[i] * f[i];
  return sum;
}

// y = z * rstd * weight.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> normalize(const Vec<T, N>& z, const Vec<T, N>& weight,
                                               float rstd) {
  float fz[N], fw[N];
  to_floats(z, fz);
  to_floats(weight, fw);
#pragma unroll
  for (int i = 0; i < N; ++i) fz[i] = fz[i] * rstd * fw[i];
  return from_floats<T>(fz);
}

// sum(dy * weight * z) over one vector.
template <typename T, int N>
__device__ __forceinline__ float grad_dot(const Vec<T, N>& dy, const Vec<T, N>& z,
                                          const Vec<T, N>& weight) {
  float fdy[N], fz[N], fw[N];
  to_floats(dy, fdy);
  to_floats(z, fz);
  to_floats(weight, fw);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < N; ++i) sum += fdy[i] * fw[i] * fz[i];
  return sum;
}

// After the row reduction (hence to_floats_again, see vec.cuh): returns
// dx = rstd * (dy * weight - z * coef) + dresidual, with coef = rstd^2 * mean(dy * weight * z),
// and (when want_dweight) adds dy * z * rstd to the float4 slots dweight_slots[0],
// dweight_slots[slot_stride], ...
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> input_grad(const Vec<T, N>& dy, const Vec<T, N>& z,
                                                const Vec<T, N>& weight,
                                                const Vec<T, N>& dresidual, float rstd,
                                                float coef, bool want_dweight,
                                                float4* dweight_slots, int slot_stride) {
  float fdy[N], fz[N], fw[N], fres[N];
  to_floats_again(dy, fdy);
  to_floats_again(z, fz);
  to_floats_again(weight, fw);
  to_floats_again(dresidual, fres);
  if (want_dweight) {
    static_assert(N % 4 == 0, "whole float4 slots");
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
      float4 slot = dweight_slots[q * slot_stride];
      slot.x += fdy[4 * q] * fz[4 * q] * rstd;
      slot.y += fdy[4 * q + 1] * fz[4 * q + 1] * rstd;
      slot.z += fdy[4 * q + 2] * fz[4 * q + 2] * rstd;
      slot.w += fdy[4 * q + 3] * fz[4 * q + 3] * rstd;
      dweight_slots[q * slot_stride] = slot;
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) fdy[i] = rstd * (fdy[i] * fw[i] - fz[i] * coef) + fres[i];
  return from_floats<T>(fdy);
}

// acc += dy * z * rstd, element by element (looped kernel).
template <typename T, int N>
__device__ __forceinline__ void accumulate_weight_grad(float (&acc)[N], const Vec<T, N>& dy,
                                                       const Vec<T, N>& z, float rstd) {
  float fdy[N], fz[N];
  to_floats(dy, fdy);
  to_floats(z, fz);
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] += fdy[i] * fz[i] * rstd;
}

// dx = rstd * (dy * weight - z * coef) + dresidual (looped kernel).
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> looped_input_grad(const Vec<T, N>& dy, const Vec<T, N>& z,
                                                       const Vec<T, N>& weight,
                                                       const Vec<T, N>& dresidual, float rstd,
                                                       float coef) {
  float fdy[N], fz[N], fw[N], fres[N];
  to_floats(dy, fdy);
  to_floats(z, fz);
  to_floats(weight, fw);
  to_floats(dresidual, fres);
#pragma unroll
  for (int i = 0; i < N; ++i) fdy[i] = rstd * (fdy[i] * fw[i] - fz[i] * coef) + fres[i];
  return from_floats<T>(fdy);
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T, int kThreadsPerRow, int kVecsPerThread, int kRowsPerBlock,
          int kMinBlocksPerSm>
__global__ void __launch_bounds__(kThreadsPerRow* kRowsPerBlock, kMinBlocksPerSm)
    rmsnorm_fwd_resident(FwdParams<T> p) {
  constexpr int kVec = kElemsPer16Bytes<T>;
  using V = Vec<T, kVec>;
  __shared__ BlockSumScratch scratch[2];
  const int lane = threadIdx.x % kThreadsPerRow;
  const int num_vecs = p.hidden / kVec;

  int parity = 0;
  const int row_in_block = threadIdx.x / kThreadsPerRow;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + row_in_block; row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t row_offset = row * num_vecs;
    V z[kVecsPerThread];
    load_row<kThreadsPerRow>(z, reinterpret_cast<const V*>(p.x) + row_offset, lane, num_vecs);
    if (p.residual != nullptr) {
      V residual[kVecsPerThread];
      load_row<kThreadsPerRow>(residual, reinterpret_cast<const V*>(p.residual) + row_offset,
                               lane, num_vecs);
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) z[k] = add_rounded(z[k], residual[k]);
      store_row<kThreadsPerRow>(reinterpret_cast<V*>(p.residual_out) + row_offset, z, lane,
                                num_vecs);
    }
    // Read per row (an L1/L2 hit after the first): hoisted out of the loop, its fp32
    // conversion would stay live across every row and double its registers.
    V weight[kVecsPerThread];
    load_weight_row<kThreadsPerRow>(weight, p.weight, lane, num_vecs);

    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) squares += sum_of_squares(z[k]);
    const float total = row_sum(squares, kThreadsPerRow, scratch[parity]);
    parity ^= 1;
    const float rstd = rsqrtf(total * p.inv_hidden + p.eps);
    if (lane == 0) p.rstd[row] = rstd;

    V* y = reinterpret_cast<V*>(p.y) + row_offset;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int v = lane + k * kThreadsPerRow;
      if (v < num_vecs) y[v] = normalize(z[k], weight[k], rstd);
    }
  }
}

// One block of threads_per_row threads per row (1-D block).
template <typename T, int kVecElems>
__global__ void __launch_bounds__(kLoopedMaxThreads)
    rmsnorm_fwd_looped(FwdParams<T> p) {
  using V = Vec<T, kVecElems>;
  __shared__ BlockSumScratch scratch[2];
  const int threads_per_row = blockDim.x;
  const int lane = threadIdx.x;
  const int num_vecs = p.hidden / kVecElems;
  const V* weight = reinterpret_cast<const V*>(p.weight);

  int parity = 0;
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t row_offset = row * num_vecs;
    const V* x = reinterpret_cast<const V*>(p.x) + row_offset;
    const bool fused = p.residual != nullptr;

    float squares = 0.0f;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      V z = x[v];
      if (fused) {
        z = add_rounded(z, reinterpret_cast<const V*>(p.residual)[row_offset + v]);
        reinterpret_cast<V*>(p.residual_out)[row_offset + v] = z;
      }
      squares += sum_of_squares(z);
    }
    const float total = row_sum(squares, threads_per_row, scratch[parity]);
    parity ^= 1;
    const float rstd = rsqrtf(total * p.inv_hidden + p.eps);
    if (lane == 0) p.rstd[row] = rstd;

    // This thread wrote residual_out[v] itself above, so reading it back is ordered.
    const V* z_row = fused ? reinterpret_cast<const V*>(p.residual_out) + row_offset : x;
    V* y = reinterpret_cast<V*>(p.y) + row_offset;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      const V w = weight != nullptr ? weight[v] : filled<T, kVecElems>(1.0f);
      y[v] = normalize(z_row[v], w, rstd);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: a persistent grid; each block (or each warp, for warp-per-row shapes) walks rows
// with a stride and accumulates dweight in fp32 (shared memory, or the block's partial row
// itself in the looped kernel), and the block writes one partial row to partial_dweight.
// rmsnorm_reduce_partials then sums the partial rows into dweight in a fixed order, so dweight
// is deterministic for a given device.

template <typename T, int kThreadsPerRow, int kVecsPerThread, int kRowsPerBlock,
          int kMinBlocksPerSm>
__global__ void __launch_bounds__(kThreadsPerRow* kRowsPerBlock, kMinBlocksPerSm)
    rmsnorm_bwd_resident(BwdParams<T> p) {
  constexpr int kVec = kElemsPer16Bytes<T>;
  constexpr int kThreads = kThreadsPerRow * kRowsPerBlock;
  constexpr int kSlotsPerVec = kVec / 4;
  using V = Vec<T, kVec>;
  __shared__ BlockSumScratch scratch[2];
  // fp32 dweight sums in shared memory rather than registers, which hold dy, z and weight.
  // Slot (k, q) of thread t is dweight_slots[(k * kSlotsPerVec + q) * kThreads + t]: private
  // to the thread until the final combine, and consecutive across a warp.
  __shared__ float4 dweight_slots[kVecsPerThread * kSlotsPerVec * kThreads];
  const int lane = threadIdx.x % kThreadsPerRow;
  const int num_vecs = p.hidden / kVec;
  const bool want_dweight = p.partial_dweight != nullptr;
#pragma unroll
  for (int i = 0; i < kVecsPerThread * kSlotsPerVec; ++i) {
    dweight_slots[i * kThreads + threadIdx.x] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }

  int parity = 0;
  const int row_in_block = threadIdx.x / kThreadsPerRow;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + row_in_block; row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t row_offset = row * num_vecs;
    V dy[kVecsPerThread], z[kVecsPerThread], dresidual[kVecsPerThread];
    load_row<kThreadsPerRow>(dy, reinterpret_cast<const V*>(p.dy) + row_offset, lane, num_vecs);
    load_row<kThreadsPerRow>(z, reinterpret_cast<const V*>(p.z) + row_offset, lane, num_vecs);
    if (p.dresidual != nullptr) {
      load_row<kThreadsPerRow>(dresidual, reinterpret_cast<const V*>(p.dresidual) + row_offset,
                               lane, num_vecs);
    } else {
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) dresidual[k] = zeros<T, kVec>();
    }
    const float rstd = p.rstd[row];
    // Read per row (an L1/L2 hit), like the forward: held across rows it cost the registers
    // that 4 vectors per thread need (bf16 spilled on sm_75 and sm_80 at 128 registers).
    V weight[kVecsPerThread];
    load_weight_row<kThreadsPerRow>(weight, p.weight, lane, num_vecs);

    float dot = 0.0f;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) dot += grad_dot(dy[k], z[k], weight[k]);
    const float total = row_sum(dot, kThreadsPerRow, scratch[parity]);
    parity ^= 1;
    const float coef = total * rstd * rstd * p.inv_hidden;

    V* dx = reinterpret_cast<V*>(p.dx) + row_offset;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      float4* slots = dweight_slots + k * kSlotsPerVec * kThreads + threadIdx.x;
      const V dx_vec = input_grad(dy[k], z[k], weight[k], dresidual[k], rstd, coef, want_dweight,
                                  slots, kThreads);
      const int v = lane + k * kThreadsPerRow;
      if (v < num_vecs) dx[v] = dx_vec;
    }
  }
  if (!want_dweight) return;

  // Column c is element e of vector v = lane + k * kThreadsPerRow; the warps of a warp-per-row
  // block hold it in the same slot, added here in warp order (deterministic).
  __syncthreads();
  const float* slot_floats = reinterpret_cast<const float*>(dweight_slots);
  float* partial = p.partial_dweight + static_cast<int64_t>(blockIdx.x) * p.hidden;
  for (int column = threadIdx.x; column < p.hidden; column += kThreads) {
    const int v = column / kVec, e = column % kVec;
    const int k = v / kThreadsPerRow, owner_lane = v % kThreadsPerRow;
    const int slot = (k * kSlotsPerVec + e / 4) * kThreads + owner_lane;
    float sum = 0.0f;
#pragma unroll
    for (int r = 0; r < kRowsPerBlock; ++r) {
      sum += slot_floats[(slot + r * kThreadsPerRow) * 4 + e % 4];
    }
    partial[column] = sum;
  }
}

template <typename T, int kVecElems>
__global__ void __launch_bounds__(kLoopedMaxThreads)
    rmsnorm_bwd_looped(BwdParams<T> p) {
  using V = Vec<T, kVecElems>;
  __shared__ BlockSumScratch scratch[2];
  const int threads_per_row = blockDim.x;
  const int lane = threadIdx.x;
  const int num_vecs = p.hidden / kVecElems;
  const V* weight = reinterpret_cast<const V*>(p.weight);
  // Each thread owns the same columns in every row, so it accumulates its share of the
  // block's partial row in place, with no other thread touching those floats.
  float* partial = p.partial_dweight != nullptr
                       ? p.partial_dweight + static_cast<int64_t>(blockIdx.x) * p.hidden
                       : nullptr;
  if (partial != nullptr) {
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      float zeros[kVecElems] = {};
      store_floats(partial + v * kVecElems, zeros);
    }
  }

  int parity = 0;
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t row_offset = row * num_vecs;
    const V* dy = reinterpret_cast<const V*>(p.dy) + row_offset;
    const V* z = reinterpret_cast<const V*>(p.z) + row_offset;
    const float rstd = p.rstd[row];

    float dot = 0.0f;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      const V w = weight != nullptr ? weight[v] : filled<T, kVecElems>(1.0f);
      dot += grad_dot(dy[v], z[v], w);
    }
    const float total = row_sum(dot, threads_per_row, scratch[parity]);
    parity ^= 1;
    const float coef = total * rstd * rstd * p.inv_hidden;

    V* dx = reinterpret_cast<V*>(p.dx) + row_offset;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      const V w = weight != nullptr ? weight[v] : filled<T, kVecElems>(1.0f);
      const V res = p.dresidual != nullptr
                        ? reinterpret_cast<const V*>(p.dresidual)[row_offset + v]
                        : zeros<T, kVecElems>();
      const V dy_v = dy[v];
      const V z_v = z[v];
      dx[v] = looped_input_grad(dy_v, z_v, w, res, rstd, coef);
      if (partial != nullptr) {
        float* slot = partial + v * kVecElems;
        float acc[kVecElems] = {};
        accumulate_weight_grad(acc, dy_v, z_v, rstd);
        add_floats(acc, slot);
        store_floats(slot, acc);
      }
    }
  }
}

// dweight[j] = sum over the partial rows of partials[b][j]. A block covers 32 columns with 16
// groups of rows; each warp reads 32 consecutive floats (128 bytes) of a partial row.
inline constexpr int kReduceColumns = 32;
inline constexpr int kReduceRowGroups = 16;

template <typename T>
__global__ void __launch_bounds__(kReduceColumns* kReduceRowGroups)
    rmsnorm_reduce_partials(T* dweight, const float* partials, int num_partials, int hidden) {
  __shared__ float group_sums[kReduceRowGroups][kReduceColumns];
  const int column = blockIdx.x * kReduceColumns + threadIdx.x;
  float sum = 0.0f;
  if (column < hidden) {
#pragma unroll 4
    for (int b = threadIdx.y; b < num_partials; b += kReduceRowGroups) {
      sum += partials[static_cast<int64_t>(b) * hidden + column];
    }
  }
  group_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && column < hidden) {
    float total = 0.0f;
#pragma unroll
    for (int g = 0; g < kReduceRowGroups; ++g) total += group_sums[g][threadIdx.x];
    const float column_sum[1] = {total};
    reinterpret_cast<Vec<T, 1>*>(dweight)[column] = from_floats<T>(column_sum);
  }
}

}  // namespace tk::rmsnorm
