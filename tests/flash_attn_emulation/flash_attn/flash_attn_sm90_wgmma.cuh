// Stands in for the generated kernel_src/flash_attn/flash_attn_sm90_wgmma.cuh: wgmma m64nNk16
// with fp32 accumulators, computed on the host from the PTX ISA's definitions. The 128 threads
// of the warpgroup exchange their operands; each then computes its own accumulator elements
// (warp w, lane 4g + t: rows 16w + g (+ 8), columns 8n + 2t (+ 1)), and all wait until every
// thread is done, as the asynchronous instruction completes for the warpgroup as a whole.
// Shared-memory operands are read through the descriptor (start address, leading and stride
// byte offsets) and the 128-byte swizzle:
//   K-major (A; B without transpose): element (row, k) at start + (row / 8) * SBO +
//     (row % 8) * 128 + 2k.
//   N-major (B transposed): element (k, n) at start + (n / 64) * LBO + (k / 8) * SBO +
//     (k % 8) * 128 + 2 (n % 64).
// A from registers is the mma.m16n8k16 A fragment of each warp's 16 rows.
#pragma once

#include "emu_runtime.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "flash_attn/flash_attn_sm80_ptx.cuh"
#include "flash_attn/flash_attn_sm90_ptx.cuh"

namespace tk::flash_attn::sm90 {

struct Descriptor {
  uint32_t start;
  uint32_t leading;
  uint32_t stride;
};

inline Descriptor decode(uint64_t d) {
  return {static_cast<uint32_t>(d & 0x3FFF) << 4, static_cast<uint32_t>((d >> 16) & 0x3FFF) << 4,
          static_cast<uint32_t>((d >> 32) & 0x3FFF) << 4};
}

template <typename T>
inline float shared_element(uint32_t address) {
  T value;
  std::memcpy(&value, smem_raw + swizzled(address), 2);
  return static_cast<float>(value);
}

template <typename T>
inline float k_major(const Descriptor& d, int row, int k) {
  return shared_element<T>(d.start + (row / 8) * d.stride + (row % 8) * 128 + 2 * k);
}

template <typename T>
inline float n_major(const Descriptor& d, int k, int n) {
  return shared_element<T>(d.start + (n / 64) * d.leading + (k / 8) * d.stride + (k % 8) * 128 +
                           2 * (n % 64));
}

// d (+)= A B for this thread's elements; a_at(row, k) and b_at(k, n) read the operands.
template <int kTiles, class AAt, class BAt>
inline void multiply(float (&d)[kTiles][4], bool accumulate, AAt a_at, BAt b_at) {
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  for (int n = 0; n < kTiles; ++n) {
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + lane / 4 + 8 * (e / 2);
      const int col = 8 * n + 2 * (lane % 4) + (e & 1);
      float sum = 0.0f;
      for (int k = 0; k < 16; ++k) sum += a_at(row, k) * b_at(k, col);
      d[n][e] = accumulate ? d[n][e] + sum : sum;
    }
  }
  // The instruction completes for the warpgroup as a whole: no thread goes on (and, say,
  // releases the shared memory it read) while another still reads its operands.
  emu::block->warpgroups[threadIdx.x / 128].barrier.arrive_and_wait();
}

// Both operands from shared memory: A K-major, B K-major or (kBNMajor) N-major.
template <typename T, bool kBNMajor, int kTiles>
inline void wgmma_from_shared(float (&d)[kTiles][4], uint64_t a, uint64_t b, bool accumulate) {
  // Every thread passes the same descriptors; the exchange is the instruction's rendezvous.
  uint64_t mine[emu::kWords] = {a, b};
  uint64_t all[128][emu::kWords];
  emu::exchange_warpgroup(mine, all);
  const Descriptor da = decode(a);
  const Descriptor db = decode(b);
  multiply(d, accumulate, [&](int row, int k) { return k_major<T>(da, row, k); },
           [&](int k, int n) { return kBNMajor ? n_major<T>(db, k, n) : k_major<T>(db, n, k); });
}

template <typename T, int kTiles>
inline void wgmma_ss(float (&d)[kTiles][4], uint64_t a, uint64_t b, bool accumulate) {
  wgmma_from_shared<T, false>(d, a, b, accumulate);
}

template <typename T, int kTiles>
inline void wgmma_ss_b_nmajor(float (&d)[kTiles][4], uint64_t a, uint64_t b, bool accumulate) {
  wgmma_from_shared<T, true>(d, a, b, accumulate);
}

// A from registers, B N-major (kBNMajor) or K-major.
template <typename T, bool kBNMajor, int kTiles>
inline void wgmma_from_registers(float (&d)[kTiles][4], const uint32_t (&a)[4], uint64_t b,
                                 bool accumulate) {
  uint64_t mine[emu::kWords] = {a[0], a[1], a[2], a[3], b};
  uint64_t all[128][emu::kWords];
  emu::exchange_warpgroup(mine, all);
  const Descriptor db = decode(b);
  // Row r of the 64: warp r / 16; within it the mma A fragment: register (r % 16 >= 8) +
  // 2 (k >= 8) of lane 4 (r % 8) + (k % 8) / 2, half k % 2.
  const auto a_at = [&](int row, int k) {
    const int thread = 32 * (row / 16) + 4 * (row % 8) + (k % 8) / 2;
    return sm80::half_of<T>(all[thread][(row % 16 >= 8) + 2 * (k >= 8)], k % 2);
  };
  multiply(d, accumulate, a_at,
           [&](int k, int n) { return kBNMajor ? n_major<T>(db, k, n) : k_major<T>(db, n, k); });
}

template <typename T, int kTiles>
inline void wgmma_rs(float (&d)[kTiles][4], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
  wgmma_from_registers<T, true>(d, a, b, accumulate);
}

template <typename T, int kTiles>
inline void wgmma_rs_b_kmajor(float (&d)[kTiles][4], const uint32_t (&a)[4], uint64_t b,
                              bool accumulate) {
  wgmma_from_registers<T, false>(d, a, b, accumulate);
}

}  // namespace tk::flash_attn::sm90
