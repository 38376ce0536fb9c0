// RoPE 1D and 3D on the CPU: OpenMP threads over tokens, fp32 math, the same pair rotation and
// angle formulas as the CUDA kernel (rope.cuh).
//
// Per token: the (cos, sin) of every pair goes into a per-thread buffer (from the tables, or
// computed from the grid coordinates), then every head of q and k is rotated pair by pair.
// Reading both elements of a pair before writing either makes in place safe.
#include <cmath>
#include <cstdint>
#include <vector>

#include "_common/cpu_convert.h"
#include "_common/status.h"
#include "rope/bands.h"
#include "rope/rope.h"

namespace tk::rope {
namespace {

using cpu::BFloat16;
using cpu::Float16;
using cpu::from_float;
using cpu::to_float;

// Below this many elements a call runs on the calling thread: waking the pool costs more.
constexpr int64_t kMinElementsForThreads = 1 << 15;

int band_of(const Bands& bands, int pair) {
  int band = 0;
  for (int a = 1; a < bands.count; ++a) band += pair >= bands.pair_start[a] ? 1 : 0;
  return band;
}

template <typename T>
float table_value(const void* table, bool fp32, int64_t index) {
  return fp32 ? static_cast<const float*>(table)[index]
              : to_float(static_cast<const T*>(table)[index]);
}

bool positions_in_range(const Args& a) {
  if (a.positions == nullptr) return true;
  for (int64_t b = 0; b < a.x.batch; ++b) {
    for (int64_t s = 0; s < a.x.seq; ++s) {
      const int64_t at = b * a.positions_stride_batch + s * a.positions_stride_seq;
      const int64_t row = a.positions_int64 ? static_cast<const int64_t*>(a.positions)[at]
                                            : static_cast<const int32_t*>(a.positions)[at];
      if (row < 0 || row >= a.table_rows) return false;
    }
  }
  return true;
}

template <typename T>
void table_angles(const Args& a, int64_t b, int64_t s, float* cos_out, float* sin_out) {
  int64_t row = s;
  int64_t batch = b;
  if (a.positions != nullptr) {
    const int64_t at = b * a.positions_stride_batch + s * a.positions_stride_seq;
    row = a.positions_int64 ? static_cast<const int64_t*>(a.positions)[at]
                            : static_cast<const int32_t*>(a.positions)[at];
    batch = 0;
  }
  const bool fp32 = a.table_fp32 || a.x.dtype == DType::kFloat32;
  const int64_t cos_base = batch * a.cos_stride_batch + row * a.cos_stride_row;
  const int64_t sin_base = batch * a.sin_stride_batch + row * a.sin_stride_row;
  const int64_t pairs = a.x.rot_dim / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    cos_out[p] = table_value<T>(a.cos, fp32, cos_base + p);
    sin_out[p] = table_value<T>(a.sin, fp32, sin_base + p);
  }
}

// Per pair of the rot_dim: the fp32 frequency theta^(-2i / d_a) (computed in double, rounded
// once, as the CUDA kernel does) and its band.
struct GridFrequencies {
  std::vector<float> inv_freq;
  std::vector<int> band;
};

// In long double: glibc 2.29 re-versioned exp2 and log2 (double), and variants must run on
// glibc 2.28 (manylinux_2_28); exp2l and log2l kept their old versions. Rounded to float, the
// results equal the double ones but for rare double-rounding ties.
GridFrequencies grid_frequencies(const Args3d& a, const Bands& bands) {
  const int pairs = static_cast<int>(a.x.rot_dim / 2);
  GridFrequencies f{std::vector<float>(pairs), std::vector<int>(pairs)};
  const long double log2_theta = log2l(static_cast<long double>(a.theta));
  for (int p = 0; p < pairs; ++p) {
    const int band = band_of(bands, p);
    const int local = p - bands.pair_start[band];
    f.band[p] = band;
    f.inv_freq[p] = static_cast<float>(
        exp2l(-static_cast<long double>(local) / bands.pairs[band] * log2_theta));
  }
  return f;
}

void grid_angles(const Args3d& a, const GridFrequencies& f, int64_t s, float* cos_out,
                 float* sin_out) {
  const int64_t plane = a.grid[1] * a.grid[2];
  const int64_t coords[3] = {s / plane, (s / a.grid[2]) % a.grid[1], s % a.grid[2]};
  float positions[3];
  for (int band = 0; band < 3; ++band) positions[band] = static_cast<float>(coords[band]) * a.scale[band];
  const size_t pairs = f.inv_freq.size();
  for (size_t p = 0; p < pairs; ++p) {
    const float angle = positions[f.band[p]] * f.inv_freq[p];
    cos_out[p] = std::cos(angle);
    sin_out[p] = std::sin(angle);
  }
}

// Rotates (or copies) the head rows of one token of one tensor.
template <typename T>
void rotate_rows(const Common& x, const Bands& bands, const Rows& r, int64_t b, int64_t s,
                 const float* cos_in, const float* sin_in, float sin_sign) {
  const T* in_base = static_cast<const T*>(r.in) + b * r.in_stride_batch + s * r.in_stride_seq;
  T* out_base = static_cast<T*>(r.out) + b * r.out_stride_batch + s * r.out_stride_seq;
  const bool copy_tail = r.in != r.out;
  for (int64_t h = 0; h < r.heads; ++h) {
    const T* in = in_base + h * r.in_stride_head;
    T* out = out_base + h * r.out_stride_head;
    for (int band = 0; band < bands.count; ++band) {
      const int start = bands.pair_start[band];
      const int pairs = bands.pairs[band];
      for (int i = 0; i < pairs; ++i) {
        const int p = start + i;
        // Interleaved: (2p, 2p + 1); rotate-half: (E + i, E + d / 2 + i) with E = 2 * start.
        const int64_t i1 = x.interleaved ? 2 * p : 2 * start + i;
        const int64_t i2 = x.interleaved ? 2 * p + 1 : 2 * start + pairs + i;
        const float x1 = to_float(in[i1]);
        const float x2 = to_float(in[i2]);
        const float c = cos_in[p];
        const float sn = sin_in[p] * sin_sign;
        out[i1] = from_float<T>(x1 * c - x2 * sn);
        out[i2] = from_float<T>(x2 * c + x1 * sn);
      }
    }
    if (copy_tail) {
      for (int64_t d = x.rot_dim; d < x.head_dim; ++d) out[d] = in[d];
    }
  }
}

// Runs angles(b, s, cos, sin) and the rotation of q and k for every token.
template <typename T, typename Angles>
void run_tokens(const Common& x, const Bands& bands, Angles angles) {
  const int64_t tokens = x.batch * x.seq;
  const int64_t pairs = x.rot_dim / 2;
  const float sin_sign = x.conjugate ? -1.0f : 1.0f;
  const int64_t elements = tokens * (x.q.heads + x.k.heads) * x.head_dim;
#pragma omp parallel if (elements >= kMinElementsForThreads)
  {
    std::vector<float> cos_buffer(pairs);
    std::vector<float> sin_buffer(pairs);
#pragma omp for schedule(static)
    for (int64_t token = 0; token < tokens; ++token) {
      const int64_t b = token / x.seq;
      const int64_t s = token % x.seq;
      angles(b, s, cos_buffer.data(), sin_buffer.data());
      rotate_rows<T>(x, bands, x.q, b, s, cos_buffer.data(), sin_buffer.data(), sin_sign);
      rotate_rows<T>(x, bands, x.k, b, s, cos_buffer.data(), sin_buffer.data(), sin_sign);
    }
  }
}

template <typename Fn>
void visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: fn(float{}); break;
    case DType::kFloat16: fn(Float16{}); break;
    case DType::kBFloat16: fn(BFloat16{}); break;
  }
}

}  // namespace

Status fwd_cpu(const Args& args) {
  if (Status s = check_args(args); !s.ok()) return s;
  if (!has_work(args.x)) return Status::Ok();
  if (!positions_in_range(args)) return invalid("rope: positions must be in [0, rows of cos)");
  const Bands bands = one_band(args.x.rot_dim);
  visit_dtype(args.x.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    run_tokens<T>(args.x, bands, [&](int64_t b, int64_t s, float* c, float* sn) {
      table_angles<T>(args, b, s, c, sn);
    });
  });
  return Status::Ok();
}

Status fwd3d_cpu(const Args3d& args) {
  if (Status s = check_args(args); !s.ok()) return s;
  if (!has_work(args.x)) return Status::Ok();
  const Bands bands = grid_bands(args.split);
  const GridFrequencies frequencies = grid_frequencies(args, bands);
  visit_dtype(args.x.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    run_tokens<T>(args.x, bands, [&](int64_t, int64_t s, float* c, float* sn) {
      grid_angles(args, frequencies, s, c, sn);
    });
  });
  return Status::Ok();
}

}  // namespace tk::rope
