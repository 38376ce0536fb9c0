// The fp32 math of every activation, written once for the CUDA kernels (device) and the CPU
// kernels (host); geglu_triton.py spells the same formulas in Triton. Framework-free.
//
// GELU-tanh is computed through the identity 0.5 * (1 + tanh(u)) = sigmoid(2u):
//   gelu_tanh(a)  = a * s,  s = sigmoid(z),  z = 2 sqrt(2/pi) (a + 0.044715 a^3)
//   gelu_tanh'(a) = s + a s (1 - s) dz/da,   dz/da = 2 sqrt(2/pi) (1 + 3 * 0.044715 a^2)
// It needs only exp and a division, which every backend has (Triton has no portable tanh),
// and it stays finite at both tails (s -> 0 or 1, no inf - inf). The error is that of expf
// plus a few roundings: on CUDA expf and erff are within 2 ulp (CUDA C Programming Guide,
// "Mathematical Functions"; no fast-math flags are used) and the sigmoid's division is
// __fdividef (2 ulp); on the CPU exp is cpu::exp_approx (2.6e-7 relative, arithmetic the loops
// vectorize), erf glibc's erff, the division IEEE. Against a float64 reference, y is within
// about 1e-6 relative in fp32; bf16/fp16 outputs are rounded once.
//   gelu(a)  = 0.5 a (1 + erf(a / sqrt(2))),  gelu'(a) = 0.5 (1 + erf(a / sqrt(2))) + a phi(a)
//   silu(a)  = a s,  s = sigmoid(a),          silu'(a) = s (1 + a (1 - s))
#pragma once

#include <cmath>

#include "_common/cpu_math.h"
#include "geglu/geglu.h"

#if defined(__CUDACC__)
#define TK_GEGLU_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TK_GEGLU_HOST_DEVICE inline
#endif

namespace tk::geglu {

inline constexpr float kTwoSqrtTwoOverPi = 1.5957691216057308f;  // 2 * sqrt(2 / pi)
inline constexpr float kGeluTanhCubic = 0.044715f;
inline constexpr float kSqrtHalf = 0.70710678118654752f;         // 1 / sqrt(2)
inline constexpr float kInvSqrtTwoPi = 0.39894228040143268f;     // 1 / sqrt(2 pi)

TK_GEGLU_HOST_DEVICE float exp_of(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return cpu::exp_approx(x);
#endif
}

TK_GEGLU_HOST_DEVICE float sigmoid(float z) {
#if defined(__CUDA_ARCH__)
  // __fdividef is a reciprocal (MUFU.RCP) and a multiply, within 2 ulp, like Triton's fp32
  // division; IEEE division adds Newton steps and a slow-path branch per element (sm_90 SASS:
  // 25% more instructions in the bf16 GELU-tanh forward). For 1 + exp(-z) above 2^126 (z below
  // -87.3) it returns 0, the limit of a true value under 2^-126.
  return __fdividef(1.0f, 1.0f + expf(-z));
#else
  return 1.0f / (1.0f + exp_of(-z));
#endif
}

// act(a) and, when `grad` is not null, act'(a).
template <Activation kAct>
TK_GEGLU_HOST_DEVICE float activation(float a, float* grad) {
  if constexpr (kAct == Activation::kGeluTanh) {
    const float a2 = a * a;
    const float s = sigmoid(kTwoSqrtTwoOverPi * a * (1.0f + kGeluTanhCubic * a2));
    if (grad != nullptr) {
      *grad = s + a * s * (1.0f - s) * (kTwoSqrtTwoOverPi * (1.0f + 3.0f * kGeluTanhCubic * a2));
    }
    return a * s;
  } else if constexpr (kAct == Activation::kGelu) {
    const float cdf = 0.5f * (1.0f + erff(a * kSqrtHalf));
    if (grad != nullptr) *grad = cdf + a * kInvSqrtTwoPi * exp_of(-0.5f * a * a);
    return a * cdf;
  } else {
    const float s = sigmoid(a);
    if (grad != nullptr) *grad = s * (1.0f + a * (1.0f - s));
    return a * s;
  }
}

}  // namespace tk::geglu

#undef TK_GEGLU_HOST_DEVICE
