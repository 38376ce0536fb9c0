// GEGLU / SwiGLU and elementwise GELU device code, framework-free (CUDA headers only).
// geglu.h states the math, activation.h computes it, launch_config.h shapes the launches,
// geglu.cu picks and launches.
//
// Every kernel is a single pass: each thread first loads all of its vectors (kVecs of each
// input), then converts, computes in fp32 and stores, so a thread has 2 x kVecs (forward) or
// 3 x kVecs (backward) loads in flight. N is the vector width in elements: 16 bytes, or 1 for
// the scalar path (hidden not a multiple of 16 bytes, or a pointer not 16-byte aligned).
// Offsets are 64-bit throughout (rows * hidden may exceed 2^31).
#pragma once

#include <cstdint>

#include "_common/vec.cuh"
#include "geglu/activation.h"
#include "geglu/launch_config.h"

namespace tk::geglu {

template <typename T>
struct GatedParams {
  T* out;            // forward: y [rows, hidden]; backward: dx [rows, 2 * hidden]
  const T* x;        // [rows, 2 * hidden]
  const T* dy;       // backward: [rows, hidden]; forward: unused
  int64_t rows;
  int64_t hidden;    // a multiple of N
  int64_t a_offset;  // where a starts inside a row of x (and of dx): 0 or hidden
  int64_t b_offset;  // hidden or 0
};

template <typename T>
struct ElementwiseParams {
  T* out;            // forward: y; backward: dx
  const T* x;
  const T* dy;       // backward only
  int64_t num_vecs;  // vectors of N elements
};

// act(a) * b per element.
template <Activation kAct, typename T, int N>
__device__ __forceinline__ Vec<T, N> gated(const Vec<T, N>& a, const Vec<T, N>& b) {
  float fa[N], fb[N];
  to_floats(a, fa);
  to_floats(b, fb);
#pragma unroll
  for (int i = 0; i < N; ++i) fa[i] = activation<kAct>(fa[i], nullptr) * fb[i];
  return from_floats<T>(fa);
}

// da = dy * b * act'(a), db = dy * act(a).
template <Activation kAct, typename T, int N>
__device__ __forceinline__ void gated_grad(const Vec<T, N>& dy, const Vec<T, N>& a,
                                           const Vec<T, N>& b, Vec<T, N>& da, Vec<T, N>& db) {
  float fdy[N], fa[N], fb[N];
  to_floats(dy, fdy);
  to_floats(a, fa);
  to_floats(b, fb);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float grad;
    const float act = activation<kAct>(fa[i], &grad);
    fa[i] = fdy[i] * fb[i] * grad;
    fb[i] = fdy[i] * act;
  }
  da = from_floats<T>(fa);
  db = from_floats<T>(fb);
}

template <Activation kAct, typename T, int N>
__device__ __forceinline__ Vec<T, N> elementwise(const Vec<T, N>& x) {
  float fx[N];
  to_floats(x, fx);
#pragma unroll
  for (int i = 0; i < N; ++i) fx[i] = activation<kAct>(fx[i], nullptr);
  return from_floats<T>(fx);
}

template <Activation kAct, typename T, int N>
__device__ __forceinline__ Vec<T, N> elementwise_grad(const Vec<T, N>& dy, const Vec<T, N>& x) {
  float fdy[N], fx[N];
  to_floats(dy, fdy);
  to_floats(x, fx);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float grad;
    activation<kAct>(fx[i], &grad);
    fx[i] = fdy[i] * grad;
  }
  return from_floats<T>(fx);
}

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> load_or_zero(const Vec<T, N>* base, int64_t v, int64_t end) {
  return v < end ? base[v] : zeros<T, N>();
}

// ---------------------------------------------------------------------------------------------
// Gated: block (tx, ty); thread (i, j) takes row pieces of row blockIdx.y * ty + j (then every
// gridDim.y * ty rows), vectors blockIdx.x * tx * kVecs + i + k * tx for k < kVecs.

template <typename T, int N, int kVecs, Activation kAct>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) geglu_fwd_kernel(GatedParams<T> p) {
  using V = Vec<T, N>;
  const int64_t row_vecs = p.hidden / N;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x * kVecs + threadIdx.x;
  const int64_t row_stride = static_cast<int64_t>(gridDim.y) * blockDim.y;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; row < p.rows;
       row += row_stride) {
    const T* x_row = p.x + row * 2 * p.hidden;
    const V* a = reinterpret_cast<const V*>(x_row + p.a_offset);
    const V* b = reinterpret_cast<const V*>(x_row + p.b_offset);
    V* y = reinterpret_cast<V*>(p.out + row * p.hidden);
    V va[kVecs], vb[kVecs];
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int64_t v = first + static_cast<int64_t>(k) * blockDim.x;
      va[k] = load_or_zero(a, v, row_vecs);
      vb[k] = load_or_zero(b, v, row_vecs);
    }
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int64_t v = first + static_cast<int64_t>(k) * blockDim.x;
      if (v < row_vecs) y[v] = gated<kAct>(va[k], vb[k]);
    }
  }
}

template <typename T, int N, int kVecs, Activation kAct>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) geglu_bwd_kernel(GatedParams<T> p) {
  using V = Vec<T, N>;
  const int64_t row_vecs = p.hidden / N;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x * kVecs + threadIdx.x;
  const int64_t row_stride = static_cast<int64_t>(gridDim.y) * blockDim.y;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; row < p.rows;
       row += row_stride) {
    const T* x_row = p.x + row * 2 * p.hidden;
    T* dx_row = p.out + row * 2 * p.hidden;
    const V* a = reinterpret_cast<const V*>(x_row + p.a_offset);
    const V* b = reinterpret_cast<const V*>(x_row + p.b_offset);
    const V* dy = reinterpret_cast<const V*>(p.dy + row * p.hidden);
    V* da = reinterpret_cast<V*>(dx_row + p.a_offset);
    V* db = reinterpret_cast<V*>(dx_row + p.b_offset);
    V va[kVecs], vb[kVecs], vdy[kVecs];
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int64_t v = first + static_cast<int64_t>(k) * blockDim.x;
      vdy[k] = load_or_zero(dy, v, row_vecs);
      va[k] = load_or_zero(a, v, row_vecs);
      vb[k] = load_or_zero(b, v, row_vecs);
    }
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int64_t v = first + static_cast<int64_t>(k) * blockDim.x;
      if (v < row_vecs) {
        V grad_a, grad_b;
        gated_grad<kAct>(vdy[k], va[k], vb[k], grad_a, grad_b);
        da[v] = grad_a;
        db[v] = grad_b;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Elementwise: 1-D blocks of kThreads; thread i of block g takes vectors
// (g + t * gridDim.x) * kThreads * kVecs + i + k * kThreads.

template <typename T, int N, int kVecs, Activation kAct, bool kBackward>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) gelu_kernel(ElementwiseParams<T> p) {
  using V = Vec<T, N>;
  constexpr int64_t kTile = static_cast<int64_t>(kThreads) * kVecs;
  const V* x = reinterpret_cast<const V*>(p.x);
  const V* dy = reinterpret_cast<const V*>(p.dy);
  V* out = reinterpret_cast<V*>(p.out);
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
       first < p.num_vecs; first += static_cast<int64_t>(gridDim.x) * kTile) {
    V vx[kVecs], vdy[kVecs];
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int64_t v = first + static_cast<int64_t>(k) * kThreads;
      if constexpr (kBackward) vdy[k] = load_or_zero(dy, v, p.num_vecs);
      vx[k] = load_or_zero(x, v, p.num_vecs);
    }
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int64_t v = first + static_cast<int64_t>(k) * kThreads;
      if (v < p.num_vecs) {
        if constexpr (kBackward) {
          out[v] = elementwise_grad<kAct>(vdy[k], vx[k]);
        } else {
          out[v] = elementwise<kAct>(vx[k]);
        }
      }
    }
  }
}

}  // namespace tk::geglu
