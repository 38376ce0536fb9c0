// RoPE device code, 1D and 3D in one kernel: framework-free (CUDA headers only). rope.h states
// the math; rope.cu picks the vector width and launch shape.
//
// A block takes tokens_per_block tokens. First its threads fill a shared-memory table of
// (cos, sin) per (token, pair): read from the 1D tables (each row once per block, however many
// heads use it) or computed from the 3D grid coordinates (each angle once per block). Then each
// thread keeps one group of kPairs pairs of one token (its cos / sin in registers) and walks the
// heads of q and k (hl, hl + head_lanes, ...), kUnroll heads per step: all loads of a step are
// issued before the first store, so several 16-byte accesses per thread are in flight.
//
// An access moves kAccess elements (16 bytes down to one element: rope.cu picks the widest
// that every pointer, stride and band boundary allows). A group of kPairs pairs is
//   rotate-half: kPairs elements of a band's first half and the kPairs elements d_a / 2 later
//                (kPairs == kAccess: one access each);
//   interleaved: 2 * kPairs consecutive elements (kPairs == kAccess / 2: one access; with
//                kAccess == 1, one pair in two scalar accesses).
// Offsets inside a head are int; row offsets are 64-bit.
#pragma once

#include <cstdint>

#include "_common/vec.cuh"

namespace tk::rope {

inline constexpr int kMaxBandsDevice = 3;

template <typename T>
struct DeviceRows {
  T* out;
  const T* in;
  int heads;
  int64_t in_stride_batch, in_stride_seq, in_stride_head;
  int64_t out_stride_batch, out_stride_seq, out_stride_head;
};

struct DeviceTable {
  const void* cos;
  const void* sin;
  bool fp32;
  int64_t cos_stride_batch, cos_stride_row, sin_stride_batch, sin_stride_row;
  const void* positions;  // nullptr: row = s
  bool positions_int64;
  int64_t positions_stride_batch, positions_stride_seq;
  int64_t rows;
};

struct DeviceGrid {
  int height, width;  // H and W of the T x H x W grid (T is implied by seq)
  float scale[kMaxBandsDevice];
  double log2_theta;
};

template <typename T>
struct Params {
  DeviceRows<T> q, k;       // k.heads == 0: no k
  int64_t tokens;           // batch * seq
  int64_t seq;
  int head_dim, rot_dim;
  int num_pairs;            // rot_dim / 2
  int num_bands;
  int band_pair_start[kMaxBandsDevice];
  int band_pairs[kMaxBandsDevice];
  float sin_sign;           // -1 when conjugate
  bool copy_tail;           // not in place and rot_dim < head_dim
  int tokens_per_block, item_lanes, head_lanes;
  bool from_grid;
  DeviceTable table;
  DeviceGrid grid;
};

template <bool kInterleaved, int kAccess>
inline constexpr int kPairsPerGroup = kInterleaved ? (kAccess >= 2 ? kAccess / 2 : 1) : kAccess;

// Heads per unrolled step: about eight accesses in flight per thread.
template <bool kInterleaved, int kAccess>
inline constexpr int kUnroll = 8 / (2 * kPairsPerGroup<kInterleaved, kAccess> / kAccess);

// Band of a pair, and per-band values picked with selects: an array indexed by a runtime band
// would live in local memory.
__device__ __forceinline__ int band_of(int pair, int num_bands, const int (&start)[kMaxBandsDevice]) {
  int band = 0;
#pragma unroll
  for (int a = 1; a < kMaxBandsDevice; ++a) band += (a < num_bands && pair >= start[a]) ? 1 : 0;
  return band;
}

template <typename V>
__device__ __forceinline__ V pick(int band, const V (&values)[kMaxBandsDevice]) {
  return band == 0 ? values[0] : (band == 1 ? values[1] : values[2]);
}

// ---------------------------------------------------------------------------------------------
// Angles

template <typename T>
__device__ __forceinline__ float load_table(const void* table, bool fp32, int64_t index) {
  if (fp32) return static_cast<const float*>(table)[index];
  float value[1];
  to_floats(*reinterpret_cast<const Vec<T, 1>*>(static_cast<const T*>(table) + index), value);
  return value[0];
}

template <typename T>
__device__ __forceinline__ float2 table_angle(const Params<T>& p, int64_t b, int64_t s, int pair) {
  const DeviceTable& t = p.table;
  int64_t row = s;
  int64_t batch = b;
  if (t.positions != nullptr) {
    const int64_t at = b * t.positions_stride_batch + s * t.positions_stride_seq;
    row = t.positions_int64 ? static_cast<const int64_t*>(t.positions)[at]
                            : static_cast<const int32_t*>(t.positions)[at];
    batch = 0;
    // Out-of-range positions are the caller's contract; they never read outside the table and
    // make the token's output NaN, which cannot pass for a plausible value.
    if (row < 0 || row >= t.rows) {
      const float nan = __int_as_float(0x7fc00000);
      return make_float2(nan, nan);
    }
  }
  const float cos_value =
      load_table<T>(t.cos, t.fp32, batch * t.cos_stride_batch + row * t.cos_stride_row + pair);
  const float sin_value =
      load_table<T>(t.sin, t.fp32, batch * t.sin_stride_batch + row * t.sin_stride_row + pair);
  return make_float2(cos_value, sin_value);
}

template <typename T>
__device__ __forceinline__ float2 grid_angle(const Params<T>& p, int s, int pair) {
  const DeviceGrid& g = p.grid;
  // 32-bit: s < batch * seq < 2^31 (rope.cu checks); a 64-bit division is a ~70-instruction
  // software routine, and the fill does three per angle.
  const int plane = g.height * g.width;
  const int coords[kMaxBandsDevice] = {s / plane, (s / g.width) % g.height, s % g.width};
  const int band = band_of(pair, p.num_bands, p.band_pair_start);
  const int local = pair - pick(band, p.band_pair_start);
  // theta^(-2i / d_a) = 2^(-(i / (d_a / 2)) * log2(theta)), in double and rounded once to fp32:
  // the same fp32 frequency the reference builds with torch in fp64.
  const float inv_freq = static_cast<float>(
      exp2(-static_cast<double>(local) / static_cast<double>(pick(band, p.band_pairs)) * g.log2_theta));
  const float position = static_cast<float>(pick(band, coords)) * pick(band, g.scale);
  const float angle = position * inv_freq;
  // sincosf, not __sinf / __cosf: the fast intrinsics are accurate only near [-pi, pi] and
  // positions times frequencies reach hundreds of radians (a frame or width index of 100+ at
  // frequency 1). sincosf reduces the argument exactly. (No --use_fast_math in this build,
  // which would silently swap them.)
  float sin_value, cos_value;
  sincosf(angle, &sin_value, &cos_value);
  return make_float2(cos_value, sin_value);
}

// Fills angles[tok * num_pairs + pair] = (cos, sin * sin_sign) for this block's tokens.
template <typename T>
__device__ __forceinline__ void fill_angles(const Params<T>& p, int64_t first_token, float2* angles) {
  const int count = p.tokens_per_block * p.num_pairs;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int tok = i / p.num_pairs;
    const int pair = i - tok * p.num_pairs;
    const int64_t token = first_token + tok;
    if (token >= p.tokens) break;  // later i belong to later tokens
    // 32-bit, as in grid_angle: tokens < 2^31.
    const int b = static_cast<int>(token) / static_cast<int>(p.seq);
    const int s = static_cast<int>(token) - b * static_cast<int>(p.seq);
    float2 angle = p.from_grid ? grid_angle(p, s, pair) : table_angle(p, b, s, pair);
    angle.y *= p.sin_sign;
    angles[i] = angle;
  }
}

// ---------------------------------------------------------------------------------------------
// Pair groups

// Element offsets (inside a head) of the group's accesses. Rotate-half: the first
// kAccesses / 2 accesses cover the band's first half, the rest the second half.
template <bool kInterleaved, int kAccess>
struct GroupOffsets {
  static constexpr int kPairs = kPairsPerGroup<kInterleaved, kAccess>;
  static constexpr int kAccesses = 2 * kPairs / kAccess;
  int first;   // interleaved: element 2 * pair0; rotate-half: E_a + i
  int second;  // rotate-half: E_a + d_a / 2 + i; unused when interleaved

  __device__ __forceinline__ int of(int access) const {
    if constexpr (kInterleaved) {
      return first + access * kAccess;
    } else {
      constexpr int kHalf = kAccesses / 2;
      return access < kHalf ? first + access * kAccess : second + (access - kHalf) * kAccess;
    }
  }
};

template <bool kInterleaved, int kAccess>
__device__ __forceinline__ GroupOffsets<kInterleaved, kAccess> group_offsets(
    int pair0, int num_bands, const int (&band_start)[kMaxBandsDevice],
    const int (&band_pairs)[kMaxBandsDevice]) {
  if constexpr (kInterleaved) {
    return {2 * pair0, 0};
  } else {
    const int band = band_of(pair0, num_bands, band_start);
    const int start = pick(band, band_start);
    const int first = 2 * start + (pair0 - start);
    return {first, first + pick(band, band_pairs)};
  }
}

// The pair rotation itself, shared by 1D and 3D: y1 = x1 c - x2 s, y2 = x2 c + x1 s, on the
// flat fp32 values of one group (interleaved: x1 = f[2i], x2 = f[2i + 1]; rotate-half:
// x1 = f[i], x2 = f[kPairs + i]).
template <bool kInterleaved, int kPairs>
__device__ __forceinline__ void rotate_group(float (&f)[2 * kPairs], const float (&c)[kPairs],
                                             const float (&s)[kPairs]) {
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    const int i1 = kInterleaved ? 2 * i : i;
    const int i2 = kInterleaved ? 2 * i + 1 : kPairs + i;
    const float x1 = f[i1];
    const float x2 = f[i2];
    f[i1] = x1 * c[i] - x2 * s[i];
    f[i2] = x2 * c[i] + x1 * s[i];
  }
}

template <typename T, int kAccess, int kAccesses>
__device__ __forceinline__ void widen(const Vec<T, kAccess> (&raw)[kAccesses],
                                      float (&f)[kAccess * kAccesses]) {
#pragma unroll
  for (int a = 0; a < kAccesses; ++a) {
    float piece[kAccess];
    to_floats(raw[a], piece);
#pragma unroll
    for (int e = 0; e < kAccess; ++e) f[a * kAccess + e] = piece[e];
  }
}

template <typename T, int kAccess, int kAccesses>
__device__ __forceinline__ void narrow(const float (&f)[kAccess * kAccesses],
                                       Vec<T, kAccess> (&raw)[kAccesses]) {
#pragma unroll
  for (int a = 0; a < kAccesses; ++a) {
    float piece[kAccess];
#pragma unroll
    for (int e = 0; e < kAccess; ++e) piece[e] = f[a * kAccess + e];
    raw[a] = from_floats<T>(piece);
  }
}

// Head h of the combined list (q heads, then k heads) of token (b, s).
template <typename T>
struct HeadRef {
  const T* in;
  T* out;
};

template <typename T>
__device__ __forceinline__ HeadRef<T> head_ref(const Params<T>& p, int64_t b, int64_t s, int h) {
  const bool is_q = h < p.q.heads;
  const DeviceRows<T>& r = is_q ? p.q : p.k;
  const int64_t head = is_q ? h : h - p.q.heads;
  return {r.in + b * r.in_stride_batch + s * r.in_stride_seq + head * r.in_stride_head,
          r.out + b * r.out_stride_batch + s * r.out_stride_seq + head * r.out_stride_head};
}

// ---------------------------------------------------------------------------------------------
// The kernel

// Blocks have at most kMaxBlockThreads threads (rope.cu). Three blocks per SM leave 85 registers
// a thread: the unrolled step holds 8 accesses (32 registers of 16-bit data), their fp32 cos and
// sin and one widened group.
inline constexpr int kMaxBlockThreads = 256;
inline constexpr int kMinBlocksPerSm = 3;

// Loads heads h0, h0 + head_lanes, ... (kSteps of them, those that exist) of one group.
template <typename T, int kAccess, bool kInterleaved, int kSteps>
__device__ __forceinline__ void load_step(
    const Params<T>& p, int64_t b, int64_t s, int h0, const GroupOffsets<kInterleaved, kAccess>& offsets,
    Vec<T, kAccess> (&raw)[kSteps][GroupOffsets<kInterleaved, kAccess>::kAccesses]) {
  const int total_heads = p.q.heads + p.k.heads;
#pragma unroll
  for (int u = 0; u < kSteps; ++u) {
    const int h = h0 + u * p.head_lanes;
    if (h < total_heads) {
      const T* in = head_ref(p, b, s, h).in;
#pragma unroll
      for (int a = 0; a < GroupOffsets<kInterleaved, kAccess>::kAccesses; ++a) {
        raw[u][a] = *reinterpret_cast<const Vec<T, kAccess>*>(in + offsets.of(a));
      }
    }
  }
}

template <typename T, int kAccess, bool kInterleaved, int kSteps>
__device__ __forceinline__ void rotate_step(
    const Params<T>& p, int64_t b, int64_t s, int h0, const GroupOffsets<kInterleaved, kAccess>& offsets,
    const float2* group_angles,
    Vec<T, kAccess> (&raw)[kSteps][GroupOffsets<kInterleaved, kAccess>::kAccesses]) {
  constexpr int kPairs = GroupOffsets<kInterleaved, kAccess>::kPairs;
  float c[kPairs], sn[kPairs];
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    const float2 angle = group_angles[i];
    c[i] = angle.x;
    sn[i] = angle.y;
  }
  const int total_heads = p.q.heads + p.k.heads;
#pragma unroll
  for (int u = 0; u < kSteps; ++u) {
    const int h = h0 + u * p.head_lanes;
    if (h < total_heads) {
      float f[2 * kPairs];
      widen(raw[u], f);
      rotate_group<kInterleaved>(f, c, sn);
      narrow(f, raw[u]);
      T* out = head_ref(p, b, s, h).out;
#pragma unroll
      for (int a = 0; a < GroupOffsets<kInterleaved, kAccess>::kAccesses; ++a) {
        *reinterpret_cast<Vec<T, kAccess>*>(out + offsets.of(a)) = raw[u][a];
      }
    }
  }
}

template <typename T, int kAccess, bool kInterleaved>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlocksPerSm) rope_kernel(Params<T> p) {
  using Offsets = GroupOffsets<kInterleaved, kAccess>;
  constexpr int kPairs = Offsets::kPairs;
  constexpr int kSteps = kUnroll<kInterleaved, kAccess>;
  using V = Vec<T, kAccess>;

  extern __shared__ float2 angles[];  // [tokens_per_block][num_pairs]
  const int64_t first_token = static_cast<int64_t>(blockIdx.x) * p.tokens_per_block;
  const int threads_per_token = p.item_lanes * p.head_lanes;
  const int tok = threadIdx.x / threads_per_token;
  const int lane = threadIdx.x - tok * threads_per_token;
  const int64_t token = first_token + tok;
  const bool active = tok < p.tokens_per_block && token < p.tokens;
  const int64_t b = active ? token / p.seq : 0;
  const int64_t s = active ? token - b * p.seq : 0;
  const int total_heads = p.q.heads + p.k.heads;
  const int groups = p.num_pairs / kPairs;
  const int head_lane = lane / p.item_lanes;

  // The first step's loads do not need the angles: they are issued before the table is filled,
  // so their latency overlaps the fill and the barrier.
  int group = lane - head_lane * p.item_lanes;
  int h0 = head_lane;
  const auto offsets_of = [&](int g) {
    return group_offsets<kInterleaved, kAccess>(g * kPairs, p.num_bands, p.band_pair_start,
                                                p.band_pairs);
  };
  V raw[kSteps][Offsets::kAccesses];
  const bool has_step = active && group < groups && h0 < total_heads;
  if (has_step) load_step<T, kAccess, kInterleaved, kSteps>(p, b, s, h0, offsets_of(group), raw);

  fill_angles(p, first_token, angles);
  __syncthreads();
  if (!active) return;  // no barrier follows

  const float2* token_angles = angles + tok * p.num_pairs;
  if (has_step) {
    for (;;) {
      const Offsets offsets = offsets_of(group);
      rotate_step<T, kAccess, kInterleaved, kSteps>(p, b, s, h0, offsets,
                                                    token_angles + group * kPairs, raw);
      h0 += p.head_lanes * kSteps;
      if (h0 >= total_heads) {
        h0 = head_lane;
        group += p.item_lanes;
        if (group >= groups) break;
      }
      load_step<T, kAccess, kInterleaved, kSteps>(p, b, s, h0, offsets_of(group), raw);
    }
  }

  if (p.copy_tail) {
    // Dims rot_dim..head_dim pass through unchanged.
    const int tail_vecs = (p.head_dim - p.rot_dim) / kAccess;
    const int count = tail_vecs * total_heads;
    for (int i = lane; i < count; i += threads_per_token) {
      const int h = i / tail_vecs;
      const int offset = p.rot_dim + (i - h * tail_vecs) * kAccess;
      const HeadRef<T> ref = head_ref(p, b, s, h);
      *reinterpret_cast<V*>(ref.out + offset) = *reinterpret_cast<const V*>(ref.in + offset);
    }
  }
}

}  // namespace tk::rope
