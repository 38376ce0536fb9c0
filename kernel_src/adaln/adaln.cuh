// AdaLN device code: forward, backward and the partial-sum reductions, framework-free (CUDA
// headers only). adaln.h states the math; launch_config.h the launch shapes; adaln.cu picks and
// launches.
//
// Two families, as in RMSNorm:
//   *_resident: 16-byte vectors, the row held in registers between its reductions and its
//               outputs, so each input is read once. Shapes are template arguments, so every
//               register array is indexed by compile-time constants only.
//   *_looped:   any vector width and row length; several passes over the row.
// Per-sample modulation rows (scale, shift, gate of shape [batch, hidden]) are read by every
// token of their sample: after the first token they come from L2.
// Row offsets are 64-bit (rows * hidden may exceed 2^31); offsets inside a row are int.
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

#include "_common/dependent_launch.cuh"
#include "_common/reduce.cuh"
#include "_common/vec.cuh"
#include "adaln/launch_config.h"

namespace tk::adaln {

template <typename T>
struct FwdParams {
  T* y;
  T* z_out;             // set iff gated
  float* mean;
  float* rstd;
  const T* x;
  const T* branch;      // nullptr: plain; else gated (gate set too)
  const T* gate;
  const T* scale;
  const T* shift;
  const T* weight;      // nullptr: no weight
  int64_t rows;
  int64_t seq;
  int hidden;
  float inv_hidden;
  float eps;
  bool layer;           // LayerNorm (subtract the mean); else RMSNorm
  bool scale_per_token;
  bool shift_per_token;
  bool gate_per_token;
};

template <typename T>
struct BwdParams {
  T* dx;
  T* dscale;               // written here only when scale is per token
  T* dshift;               // a per-token shift's gradient (dy) to write, or null
  T* dbranch;              // gated only
  T* dgate;                // written here only when gated with a per-token gate
  // One fp32 row of `hidden` per block (block = sample * chunks + chunk), or nullptr:
  float* partial_p;        // sum of dy * xhat (per-sample scale) or of dn * xhat (per-token
                           // scale, for dweight only); nullptr when neither is wanted
  float* partial_shift;    // sum of dy; per-sample shift only
  float* partial_gate;     // sum of dz * branch; gated with a per-sample gate only
  const T* dy;
  const T* dz;             // nullptr: no gradient flows into z_out
  const T* z;
  const T* branch;         // gated only (with gate)
  const T* gate;
  const T* scale;
  const T* weight;         // nullptr: no weight
  const float* mean;
  const float* rstd;
  int64_t seq;
  int64_t chunks;          // blocks per sample
  int hidden;
  float inv_hidden;
  bool layer;
  bool scale_per_token;
  bool shift_per_token;
  bool gate_per_token;
};

// src[index], or `fallback` when the condition is false. By value: a conditional expression of
// two lvalues (a load and a local) is an lvalue, which the compiler turned into a pointer select
// between global and local memory, i.e. four 4-byte generic loads instead of one 16-byte load.
template <typename V>
__device__ __forceinline__ V load_or(bool condition, const V* src, int64_t index, V fallback) {
  if (condition) return src[index];
  return fallback;
}

// Asks for the 128-byte line holding `address` to be brought into L1; no register waits on it.
// PTX only: a hipified build (AMD) skips the hint.
__device__ __forceinline__ void prefetch_l1(const void* address) {
#if defined(__HIP_PLATFORM_AMD__)
  (void)address;
#else
  asm volatile("prefetch.global.L1 [%0];" ::"l"(address));
#endif
}

// The helpers below take vectors by value: a vector passed by reference straight from global
// memory was read a 4-byte word at a time (each word is widened separately); a by-value
// argument is one 16-byte load.

// One element as fp32, and one fp32 value rounded into an element.
template <typename T>
__device__ __forceinline__ float load_float(const T* src, int64_t index) {
  float value[1];
  to_floats(reinterpret_cast<const Vec<T, 1>*>(src)[index], value);
  return value[0];
}

template <typename T>
__device__ __forceinline__ void store_float(T* dst, int64_t index, float value) {
  const float values[1] = {value};
  reinterpret_cast<Vec<T, 1>*>(dst)[index] = from_floats<T>(values);
}

// Row of a modulation tensor serving x's row `row` (of sample `sample`).
__device__ __forceinline__ int64_t modulation_row(bool per_token, int64_t row, int64_t sample) {
  return per_token ? row : sample;
}

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

// z = x + gate * branch in fp32, rounded to T. Multiply and add are rounded separately (no
// FMA), the way PyTorch computes the fp32 expression, so z matches it bit for bit.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> gated_sum(const Vec<T, N> x, const Vec<T, N> gate,
                                               const Vec<T, N> branch) {
  float fx[N], fg[N], fb[N];
  to_floats(x, fx);
  to_floats(gate, fg);
  to_floats(branch, fb);
#pragma unroll
  for (int i = 0; i < N; ++i) fx[i] = __fadd_rn(fx[i], __fmul_rn(fg[i], fb[i]));
  return from_floats<T>(fx);
}

template <typename T, int N>
__device__ __forceinline__ float sum_elements(const Vec<T, N> v) {
  float f[N];
  to_floats(v, f);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < N; ++i) sum += f[i];
  return sum;
}

// sum((v - mean)^2): the sum of squares for RMSNorm (mean 0), the variance's for LayerNorm.
template <typename T, int N>
__device__ __forceinline__ float sum_squared_deviations(const Vec<T, N> v, float mean) {
  float f[N];
  to_floats(v, f);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const float d = f[i] - mean;
    sum += d * d;
  }
  return sum;
}

// y = (z - mean) * rstd * weight * (1 + scale) + shift.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> modulate(const Vec<T, N> z, const Vec<T, N> weight,
                                              const Vec<T, N> scale, const Vec<T, N> shift,
                                              float mean, float rstd) {
  float fz[N], fw[N], fs[N], fsh[N];
  to_floats(z, fz);
  to_floats(weight, fw);
  to_floats(scale, fs);
  to_floats(shift, fsh);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const float n = (fz[i] - mean) * rstd * fw[i];
    fz[i] = n * (1.0f + fs[i]) + fsh[i];
  }
  return from_floats<T>(fz);
}

// Adds sum(g) and sum(g * xhat) over one vector, g = dy * (1 + scale) * weight.
template <typename T, int N>
__device__ __forceinline__ void grad_sums(const Vec<T, N> dy, const Vec<T, N> z,
                                          const Vec<T, N> scale, const Vec<T, N> weight,
                                          float mean, float rstd, float& sum_g, float& sum_gx) {
  float fdy[N], fz[N], fs[N], fw[N];
  to_floats(dy, fdy);
  to_floats(z, fz);
  to_floats(scale, fs);
  to_floats(weight, fw);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const float g = fdy[i] * (1.0f + fs[i]) * fw[i];
    sum_g += g;
    sum_gx += g * ((fz[i] - mean) * rstd);
  }
}

// The per-sample scale's forms of grad_sums and input_grads below: g = dy * coef, with
// coef = (1 + scale) * weight in fp32 computed once per block, since every row of a block
// belongs to one sample. Nsight Compute on the H100 (adaln-rms-sample 2x4096x3072 bf16) put
// the generic kernel at 0.67 instructions issued per cycle per scheduler, about 420 per warp and
// row, beside 67% of DRAM bandwidth: the scale and weight re-read and widened on every row, and
// the per-token dscale computed and dropped, were a quarter of them.
template <int N>
__device__ __forceinline__ void scale_coefficients(const float (&scale)[N],
                                                   const float (&weight)[N], float (&coef)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) coef[i] = (1.0f + scale[i]) * weight[i];
}

template <typename T, int N>
__device__ __forceinline__ void grad_sums_coef(const Vec<T, N> dy, const Vec<T, N> z,
                                               const float (&coef)[N], float mean, float rstd,
                                               float& sum_g, float& sum_gx) {
  float fdy[N], fz[N];
  to_floats(dy, fdy);
  to_floats(z, fz);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const float g = fdy[i] * coef[i];
    sum_g += g;
    sum_gx += g * ((fz[i] - mean) * rstd);
  }
}

// Word w of a vector (two 16-bit elements or one fp32) as a vector of its own.
template <typename T, int N>
using WordVec = Vec<T, N / Vec<T, N>::kWords>;

template <typename T, int N>
__device__ __forceinline__ WordVec<T, N> word_of(const Vec<T, N> v, int w) {
  WordVec<T, N> piece;
  piece.words[0] = v.words[w];
  return piece;
}

// The backward of one vector after the row reductions, in two stages so that few values are
// live at once (each works a word at a time, and each stores its outputs before the next loads
// its inputs). Stage 1: dz = rstd * (g - mean_g - xhat * mean_gx) + dz_in, kept as floats in
// `dzt` and stored as dx; dscale stored (per-token scale); the dscale/dweight and dshift sums
// added to their accumulators (floats of the vector's columns).
template <typename T, int N>
__device__ __forceinline__ void input_grads(const BwdParams<T>& p, int64_t at,
                                            const Vec<T, N> dy, const Vec<T, N> z,
                                            const Vec<T, N> dz, const Vec<T, N> scale,
                                            const Vec<T, N> weight, float mean, float rstd,
                                            float mean_g, float mean_gx, float (&dzt)[N],
                                            float (&acc_p)[N], float (&acc_shift)[N]) {
  constexpr int kWords = Vec<T, N>::kWords;
  constexpr int kPer = N / kWords;
  Vec<T, N> dx, dscale;
#pragma unroll
  for (int w = 0; w < kWords; ++w) {
    float fdy[kPer], fz[kPer], fdz[kPer], fs[kPer], fw[kPer], out[kPer], ds[kPer];
    to_floats(word_of(dy, w), fdy);
    to_floats(word_of(z, w), fz);
    to_floats(word_of(dz, w), fdz);
    to_floats(word_of(scale, w), fs);
    to_floats(word_of(weight, w), fw);
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int i = w * kPer + e;
      const float xhat = (fz[e] - mean) * rstd;
      const float dn = fdy[e] * (1.0f + fs[e]);
      const float g = dn * fw[e];
      dzt[i] = rstd * (g - mean_g - xhat * mean_gx) + fdz[e];
      out[e] = dzt[i];
      ds[e] = fdy[e] * xhat * fw[e];
      // Per-token scale: dweight's sum of dn * xhat; per-sample: dscale's of dy * xhat.
      acc_p[i] += (p.scale_per_token ? dn : fdy[e]) * xhat;
      acc_shift[i] += fdy[e];
    }
    dx.words[w] = from_floats<T>(out).words[0];
    dscale.words[w] = from_floats<T>(ds).words[0];
  }
  reinterpret_cast<Vec<T, N>*>(p.dx)[at] = dx;
  if (p.scale_per_token) reinterpret_cast<Vec<T, N>*>(p.dscale)[at] = dscale;
}

// input_grads with a per-sample scale (see grad_sums_coef): dx stored, dscale's sum of
// dy * xhat and dshift's of dy added to their accumulators.
template <typename T, int N>
__device__ __forceinline__ void input_grads_coef(const BwdParams<T>& p, int64_t at,
                                                 const Vec<T, N> dy, const Vec<T, N> z,
                                                 const Vec<T, N> dz, const float (&coef)[N],
                                                 float mean, float rstd, float mean_g,
                                                 float mean_gx, float (&dzt)[N],
                                                 float (&acc_p)[N], float (&acc_shift)[N]) {
  constexpr int kWords = Vec<T, N>::kWords;
  constexpr int kPer = N / kWords;
  Vec<T, N> dx;
#pragma unroll
  for (int w = 0; w < kWords; ++w) {
    float fdy[kPer], fz[kPer], fdz[kPer], out[kPer];
    to_floats(word_of(dy, w), fdy);
    to_floats(word_of(z, w), fz);
    to_floats(word_of(dz, w), fdz);
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int i = w * kPer + e;
      const float xhat = (fz[e] - mean) * rstd;
      dzt[i] = rstd * (fdy[e] * coef[i] - mean_g - xhat * mean_gx) + fdz[e];
      out[e] = dzt[i];
      acc_p[i] += fdy[e] * xhat;
      acc_shift[i] += fdy[e];
    }
    dx.words[w] = from_floats<T>(out).words[0];
  }
  reinterpret_cast<Vec<T, N>*>(p.dx)[at] = dx;
}

// Stage 2 (gated): dbranch = dz * gate stored; dgate = dz * branch stored (per-token gate) or
// added to its accumulator.
template <typename T, int N>
__device__ __forceinline__ void gate_grads(const BwdParams<T>& p, int64_t at,
                                           const float (&dzt)[N], const Vec<T, N> branch,
                                           const Vec<T, N> gate, float (&acc_gate)[N]) {
  constexpr int kWords = Vec<T, N>::kWords;
  constexpr int kPer = N / kWords;
  Vec<T, N> dbranch, dgate;
#pragma unroll
  for (int w = 0; w < kWords; ++w) {
    float fb[kPer], fg[kPer], db[kPer], dg[kPer];
    to_floats(word_of(branch, w), fb);
    to_floats(word_of(gate, w), fg);
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int i = w * kPer + e;
      db[e] = dzt[i] * fg[e];
      dg[e] = dzt[i] * fb[e];
      acc_gate[i] += dg[e];
    }
    dbranch.words[w] = from_floats<T>(db).words[0];
    dgate.words[w] = from_floats<T>(dg).words[0];
  }
  reinterpret_cast<Vec<T, N>*>(p.dbranch)[at] = dbranch;
  if (p.gate_per_token) reinterpret_cast<Vec<T, N>*>(p.dgate)[at] = dgate;
}

// Stores `values` into `dst` when dst is not null (a partial row that is wanted).
template <int N>
__device__ __forceinline__ void store_partial(float* dst, int64_t offset,
                                              const float (&values)[N]) {
  if (dst != nullptr) store_floats(dst + offset, values);
}

// dst[offset ...] += values (a partial row, owned by this thread), when dst is not null.
template <int N>
__device__ __forceinline__ void add_to_partial(float* dst, int64_t offset,
                                               const float (&values)[N]) {
  if (dst == nullptr) return;
  float sum[N];
#pragma unroll
  for (int i = 0; i < N; ++i) sum[i] = values[i];
  add_floats(sum, dst + offset);
  store_floats(dst + offset, sum);
}

// This thread's vectors of the modulation rows and of the weight (ones when there is none).
template <int kThreadsPerRow, int kVecsPerThread, typename T, int N>
__device__ __forceinline__ void load_modulation(Vec<T, N> (&scale)[kVecsPerThread],
                                                Vec<T, N> (&shift)[kVecsPerThread],
                                                Vec<T, N> (&weight)[kVecsPerThread],
                                                const FwdParams<T>& p, int64_t scale_offset,
                                                int64_t shift_offset, int lane, int num_vecs) {
  using V = Vec<T, N>;
  load_row<kThreadsPerRow>(scale, reinterpret_cast<const V*>(p.scale) + scale_offset, lane,
                           num_vecs);
  load_row<kThreadsPerRow>(shift, reinterpret_cast<const V*>(p.shift) + shift_offset, lane,
                           num_vecs);
  if (p.weight != nullptr) {
    load_row<kThreadsPerRow>(weight, reinterpret_cast<const V*>(p.weight), lane, num_vecs);
  } else {
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) weight[k] = filled<T, N>(1.0f);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T, int kThreadsPerRow, int kVecsPerThread, int kRowsPerBlock,
          int kMinBlocksPerSm>
__global__ void __launch_bounds__(kThreadsPerRow* kRowsPerBlock, kMinBlocksPerSm)
    adaln_fwd_resident(FwdParams<T> p) {
  constexpr int kVec = kElemsPer16Bytes<T>;
  using V = Vec<T, kVec>;
  __shared__ BlockSumScratch scratch[2];
  const int lane = threadIdx.x % kThreadsPerRow;
  const int num_vecs = p.hidden / kVec;

  int parity = 0;
  const int row_in_block = threadIdx.x / kThreadsPerRow;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + row_in_block; row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t sample = row / p.seq;
    const int64_t row_offset = row * num_vecs;
    V z[kVecsPerThread];
    load_row<kThreadsPerRow>(z, reinterpret_cast<const V*>(p.x) + row_offset, lane, num_vecs);
    if (p.branch != nullptr) {
      V branch[kVecsPerThread], gate[kVecsPerThread];
      load_row<kThreadsPerRow>(branch, reinterpret_cast<const V*>(p.branch) + row_offset, lane,
                               num_vecs);
      const int64_t gate_offset = modulation_row(p.gate_per_token, row, sample) * num_vecs;
      load_row<kThreadsPerRow>(gate, reinterpret_cast<const V*>(p.gate) + gate_offset, lane,
                               num_vecs);
      V* z_out = reinterpret_cast<V*>(p.z_out) + row_offset;
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) {
        z[k] = gated_sum(z[k], gate[k], branch[k]);
        const int v = lane + k * kThreadsPerRow;
        if (v < num_vecs) z_out[v] = z[k];
      }
    }

    // Up to two vectors per thread, scale, shift and weight are loaded before the reductions,
    // so their latency (L2 for per-sample rows) overlaps the row's DRAM load instead of
    // following the reductions: per-sample rows moved at 70-76% of copy bandwidth on an H200
    // when loaded after them, gated rows (two more DRAM streams in flight) at 95%. With more
    // vectors per thread the three held arrays would exceed the 64 registers of the launch
    // bounds, so they are loaded after.
    constexpr bool kEarly = kVecsPerThread <= 2;
    const int64_t scale_offset = modulation_row(p.scale_per_token, row, sample) * num_vecs;
    const int64_t shift_offset = modulation_row(p.shift_per_token, row, sample) * num_vecs;
    V scale[kVecsPerThread], shift[kVecsPerThread], weight[kVecsPerThread];
    if constexpr (kEarly) {
      load_modulation<kThreadsPerRow>(scale, shift, weight, p, scale_offset, shift_offset, lane,
                                      num_vecs);
    }

    // Vectors past the row's end hold zeros: they add nothing to a sum, but (0 - mean)^2 is not
    // nothing, so the deviation sum skips them.
    float mean = 0.0f;
    if (p.layer) {
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < kVecsPerThread; ++k) sum += sum_elements(z[k]);
      mean = row_sum(sum, kThreadsPerRow, scratch[parity]) * p.inv_hidden;
      parity ^= 1;
    }
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      if (lane + k * kThreadsPerRow < num_vecs) squares += sum_squared_deviations(z[k], mean);
    }
    const float total = row_sum(squares, kThreadsPerRow, scratch[parity]);
    parity ^= 1;
    const float rstd = rsqrtf(total * p.inv_hidden + p.eps);
    if (lane == 0) {
      p.mean[row] = mean;
      p.rstd[row] = rstd;
    }

    V* y = reinterpret_cast<V*>(p.y) + row_offset;
#pragma unroll
    for (int k = 0; k < kVecsPerThread; ++k) {
      const int v = lane + k * kThreadsPerRow;
      if (v >= num_vecs) continue;
      if constexpr (!kEarly) {
        // One vector at a time: loading all of them first spilled (ptxas, sm_90).
        scale[k] = reinterpret_cast<const V*>(p.scale)[scale_offset + v];
        shift[k] = reinterpret_cast<const V*>(p.shift)[shift_offset + v];
        weight[k] = p.weight != nullptr ? reinterpret_cast<const V*>(p.weight)[v]
                                        : filled<T, kVec>(1.0f);
      }
      y[v] = modulate(z[k], weight[k], scale[k], shift[k], mean, rstd);
    }
  }
}

// One block of threads_per_row threads per row (1-D block). Pass 1 forms z (writing z_out when
// gated) and sums it (layer) or its squares (rms); layer adds a pass for the variance; the last
// pass writes y. Later passes re-read z from x or from z_out, which this same thread wrote.
template <typename T, int kVecElems>
__global__ void __launch_bounds__(kLoopedMaxThreads) adaln_fwd_looped(FwdParams<T> p) {
  using V = Vec<T, kVecElems>;
  __shared__ BlockSumScratch scratch[2];
  const int threads_per_row = blockDim.x;
  const int lane = threadIdx.x;
  const int num_vecs = p.hidden / kVecElems;
  const bool gated = p.branch != nullptr;

  int parity = 0;
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t sample = row / p.seq;
    const int64_t row_offset = row * num_vecs;
    const V* x = reinterpret_cast<const V*>(p.x) + row_offset;
    const V* branch = reinterpret_cast<const V*>(p.branch) + row_offset;
    const V* gate = reinterpret_cast<const V*>(p.gate) +
                    modulation_row(p.gate_per_token, row, sample) * num_vecs;
    V* z_out = reinterpret_cast<V*>(p.z_out) + row_offset;

    float sum = 0.0f;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      V z = x[v];
      if (gated) {
        z = gated_sum(z, gate[v], branch[v]);
        z_out[v] = z;
      }
      sum += p.layer ? sum_elements(z) : sum_squared_deviations(z, 0.0f);
    }
    float total = row_sum(sum, threads_per_row, scratch[parity]);
    parity ^= 1;

    const V* z_row = gated ? z_out : x;
    float mean = 0.0f;
    if (p.layer) {
      mean = total * p.inv_hidden;
      float squares = 0.0f;
#pragma unroll 4
      for (int v = lane; v < num_vecs; v += threads_per_row) {
        squares += sum_squared_deviations(z_row[v], mean);
      }
      total = row_sum(squares, threads_per_row, scratch[parity]);
      parity ^= 1;
    }
    const float rstd = rsqrtf(total * p.inv_hidden + p.eps);
    if (lane == 0) {
      p.mean[row] = mean;
      p.rstd[row] = rstd;
    }

    const V* scale = reinterpret_cast<const V*>(p.scale) +
                     modulation_row(p.scale_per_token, row, sample) * num_vecs;
    const V* shift = reinterpret_cast<const V*>(p.shift) +
                     modulation_row(p.shift_per_token, row, sample) * num_vecs;
    const V* weight = reinterpret_cast<const V*>(p.weight);
    V* y = reinterpret_cast<V*>(p.y) + row_offset;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      const V w = weight != nullptr ? weight[v] : filled<T, kVecElems>(1.0f);
      y[v] = modulate(z_row[v], w, scale[v], shift[v], mean, rstd);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The backward's per-sample sums: every block writes one fp32 partial row per sum, which a
// sample's chunks then sum column by column, in adaln_reduce_chunks (a second pass) or in the
// fused backward's second phase (sum_partials_in_grid). adaln_reduce_chunks' blocks of 512
// threads cover kReduceColumns columns of one sample; the dweight pass splits them as 32 column
// threads x 16 row groups.
inline constexpr int kReduceColumns = 32;
inline constexpr int kReduceRowGroups = 16;
inline constexpr int kReduceThreads = kReduceColumns * kReduceRowGroups;

template <typename T>
struct ReduceParams {
  T* dscale;                 // [batch, hidden]: written when scale is per sample
  T* dshift;                 // [batch, hidden]: written when partial_shift is given
  T* dgate;                  // [batch, hidden]: written when partial_gate is given
  float* sample_p;           // [batch, hidden] fp32 sums of partial_p, for dweight; or nullptr
  const float* partial_p;    // the BwdParams partial rows ([batch * chunks, hidden])
  const float* partial_shift;
  const float* partial_gate;
  const T* weight;           // dscale = weight * (sum of dy * xhat); nullptr: no weight
  int64_t chunks;
  int64_t column_tiles;      // ceil(hidden / kReduceColumns)
  int hidden;
  int slice_columns;         // the fused backward's column slices: a power of two, 4 to 128
  bool scale_per_token;
};

// Partial array q of the backward: 0 the dy * xhat sums, 1 the dy sums, 2 the dz * branch sums.
template <typename T>
__device__ __forceinline__ const float* partial_array(const ReduceParams<T>& p, int q) {
  return q == 0 ? p.partial_p : q == 1 ? p.partial_shift : p.partial_gate;
}

// Stores the total of partial array q over a sample's chunks at one column: dscale (times the
// weight) and sample_p, dshift or dgate.
template <typename T>
__device__ __forceinline__ void store_sample_sum(const ReduceParams<T>& p, int q, int64_t sample,
                                                 int column, float total) {
  const int64_t at = sample * p.hidden + column;
  if (q == 0) {
    if (!p.scale_per_token) {
      const float weight = p.weight != nullptr ? load_float(p.weight, column) : 1.0f;
      store_float(p.dscale, at, total * weight);
    }
    if (p.sample_p != nullptr) p.sample_p[at] = total;
  } else {
    store_float(q == 1 ? p.dshift : p.dgate, at, total);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: block b * chunks + c walks its contiguous run of the rows of sample b. Per-token
// gradients are stored row by row; per-sample sums (and the dweight sum) are accumulated in
// fp32 over the block's rows and written as the block's partial rows, which
// adaln_reduce_chunks and adaln_reduce_dweight then sum in a fixed order: deterministic for a
// given device.

// First and one-past-last row of this block's run.
__device__ __forceinline__ void block_rows(const int64_t seq, const int64_t chunks,
                                           int64_t& sample, int64_t& first, int64_t& end) {
  sample = blockIdx.x / chunks;
  const int64_t chunk = blockIdx.x % chunks;
  first = sample * seq + seq * chunk / chunks;
  end = sample * seq + seq * (chunk + 1) / chunks;
}

// Sums the partial rows of one sample over its chunks at columns [first, first + slice) and
// stores the totals (store_sample_sum). The block's threads each read runs of kCols floats
// (slice / kCols runs, which divides 32) x row groups: group g sums chunks g, g + groups, ... in
// order, with two loads per array in flight; then the groups of a warp are summed by butterfly
// shuffles (lanes `runs` apart hold the same columns; every lane ends with the same bits) and the
// warps' sums in warp order. A fixed order for a given hidden, slice and grid: deterministic.
// Before the shuffles, 32 threads summed the 64 groups' shared-memory rows one after another
// (192 dependent adds each), and the second pass took 5.3 us of the 67 us backward of
// adaln-rms-sample 2x4096x3072 bf16 (H100, Nsight Compute, partials in L2).
template <typename T, int kThreads, int kCols, int kMaxSlice>
__device__ void sum_column_slice(const ReduceParams<T>& r, int64_t sample, int64_t first,
                                 int slice) {
  static_assert(kThreads % 32 == 0, "whole warps");
  constexpr int kWarps = kThreads / 32;
  __shared__ float warp_sums[3][kWarps][kMaxSlice];
  const int runs = slice / kCols;
  const int run = threadIdx.x % runs;
  const int group = threadIdx.x / runs;
  const int groups = kThreads / runs;
  const int warp = threadIdx.x / 32;
  // hidden is a multiple of kCols, so a run lies wholly inside the row or wholly past it.
  const int column = static_cast<int>(first) + run * kCols;
  float sums[3][kCols] = {};
  if (column < r.hidden) {
#pragma unroll 2
    for (int64_t c = group; c < r.chunks; c += groups) {
      const int64_t at = (sample * r.chunks + c) * r.hidden + column;
#pragma unroll
      for (int q = 0; q < 3; ++q) {
        if (partial_array(r, q) != nullptr) add_floats(sums[q], partial_array(r, q) + at);
      }
    }
  }
  for (int offset = runs; offset < 32; offset *= 2) {
#pragma unroll
    for (int q = 0; q < 3; ++q) {
#pragma unroll
      for (int k = 0; k < kCols; ++k) sums[q][k] += __shfl_xor_sync(~0u, sums[q][k], offset);
    }
  }
  if (threadIdx.x % 32 < runs) {
#pragma unroll
    for (int q = 0; q < 3; ++q) {
#pragma unroll
      for (int k = 0; k < kCols; ++k) warp_sums[q][warp][run * kCols + k] = sums[q][k];
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < 3 * slice; t += kThreads) {
    const int q = t / slice;
    const int at_column = static_cast<int>(first) + t % slice;
    if (partial_array(r, q) == nullptr || at_column >= r.hidden) continue;
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += warp_sums[q][w][t % slice];
    store_sample_sum(r, q, sample, at_column, total);
  }
  __syncthreads();  // warp_sums may be written again by the next slice
}

// Widest column slice of the fused backward's second phase: 32 runs of 4 columns.
inline constexpr int kMaxSliceColumns = 128;

// The fused backward's second phase, run by every block of a grid launched cooperatively (so all
// blocks are resident and the grid barrier before this waits on none that never starts), once
// every block's partial rows are written: block (sample, chunk) sums column slices chunk,
// chunk + chunks, ... of its sample (r.slice_columns wide; hidden is a multiple of 4 on the
// resident path), the work of adaln_reduce_chunks without its launch.
template <typename T, int kThreads>
__device__ void sum_partials_in_grid(const ReduceParams<T>& r, int64_t sample, int64_t chunk) {
  for (int64_t first = chunk * r.slice_columns; first < r.hidden;
       first += r.chunks * r.slice_columns) {
    sum_column_slice<T, kThreads, 4, kMaxSliceColumns>(r, sample, first, r.slice_columns);
  }
}

// One 16-byte vector per thread (kBwdShapes), with up to three fp32 accumulator vectors in
// registers. To keep few registers live across the row reductions, only dy and z are held
// across them: scale and weight are read before them (for the sums) and again after them (L1
// hits), and dz, branch and gate, needed only after them, are prefetched into L1 before them,
// so all of the row's DRAM traffic is still in flight at once. kSampleScale: the scale is per
// sample (p.scale_per_token false), and the block's (1 + scale) * weight is held in fp32.
// kFusedSums: launched cooperatively, the grid sums its partial rows itself after a grid barrier
// (sum_partials_in_grid, with `sums`); else adaln_reduce_chunks does, and `sums` is unused.
template <typename T, int kThreadsPerRow, int kMinBlocksPerSm, bool kSampleScale, bool kFusedSums>
__global__ void __launch_bounds__(kThreadsPerRow, kMinBlocksPerSm)
    adaln_bwd_resident(BwdParams<T> p, ReduceParams<T> sums) {
  // The reduction pass after this kernel may be scheduled now; it waits for this grid's end.
  allow_dependent_launch();
  constexpr int kVec = kElemsPer16Bytes<T>;
  using V = Vec<T, kVec>;
  __shared__ BlockSumsScratch<2> scratch[2];
  const int lane = threadIdx.x;
  const int num_vecs = p.hidden / kVec;
  const bool active = lane < num_vecs;
  const bool gated = p.branch != nullptr;
  int64_t sample, first, end;
  block_rows(p.seq, p.chunks, sample, first, end);
  const V* scale_rows = reinterpret_cast<const V*>(p.scale);
  const V* weight = reinterpret_cast<const V*>(p.weight);

  float acc_p[kVec] = {}, acc_shift[kVec] = {}, acc_gate[kVec] = {};
  const V zero = zeros<T, kVec>();
  const V one = filled<T, kVec>(1.0f);
  float coef[kVec] = {};
  if constexpr (kSampleScale) {
    if (active) {
      float fs[kVec], fw[kVec];
      to_floats(scale_rows[sample * num_vecs + lane], fs);
      to_floats(load_or(weight != nullptr, weight, lane, one), fw);
      scale_coefficients(fs, fw, coef);
    }
  }
  int parity = 0;
  for (int64_t row = first; row < end; ++row) {
    const int64_t at = row * num_vecs + lane;
    const int64_t scale_at = modulation_row(p.scale_per_token, row, sample) * num_vecs + lane;
    const int64_t gate_at = modulation_row(p.gate_per_token, row, sample) * num_vecs + lane;
    // The next row's dy and z are requested too, into L1 (no registers: holding them spilled
    // 16-bit rows), so they stream in during this row's reductions; with only this row's loads
    // in flight the bandwidth stalled at 30-53% of copy (per-sample scale, H200).
    if (active && row + 1 < end) {
      prefetch_l1(reinterpret_cast<const V*>(p.dy) + at + num_vecs);
      prefetch_l1(reinterpret_cast<const V*>(p.z) + at + num_vecs);
    }
    const V dy = load_or(active, reinterpret_cast<const V*>(p.dy), at, zero);
    const V z = load_or(active, reinterpret_cast<const V*>(p.z), at, zero);
    if (active) {
      if (p.dz != nullptr) prefetch_l1(reinterpret_cast<const V*>(p.dz) + at);
      if (gated) {
        prefetch_l1(reinterpret_cast<const V*>(p.branch) + at);
        prefetch_l1(reinterpret_cast<const V*>(p.gate) + gate_at);
      }
    }
    const float mean = p.mean[row];
    const float rstd = p.rstd[row];

    float sum_g = 0.0f, sum_gx = 0.0f;
    if (active) {
      if constexpr (kSampleScale) {
        grad_sums_coef(dy, z, coef, mean, rstd, sum_g, sum_gx);
      } else {
        grad_sums(dy, z, scale_rows[scale_at], load_or(weight != nullptr, weight, lane, one),
                  mean, rstd, sum_g, sum_gx);
      }
    }
    float mean_g = 0.0f, mean_gx;
    if (p.layer) {
      // One barrier for both sums: the plain layer-norm backward ran 2.2%-6.6% faster than with
      // a barrier each (H100, bf16, same-run A/B).
      float sums[2] = {sum_g, sum_gx};
      row_sums(sums, kThreadsPerRow, scratch[parity]);
      mean_g = sums[0] * p.inv_hidden;
      mean_gx = sums[1] * p.inv_hidden;
    } else {
      mean_gx = row_sum(sum_gx, kThreadsPerRow, scratch[parity]) * p.inv_hidden;
    }
    parity ^= 1;
    if (!active) continue;

    // The barrier in row_sums keeps the compiler from reusing the loads above: these re-read.
    const V dz = load_or(p.dz != nullptr, reinterpret_cast<const V*>(p.dz), at, zero);
    float dzt[kVec];
    if constexpr (kSampleScale) {
      input_grads_coef(p, at, dy, z, dz, coef, mean, rstd, mean_g, mean_gx, dzt, acc_p,
                       acc_shift);
    } else {
      input_grads(p, at, dy, z, dz, scale_rows[scale_at],
                  load_or(weight != nullptr, weight, lane, one), mean, rstd, mean_g, mean_gx,
                  dzt, acc_p, acc_shift);
    }
    if (p.dshift != nullptr) reinterpret_cast<V*>(p.dshift)[at] = dy;
    if (gated) {
      gate_grads(p, at, dzt, reinterpret_cast<const V*>(p.branch)[at],
                 reinterpret_cast<const V*>(p.gate)[gate_at], acc_gate);
    }
  }
  if (active) {
    const int64_t partial_at = static_cast<int64_t>(blockIdx.x) * p.hidden + lane * kVec;
    store_partial(p.partial_p, partial_at, acc_p);
    store_partial(p.partial_shift, partial_at, acc_shift);
    store_partial(p.partial_gate, partial_at, acc_gate);
  }
  if constexpr (kFusedSums) {
    cooperative_groups::this_grid().sync();  // also orders the partial rows' writes before
    sum_partials_in_grid<T, kThreadsPerRow>(sums, sample, blockIdx.x % p.chunks);
  }
}

// A block of threads_per_row threads per (sample, chunk). Each thread owns the same columns in
// every row, so it accumulates the block's partial rows in place in the workspace (L1/L2
// resident), with no other thread touching those floats.
template <typename T, int kVecElems>
__global__ void __launch_bounds__(kLoopedMaxThreads) adaln_bwd_looped(BwdParams<T> p) {
  allow_dependent_launch();  // as in adaln_bwd_resident
  using V = Vec<T, kVecElems>;
  __shared__ BlockSumScratch scratch[2];
  const int threads_per_row = blockDim.x;
  const int lane = threadIdx.x;
  const int num_vecs = p.hidden / kVecElems;
  const bool gated = p.branch != nullptr;
  int64_t sample, first, end;
  block_rows(p.seq, p.chunks, sample, first, end);
  const int64_t partial_row = static_cast<int64_t>(blockIdx.x) * p.hidden;

  for (int v = lane; v < num_vecs; v += threads_per_row) {
    const float zeros_row[kVecElems] = {};
    store_partial(p.partial_p, partial_row + v * kVecElems, zeros_row);
    store_partial(p.partial_shift, partial_row + v * kVecElems, zeros_row);
    store_partial(p.partial_gate, partial_row + v * kVecElems, zeros_row);
  }

  const V zero = zeros<T, kVecElems>();
  const V* weight = reinterpret_cast<const V*>(p.weight);
  int parity = 0;
  for (int64_t row = first; row < end; ++row) {
    const int64_t row_offset = row * num_vecs;
    const V* dy = reinterpret_cast<const V*>(p.dy) + row_offset;
    const V* z = reinterpret_cast<const V*>(p.z) + row_offset;
    const V* scale = reinterpret_cast<const V*>(p.scale) +
                     modulation_row(p.scale_per_token, row, sample) * num_vecs;
    const float mean = p.mean[row];
    const float rstd = p.rstd[row];

    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll 4
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      const V w = weight != nullptr ? weight[v] : filled<T, kVecElems>(1.0f);
      grad_sums(dy[v], z[v], scale[v], w, mean, rstd, sum_g, sum_gx);
    }
    float mean_g = 0.0f;
    if (p.layer) {
      mean_g = row_sum(sum_g, threads_per_row, scratch[parity]) * p.inv_hidden;
      parity ^= 1;
    }
    const float mean_gx = row_sum(sum_gx, threads_per_row, scratch[parity]) * p.inv_hidden;
    parity ^= 1;

    const V* gate = reinterpret_cast<const V*>(p.gate) +
                    modulation_row(p.gate_per_token, row, sample) * num_vecs;
    for (int v = lane; v < num_vecs; v += threads_per_row) {
      const int64_t at = row_offset + v;
      const V w = weight != nullptr ? weight[v] : filled<T, kVecElems>(1.0f);
      const V dy_v = dy[v];
      float dzt[kVecElems], acc_p[kVecElems] = {}, acc_shift[kVecElems] = {},
          acc_gate[kVecElems] = {};
      const V dz = load_or(p.dz != nullptr, reinterpret_cast<const V*>(p.dz), at, zero);
      input_grads(p, at, dy_v, z[v], dz, scale[v], w, mean, rstd, mean_g, mean_gx, dzt, acc_p,
                  acc_shift);
      if (p.dshift != nullptr) reinterpret_cast<V*>(p.dshift)[at] = dy_v;
      if (gated) {
        gate_grads(p, at, dzt, reinterpret_cast<const V*>(p.branch)[at], gate[v], acc_gate);
      }
      const int64_t partial_at = partial_row + v * kVecElems;
      add_to_partial(p.partial_p, partial_at, acc_p);
      add_to_partial(p.partial_shift, partial_at, acc_shift);
      add_to_partial(p.partial_gate, partial_at, acc_gate);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Second pass of the backward sums (when the backward is not fused). Block (sample, column tile)
// = blockIdx.x sums the sample's `chunks` partial rows of its kReduceColumns columns
// (sum_column_slice): kCols = 4 (hidden a multiple of 4, so every run is 16-byte aligned) gives
// 8 column threads x 64 row groups, kCols = 1 gives 32 x 16.
template <typename T, int kCols>
__global__ void __launch_bounds__(kReduceThreads) adaln_reduce_chunks(ReduceParams<T> p) {
  // Launched to overlap the backward kernel's end (bwd_cuda): its partial rows are read only
  // after that grid has completed.
  allow_dependent_launch();
  wait_for_previous_grid();
  const int64_t sample = blockIdx.x / p.column_tiles;
  const int64_t tile_column = (blockIdx.x % p.column_tiles) * kReduceColumns;
  sum_column_slice<T, kReduceThreads, kCols, kReduceColumns>(p, sample, tile_column,
                                                             kReduceColumns);
}

// Adds `value` to `sum` with compensated (Kahan) summation: `lost` carries what the last
// addition rounded away, and sum - lost is the better total.
__device__ __forceinline__ void add_compensated(float& sum, float& lost, float value) {
  const float term = value - lost;
  const float next = sum + term;
  lost = (next - sum) - term;
  sum = next;
}

// dweight[j] = sum over samples b of sample_p[b][j] * (1 + scale[b][j]) (per-sample scale) or
// of sample_p[b][j] (per-token scale: partial_p already held dn * xhat). A block of 32 column
// threads x 16 row groups, group g summing samples g, g + 16, ..., then the groups in order, all
// with compensated additions: plain fp32 sums over 2500 samples (156 per group), whose terms
// largely cancel, were 4.5e-5 off (H200, fp32, hidden 64), over the tolerance rule's 1e-5.
template <typename T>
__global__ void __launch_bounds__(kReduceThreads)
    adaln_reduce_dweight(T* dweight, const float* sample_p, const T* sample_scale, int64_t batch,
                         int hidden) {
  wait_for_previous_grid();  // sample_p is the previous kernel's output
  __shared__ float group_sums[kReduceRowGroups][kReduceColumns];
  const int column = blockIdx.x * kReduceColumns + threadIdx.x;
  float sum = 0.0f;
  float lost = 0.0f;
  if (column < hidden) {
    for (int64_t b = threadIdx.y; b < batch; b += kReduceRowGroups) {
      const int64_t at = b * hidden + column;
      const float factor = sample_scale != nullptr ? 1.0f + load_float(sample_scale, at) : 1.0f;
      add_compensated(sum, lost, sample_p[at] * factor);
    }
  }
  group_sums[threadIdx.y][threadIdx.x] = sum - lost;
  __syncthreads();
  if (threadIdx.y == 0 && column < hidden) {
    float total = 0.0f;
    float total_lost = 0.0f;
#pragma unroll
    for (int g = 0; g < kReduceRowGroups; ++g) {
      add_compensated(total, total_lost, group_sums[g][threadIdx.x]);
    }
    store_float(dweight, column, total - total_lost);
  }
}

}  // namespace tk::adaln
