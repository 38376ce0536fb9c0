// Scalar conversions between float and the 16-bit storage types for CPU kernels.
//
// Both 16-bit types are raw bits (scalar enums over uint16_t, so loops over them stay plain
// integer loops) converted with integer arithmetic and bit-mask selects: no branches and no
// compiler half-precision type. Reason: gcc 12 accepts `_Float16` on x86-64, but without -mf16c
// (binaries are portable, no -march) each conversion is a call into libgcc, which stops the row
// loops from vectorizing. These inline into the loops, gcc vectorizes them with plain SSE2, and
// they give the same bits with any compiler on any target.
//
// float -> 16-bit rounds to nearest, ties to even; NaN stays NaN (quiet), overflow gives inf.
#pragma once

#include <cstdint>
#include <cstring>

namespace tk::cpu {

enum class BFloat16 : uint16_t {};
enum class Float16 : uint16_t {};

inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// `condition ? if_true : if_false` as a bit-mask blend. A ternary lets gcc move the float
// arithmetic of the unused side into a branch, and with the default -ftrapping-math it then
// refuses to vectorize the loop; the blend keeps both sides unconditional.
inline uint32_t blend(bool condition, uint32_t if_true, uint32_t if_false) {
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  return (if_true & mask) | (if_false & ~mask);
}

// ---- bfloat16: the upper half of a float ----

inline float to_float(BFloat16 value) { return bits_float(static_cast<uint32_t>(value) << 16); }

inline BFloat16 bf16_from_float(float value) {
  const uint32_t bits = float_bits(value);
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  // Adding 0x7fff plus the lowest kept bit carries into the kept half exactly when the dropped
  // half is above one half-ulp, or equal to it with an odd kept half.
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (bits >> 16) | 0x40u;
  return static_cast<BFloat16>(blend(is_nan, quiet_nan, rounded));
}

// ---- IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits ----

inline float to_float(Float16 value) {
  const uint32_t h = static_cast<uint32_t>(value);
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  // Subnormals (and zero) are mantissa * 2^-24, exact in float.
  const uint32_t subnormal = float_bits(static_cast<float>(static_cast<int32_t>(mantissa)) * 0x1p-24f);
  const uint32_t normal = ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  const uint32_t inf_or_nan = 0x7f800000u | (mantissa << 13);
  const uint32_t magnitude = blend(exponent == 0, subnormal, blend(exponent == 0x1f, inf_or_nan, normal));
  return bits_float(sign | magnitude);
}

inline Float16 fp16_from_float(float value) {
  const uint32_t bits = float_bits(value);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;

  // |value| < 2^-14 lands in the fp16 subnormal range. Adding 0.5 (whose float ulp is 2^-24, the
  // fp16 subnormal step) lets the FPU round to a multiple of 2^-24 with ties to even; the low
  // mantissa bits of the sum are then the fp16 bits. A result of 0x400 is the smallest normal.
  const float half = 0.5f;
  const uint32_t subnormal = float_bits(bits_float(magnitude) + half) - float_bits(half);

  // Normal range: rebias the exponent, then drop 13 mantissa bits rounding to nearest even.
  // A carry out of the mantissa increments the exponent, which also turns 65520.0 and above into
  // inf (exponent 31, mantissa 0).
  const uint32_t rebiased = magnitude - ((127u - 15u) << 23);
  const uint32_t normal = (rebiased + 0xfffu + ((magnitude >> 13) & 1u)) >> 13;

  const bool is_nan = magnitude > 0x7f800000u;
  const bool overflows = magnitude >= ((127u + 16u) << 23);  // |value| >= 65536, inf included
  const uint32_t special = blend(is_nan, 0x7e00u, 0x7c00u);
  const uint32_t finite = blend(magnitude < (113u << 23), subnormal, normal);
  return static_cast<Float16>(sign | blend(overflows, special, finite));
}

// ---- uniform spelling for templates over the element type ----

inline float to_float(float value) { return value; }

template <typename T>
T from_float(float value);

template <>
inline float from_float<float>(float value) { return value; }

template <>
inline BFloat16 from_float<BFloat16>(float value) { return bf16_from_float(value); }

template <>
inline Float16 from_float<Float16>(float value) { return fp16_from_float(value); }

}  // namespace tk::cpu
