// Vector access and fp32 conversion for the three element types (float, __half,
// __nv_bfloat16). Framework-free: CUDA headers only.
//
// A Vec<T, N> moves N elements with one load or store of sizeof(T) * N bytes; with 16 bytes
// that is one 128-bit instruction (LDG.E.128 / STG.E.128), the widest a thread can issue.
// Conversions go through bf16x2 / half2 pairs: on sm_80+ one cvt packs two floats.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace tk {

// Same-size reinterpretation of a value (std::bit_cast is C++20).
template <typename To, typename From>
__device__ __forceinline__ To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "same size only");
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
}

// N elements of T (N a power of two) moved as one access of sizeof(T) * N bytes; the
// alignment equals the size, which lets the compiler emit a single wide access, and the
// caller guarantees the address is that aligned. The bits are stored as whole 32-bit words
// (a bf16 / fp16 pair per word) wherever the vector has any: with element-wise storage the
// compiler split pairs into 16-bit halves and re-packed them with PRMT, which doubled the
// registers (ptxas spilled the bf16 kernels at 64 registers).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  using Word = std::conditional_t<(sizeof(T) * N >= 4), uint32_t, uint16_t>;
  static constexpr int kWords = static_cast<int>(sizeof(T) * N / sizeof(Word));
  Word words[kWords];
};

// Elements per 16-byte vector: 4 for fp32, 8 for fp16 / bf16.
template <typename T>
inline constexpr int kElemsPer16Bytes = 16 / static_cast<int>(sizeof(T));

template <typename T>
inline constexpr bool kIsSupportedElement =
    std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

template <typename T, int N>
__device__ __forceinline__ void to_floats(const Vec<T, N>& in, float (&out)[N]) {
  static_assert(kIsSupportedElement<T>, "float, __half or __nv_bfloat16");
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = __uint_as_float(in.words[i]);
  } else if constexpr (N == 1) {
    out[0] = std::is_same_v<T, __half> ? __half2float(bit_cast<__half>(in.words[0]))
                                       : __bfloat162float(bit_cast<__nv_bfloat16>(in.words[0]));
  } else if constexpr (std::is_same_v<T, __half>) {
#pragma unroll
    for (int w = 0; w < N / 2; ++w) {
      const float2 pair = __half22float2(bit_cast<__half2>(in.words[w]));
      out[2 * w] = pair.x;
      out[2 * w + 1] = pair.y;
    }
  } else {
    // bf16 is the upper half of an fp32: widening is a shift or a mask (low element first).
#pragma unroll
    for (int w = 0; w < N / 2; ++w) {
      out[2 * w] = __uint_as_float(in.words[w] << 16);
      out[2 * w + 1] = __uint_as_float(in.words[w] & 0xffff0000u);
    }
  }
}

// Round to nearest even, the rounding PyTorch uses for .to(dtype).
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> from_floats(const float (&in)[N]) {
  static_assert(kIsSupportedElement<T>, "float, __half or __nv_bfloat16");
  Vec<T, N> out;
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int i = 0; i < N; ++i) out.words[i] = __float_as_uint(in[i]);
  } else if constexpr (N == 1) {
    out.words[0] = std::is_same_v<T, __half> ? bit_cast<uint16_t>(__float2half_rn(in[0]))
                                             : bit_cast<uint16_t>(__float2bfloat16_rn(in[0]));
  } else if constexpr (std::is_same_v<T, __half>) {
#pragma unroll
    for (int w = 0; w < N / 2; ++w) {
      out.words[w] = bit_cast<uint32_t>(__floats2half2_rn(in[2 * w], in[2 * w + 1]));
    }
  } else {
#pragma unroll
    for (int w = 0; w < N / 2; ++w) {
      out.words[w] = bit_cast<uint32_t>(__floats2bfloat162_rn(in[2 * w], in[2 * w + 1]));
    }
  }
  return out;
}

// Every element equal to `value`, rounded to T (0 and 1 are exact in every type). One
// conversion, copied to every word.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> filled(float value) {
  constexpr int kElemsPerWord = N / Vec<T, N>::kWords;
  float word_values[kElemsPerWord];
#pragma unroll
  for (int i = 0; i < kElemsPerWord; ++i) word_values[i] = value;
  const auto word = from_floats<T>(word_values).words[0];
  Vec<T, N> out;
#pragma unroll
  for (int w = 0; w < Vec<T, N>::kWords; ++w) out.words[w] = word;
  return out;
}

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> zeros() {
  Vec<T, N> out;
#pragma unroll
  for (int w = 0; w < Vec<T, N>::kWords; ++w) out.words[w] = 0;
  return out;
}

// Writes N floats to `dst`, in 16-byte pieces where N allows. `dst` must be aligned to
// min(N, 4) * 4 bytes.
template <int N>
__device__ __forceinline__ void store_floats(float* dst, const float (&values)[N]) {
  constexpr int kPiece = N < 4 ? N : 4;
#pragma unroll
  for (int i = 0; i < N; i += kPiece) {
    float piece[kPiece];
#pragma unroll
    for (int j = 0; j < kPiece; ++j) piece[j] = values[i + j];
    *reinterpret_cast<Vec<float, kPiece>*>(dst + i) = from_floats<float>(piece);
  }
}

// Adds N floats read from `src` into `values`; same alignment rule as store_floats.
template <int N>
__device__ __forceinline__ void add_floats(float (&values)[N], const float* src) {
  constexpr int kPiece = N < 4 ? N : 4;
#pragma unroll
  for (int i = 0; i < N; i += kPiece) {
    float piece[kPiece];
    to_floats(*reinterpret_cast<const Vec<float, kPiece>*>(src + i), piece);
#pragma unroll
    for (int j = 0; j < kPiece; ++j) values[i + j] += piece[j];
  }
}

// The same values as to_floats, computed with different instructions for bf16 (byte permutes
// instead of shift and mask). A kernel that widens a vector before a reduction and again after
// it uses this for the second widening: the compiler cannot tell that the two results are
// equal, so it keeps the packed words alive across the reduction rather than the first
// widening's floats, which take twice the registers. Measured on sm_90 with 768 threads per SM
// (85 registers at most): the bf16 RMSNorm backward spilled 32 bytes without it, none with it.
template <typename T, int N>
__device__ __forceinline__ void to_floats_again(const Vec<T, N>& in, float (&out)[N]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> && N % 2 == 0) {
#pragma unroll
    for (int w = 0; w < N / 2; ++w) {
      out[2 * w] = __uint_as_float(__byte_perm(in.words[w], 0u, 0x1044));
      out[2 * w + 1] = __uint_as_float(__byte_perm(in.words[w], 0u, 0x3244));
    }
  } else {
    to_floats(in, out);
  }
}

}  // namespace tk
