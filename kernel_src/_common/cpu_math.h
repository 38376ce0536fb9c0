// What the CPU kernels' hot loops share: function clones per x86-64 level, and exp in plain
// arithmetic the compiler vectorizes (std::exp / expf are scalar calls).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

// A function marked TK_CPU_CLONES is compiled three times, for the x86-64 baseline the package
// targets (SSE2), for x86-64-v3 (AVX2, FMA) and for x86-64-v4 (AVX-512), and GCC's ifunc
// resolver picks one when the library loads. Helpers it calls must be TK_CPU_INLINE to be
// compiled for the clone's target too. An OpenMP region's body is outlined into a function of
// its own, so the clone goes on the function the loop calls, not on the one holding the
// pragma. (FlashAttention, 2-core AVX-512 machine: the v4 clone took the fp32 forward
// [1, 1024, 8, 64] from 22.3 to 12.7 ms against the v3 clone.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TK_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TK_CPU_CLONES
#endif
#define TK_CPU_INLINE inline __attribute__((always_inline))

namespace tk::cpu {

// Whether this CPU takes the x86-64-v4 clone: code inlined into every clone can pick the
// register tiling that only AVX-512's 32 vector registers hold. GCC names the level in
// __builtin_cpu_supports from version 12; older compilers keep the narrow tiling.
TK_CPU_INLINE bool runs_x86_64_v4() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  return __builtin_cpu_supports("x86-64-v4");
#else
  return false;
#endif
}

// exp(x): x = n ln 2 + r with |r| <= ln 2 / 2, exp(r) by its degree-6 Taylor polynomial, times
// 2^n built in the exponent bits. Relative error at most 2.6e-7 against double exp over
// [-87, 88] (steps of 1e-4). Below -87 (2^n would leave the normal range) it returns 0, exp's
// true value being under 1.7e-38 there; above 88 it returns inf (the true value is over 1.6e38,
// and only 1 / (1 + exp) uses that side: 0 either way); -inf gives 0, NaN stays NaN.
TK_CPU_INLINE float exp_approx(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;  // ln 2 = kLn2High + kLn2Low, kLn2High exact
  constexpr float kLn2Low = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float clamped = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (clamped * kLog2e + kRound) - kRound;
  const float r = (clamped - n * kLn2High) - n * kLn2Low;
  float poly = 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float value = x > 88.0f ? std::numeric_limits<float>::infinity() : poly * scale;
  return x < -87.0f ? 0.0f : value;
}

}  // namespace tk::cpu
