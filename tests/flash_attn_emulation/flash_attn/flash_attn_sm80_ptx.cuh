// Stands in for kernel_src/flash_attn/flash_attn_sm80_ptx.cuh (this directory comes first on
// the include path): the same functions, computed on the host from the PTX ISA's definitions of
// ldmatrix and mma.m16n8k16. cp.async copies at once (its wait is then a no-op).
#pragma once

#include "emu_runtime.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "_common/vec.cuh"

namespace tk::flash_attn::sm80 {

using std::max;
using std::min;

inline void cp_async_16(void* dst, const void* src, bool valid) {
  if (valid) {
    std::memcpy(dst, src, 16);
  } else {
    std::memset(dst, 0, 16);
  }
}

inline void cp_async_commit() {}

// ex2.approx.ftz.f32: subnormal inputs read as 0 and subnormal results are flushed to 0 (the
// approximation's own error, at most 2 ulp, is not modelled).
inline float exp2_ftz(float x) {
  const float y = std::exp2(std::fpclassify(x) == FP_SUBNORMAL ? 0.0f : x);
  return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}

template <int kPending>
inline void cp_async_wait() {}

// Element `index` (16-bit) of the row at `address`.
inline uint32_t element16(uint64_t address, int index) {
  uint16_t bits;
  std::memcpy(&bits, reinterpret_cast<const char*>(address) + 2 * index, 2);
  return bits;
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  uint64_t mine[emu::kWords] = {reinterpret_cast<uint64_t>(row)};
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  const int lane = threadIdx.x % 32;
  for (int m = 0; m < 4; ++m) {
    const uint64_t address = all[8 * m + lane / 4][0];
    r[m] = element16(address, 2 * (lane % 4)) | element16(address, 2 * (lane % 4) + 1) << 16;
  }
}

inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  uint64_t mine[emu::kWords] = {reinterpret_cast<uint64_t>(row)};
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  const int lane = threadIdx.x % 32;
  for (int m = 0; m < 4; ++m) {
    const uint64_t low = all[8 * m + 2 * (lane % 4)][0];
    const uint64_t high = all[8 * m + 2 * (lane % 4) + 1][0];
    r[m] = element16(low, lane / 4) | element16(high, lane / 4) << 16;
  }
}

template <typename T>
inline float half_of(uint64_t word, int which) {
  const uint16_t bits = static_cast<uint16_t>(which ? word >> 16 : word & 0xffff);
  T value;
  std::memcpy(&value, &bits, 2);
  return static_cast<float>(value);
}

template <typename T>
inline void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  uint64_t mine[emu::kWords] = {a[0], a[1], a[2], a[3], b0, b1};
  uint64_t all[32][emu::kWords];
  emu::exchange(mine, all);
  // A (16 x 16): register (row >= 8) + 2 (k >= 8) of lane 4 (row % 8) + (k % 8) / 2.
  // B (16 x 8): register 4 + (k >= 8) of lane 4 n + (k % 8) / 2.
  const auto a_at = [&](int row, int k) {
    return half_of<T>(all[4 * (row % 8) + (k % 8) / 2][(row >= 8) + 2 * (k >= 8)], k % 2);
  };
  const auto b_at = [&](int k, int n) {
    return half_of<T>(all[4 * n + (k % 8) / 2][4 + (k >= 8)], k % 2);
  };
  const int lane = threadIdx.x % 32;
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + 8 * (e / 2);
    const int col = 2 * (lane % 4) + (e & 1);
    float sum = 0.0f;
    for (int k = 0; k < 16; ++k) sum += a_at(row, k) * b_at(k, col);
    c[e] += sum;
  }
}

template <typename T>
inline uint32_t pack2(float lo, float hi) {
  const float pair[2] = {lo, hi};
  return from_floats<T>(pair).words[0];
}

}  // namespace tk::flash_attn::sm80
