// AdaLN forward and backward on the CPU: OpenMP threads over rows, fp32 math.
//
// Every row is first made into contiguous floats (a pointer to the input itself for fp32, a
// converted copy in a per-thread buffer otherwise), so the arithmetic loops are plain float
// loops that gcc vectorizes; reductions use `omp simd reduction` so they vectorize without
// -ffast-math. Built as ISO C++ (-std=c++17), gcc contracts no multiply-add into an FMA, so
// z = x + gate * branch rounds its product and its sum separately, as PyTorch does.
//
// Per-sample and weight gradients are deterministic for any thread count: the rows of each
// sample are cut into a number of chunks that depends only on (batch, seq); each chunk sums its
// rows in order into its own rows of the workspace, and those are then added in chunk order,
// samples in sample order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "_common/cpu_convert.h"
#include "_common/status.h"
#include "adaln/adaln.h"

namespace tk::adaln {
namespace {

using cpu::BFloat16;
using cpu::Float16;
using cpu::from_float;
using cpu::to_float;

// Below this many elements a launch runs on the calling thread: waking the pool costs more.
constexpr int64_t kMinElementsForThreads = 1 << 15;
// Backward partials: about this many chunks in all, and at least this many rows in each.
constexpr int64_t kTargetChunks = 64;
constexpr int64_t kMinRowsPerChunk = 8;

int64_t chunks_per_sample(int64_t batch, int64_t seq) {
  if (batch <= 0 || seq <= 0) return 1;
  const int64_t by_rows = (seq + kMinRowsPerChunk - 1) / kMinRowsPerChunk;
  const int64_t by_target = (kTargetChunks + batch - 1) / batch;
  return std::max<int64_t>(1, std::min(by_rows, by_target));
}

bool wants_partial_p(const BwdArgs& a) { return !a.scale_per_token || a.dweight != nullptr; }

// Row of a modulation tensor serving row `row` of sample `sample`, as an element offset.
int64_t modulation_offset(bool per_token, int64_t row, int64_t sample, int64_t hidden) {
  return (per_token ? row : sample) * hidden;
}

// The row as floats: the input itself when T is float, else converted into `buffer`.
template <typename T>
const float* row_as_float(const T* row, float* buffer, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return row;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) buffer[i] = to_float(row[i]);
    return buffer;
  }
}

template <typename T>
void store_row(T* out, const float* values, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = from_float<T>(values[i]);
}

float sum(const float* v, int64_t n) {
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += v[i];
  return total;
}

float sum_squared_deviations(const float* v, float mean, int64_t n) {
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) {
    const float d = v[i] - mean;
    total += d * d;
  }
  return total;
}

float dot(const float* a, const float* b, int64_t n) {
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += a[i] * b[i];
  return total;
}

// ---------------------------------------------------------------- forward

// z = x + gate * branch, rounded to T (written to z_out), returned as floats in `z`.
template <typename T>
void gated_sum(float* z, T* z_out, const T* x, const T* gate, const T* branch, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float product = to_float(gate[i]) * to_float(branch[i]);
    const T rounded = from_float<T>(to_float(x[i]) + product);
    z_out[i] = rounded;
    z[i] = to_float(rounded);
  }
}

template <typename T>
void fwd_typed(const FwdArgs& a) {
  const int64_t rows = a.batch * a.seq;
  const int64_t hidden = a.hidden;
  const bool layer = a.norm == Norm::kLayer;
  const T* x = static_cast<const T*>(a.x);
  const T* branch = static_cast<const T*>(a.branch);
  const T* gate = static_cast<const T*>(a.gate);
  const T* scale = static_cast<const T*>(a.scale);
  const T* shift = static_cast<const T*>(a.shift);
  T* z_out = static_cast<T*>(a.z_out);
  T* y = static_cast<T*>(a.y);

  std::vector<float> weight_buffer(hidden, 1.0f);
  const float* weight = a.weight != nullptr ? row_as_float(static_cast<const T*>(a.weight),
                                                           weight_buffer.data(), hidden)
                                            : weight_buffer.data();

#pragma omp parallel if (rows * hidden >= kMinElementsForThreads)
  {
    std::vector<float> z_buffer(hidden), scale_buffer(hidden), shift_buffer(hidden), y_buffer(hidden);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t sample = r / a.seq;
      const int64_t offset = r * hidden;
      const float* z;
      if (a.gated) {
        const T* gate_row = gate + modulation_offset(a.gate_per_token, r, sample, hidden);
        gated_sum(z_buffer.data(), z_out + offset, x + offset, gate_row, branch + offset, hidden);
        z = z_buffer.data();
      } else {
        z = row_as_float(x + offset, z_buffer.data(), hidden);
      }

      const float mean = layer ? sum(z, hidden) / static_cast<float>(hidden) : 0.0f;
      const float variance = sum_squared_deviations(z, mean, hidden) / static_cast<float>(hidden);
      const float rstd = 1.0f / std::sqrt(variance + a.eps);
      a.mean[r] = mean;
      a.rstd[r] = rstd;

      const float* s = row_as_float(scale + modulation_offset(a.scale_per_token, r, sample, hidden),
                                    scale_buffer.data(), hidden);
      const float* sh = row_as_float(shift + modulation_offset(a.shift_per_token, r, sample, hidden),
                                     shift_buffer.data(), hidden);
      float* out = y_buffer.data();
#pragma omp simd
      for (int64_t i = 0; i < hidden; ++i) {
        const float n = (z[i] - mean) * rstd * weight[i];
        out[i] = n * (1.0f + s[i]) + sh[i];
      }
      store_row(y + offset, out, hidden);
    }
  }
}

// ---------------------------------------------------------------- backward

struct RowBuffers {
  explicit RowBuffers(int64_t hidden)
      : dy(hidden), z(hidden), dz(hidden), branch(hidden), gate(hidden), scale(hidden),
        xhat(hidden), dn(hidden), g(hidden), dzt(hidden), out(hidden) {}
  std::vector<float> dy, z, dz, branch, gate, scale, xhat, dn, g, dzt, out;
};

// The partial rows of one chunk (nullptr where not wanted), summed over its rows.
struct ChunkPartials {
  float* p;       // dy * xhat (per-sample scale) or dn * xhat (per-token scale, for dweight)
  float* shift;   // dy (per-sample shift)
  float* gate;    // dz * branch (gated, per-sample gate)
};

template <typename T>
void bwd_row(const BwdArgs& a, const float* weight, int64_t r, int64_t sample,
             const ChunkPartials& partials, RowBuffers& b) {
  const int64_t hidden = a.hidden;
  const int64_t offset = r * hidden;
  const float inv_hidden = 1.0f / static_cast<float>(hidden);
  const float* dy = row_as_float(static_cast<const T*>(a.dy) + offset, b.dy.data(), hidden);
  const float* z = row_as_float(static_cast<const T*>(a.z) + offset, b.z.data(), hidden);
  const float* s = row_as_float(
      static_cast<const T*>(a.scale) + modulation_offset(a.scale_per_token, r, sample, hidden),
      b.scale.data(), hidden);
  const float mean = a.mean[r];
  const float rstd = a.rstd[r];

  float* xhat = b.xhat.data();
  float* dn = b.dn.data();
  float* g = b.g.data();
#pragma omp simd
  for (int64_t i = 0; i < hidden; ++i) {
    xhat[i] = (z[i] - mean) * rstd;
    dn[i] = dy[i] * (1.0f + s[i]);
    g[i] = dn[i] * weight[i];
  }
  const float mean_g = a.norm == Norm::kLayer ? sum(g, hidden) * inv_hidden : 0.0f;
  const float mean_gx = dot(g, xhat, hidden) * inv_hidden;

  float* dzt = b.dzt.data();
#pragma omp simd
  for (int64_t i = 0; i < hidden; ++i) dzt[i] = rstd * (g[i] - mean_g - xhat[i] * mean_gx);
  if (a.dz != nullptr) {
    const float* dz = row_as_float(static_cast<const T*>(a.dz) + offset, b.dz.data(), hidden);
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) dzt[i] += dz[i];
  }
  store_row(static_cast<T*>(a.dx) + offset, dzt, hidden);

  float* out = b.out.data();
  if (a.gated) {
    const float* branch = row_as_float(static_cast<const T*>(a.branch) + offset, b.branch.data(), hidden);
    const float* gate = row_as_float(
        static_cast<const T*>(a.gate) + modulation_offset(a.gate_per_token, r, sample, hidden),
        b.gate.data(), hidden);
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) out[i] = dzt[i] * gate[i];
    store_row(static_cast<T*>(a.dbranch) + offset, out, hidden);
    if (a.gate_per_token) {
#pragma omp simd
      for (int64_t i = 0; i < hidden; ++i) out[i] = dzt[i] * branch[i];
      store_row(static_cast<T*>(a.dgate) + offset, out, hidden);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < hidden; ++i) partials.gate[i] += dzt[i] * branch[i];
    }
  }

  if (a.scale_per_token) {
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) out[i] = dy[i] * xhat[i] * weight[i];
    store_row(static_cast<T*>(a.dscale) + offset, out, hidden);
    if (partials.p != nullptr) {
#pragma omp simd
      for (int64_t i = 0; i < hidden; ++i) partials.p[i] += dn[i] * xhat[i];
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) partials.p[i] += dy[i] * xhat[i];
  }

  if (a.shift_per_token) {
    if (a.dshift != nullptr) {
      const T* dy_in = static_cast<const T*>(a.dy) + offset;
      std::copy(dy_in, dy_in + hidden, static_cast<T*>(a.dshift) + offset);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) partials.shift[i] += dy[i];
  }
}

// Second pass: per-sample sums in chunk order, dweight over samples in sample order. Columns are
// taken in blocks so the inner loops run along contiguous workspace rows.
template <typename T>
void reduce_partials(const BwdArgs& a, const float* weight, const ChunkPartials& base,
                     int64_t chunks) {
  constexpr int64_t kColumnBlock = 256;
  const int64_t hidden = a.hidden;
  const int64_t blocks = (hidden + kColumnBlock - 1) / kColumnBlock;
  const T* scale = static_cast<const T*>(a.scale);
#pragma omp parallel for schedule(static) if (a.batch * chunks * hidden >= kMinElementsForThreads)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t first = block * kColumnBlock;
    const int64_t width = std::min(kColumnBlock, hidden - first);
    float dweight[kColumnBlock] = {};
    for (int64_t sample = 0; sample < a.batch; ++sample) {
      float p[kColumnBlock] = {}, shift[kColumnBlock] = {}, gate[kColumnBlock] = {};
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t row = (sample * chunks + c) * hidden + first;
        if (base.p != nullptr) {
#pragma omp simd
          for (int64_t i = 0; i < width; ++i) p[i] += base.p[row + i];
        }
        if (base.shift != nullptr) {
#pragma omp simd
          for (int64_t i = 0; i < width; ++i) shift[i] += base.shift[row + i];
        }
        if (base.gate != nullptr) {
#pragma omp simd
          for (int64_t i = 0; i < width; ++i) gate[i] += base.gate[row + i];
        }
      }
      const int64_t out = sample * hidden + first;
      if (!a.scale_per_token) {
        float dscale[kColumnBlock];
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) dscale[i] = p[i] * weight[first + i];
        store_row(static_cast<T*>(a.dscale) + out, dscale, width);
      }
      if (base.shift != nullptr) store_row(static_cast<T*>(a.dshift) + out, shift, width);
      if (base.gate != nullptr) store_row(static_cast<T*>(a.dgate) + out, gate, width);
      if (a.dweight != nullptr) {
        if (a.scale_per_token) {
#pragma omp simd
          for (int64_t i = 0; i < width; ++i) dweight[i] += p[i];
        } else {
#pragma omp simd
          for (int64_t i = 0; i < width; ++i) dweight[i] += p[i] * (1.0f + to_float(scale[out + i]));
        }
      }
    }
    if (a.dweight != nullptr) store_row(static_cast<T*>(a.dweight) + first, dweight, width);
  }
}

template <typename T>
void bwd_typed(const BwdArgs& a) {
  const int64_t hidden = a.hidden;
  const int64_t rows = a.batch * a.seq;
  const int64_t chunks = chunks_per_sample(a.batch, a.seq);
  const int64_t tasks = rows > 0 ? a.batch * chunks : 0;
  const int64_t partial_floats = a.batch * chunks * hidden;

  std::vector<float> weight_buffer(hidden, 1.0f);
  const float* weight = a.weight != nullptr ? row_as_float(static_cast<const T*>(a.weight),
                                                           weight_buffer.data(), hidden)
                                            : weight_buffer.data();

  // Workspace: up to three [batch * chunks, hidden] regions, in this order.
  float* next = a.workspace;
  const auto take = [&next, partial_floats](bool needed) -> float* {
    if (!needed) return nullptr;
    float* region = next;
    next += partial_floats;
    return region;
  };
  ChunkPartials base;
  base.p = take(wants_partial_p(a));
  base.shift = take(!a.shift_per_token);
  base.gate = take(a.gated && !a.gate_per_token);
  for (float* region : {base.p, base.shift, base.gate}) {
    if (region != nullptr) std::fill(region, region + partial_floats, 0.0f);
  }

#pragma omp parallel if (rows * hidden >= kMinElementsForThreads)
  {
    RowBuffers buffers(hidden);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t sample = task / chunks;
      const int64_t c = task % chunks;
      const int64_t at = task * hidden;
      const ChunkPartials partials{base.p != nullptr ? base.p + at : nullptr,
                                   base.shift != nullptr ? base.shift + at : nullptr,
                                   base.gate != nullptr ? base.gate + at : nullptr};
      const int64_t first = sample * a.seq + a.seq * c / chunks;
      const int64_t end = sample * a.seq + a.seq * (c + 1) / chunks;
      for (int64_t r = first; r < end; ++r) bwd_row<T>(a, weight, r, sample, partials, buffers);
    }
  }

  reduce_partials<T>(a, weight, base, chunks);
}

// ---------------------------------------------------------------- argument checks

Status check_common(int64_t batch, int64_t seq, int64_t hidden, Norm norm, DType dtype) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return Status::Error(StatusCode::kUnsupportedDType, "adaln: unknown dtype");
  }
  if (batch < 0 || seq < 0) return invalid("adaln: batch and seq must be >= 0");
  if (hidden < 1) return invalid("adaln: hidden must be >= 1");
  if (norm != Norm::kRms && norm != Norm::kLayer) return invalid("adaln: norm must be rms or layer");
  return Status::Ok();
}

Status check_fwd(const FwdArgs& a) {
  if (Status s = check_common(a.batch, a.seq, a.hidden, a.norm, a.dtype); !s.ok()) return s;
  if (a.batch * a.seq == 0) return Status::Ok();
  if (a.y == nullptr || a.mean == nullptr || a.rstd == nullptr || a.x == nullptr ||
      a.scale == nullptr || a.shift == nullptr) {
    return invalid("adaln: y, mean, rstd, x, scale and shift must not be null");
  }
  if (a.gated && (a.branch == nullptr || a.gate == nullptr || a.z_out == nullptr)) {
    return invalid("adaln: gated: branch, gate and z_out must not be null");
  }
  return Status::Ok();
}

Status check_bwd(const BwdArgs& a) {
  if (Status s = check_common(a.batch, a.seq, a.hidden, a.norm, a.dtype); !s.ok()) return s;
  if (a.batch > 0 && ((!a.scale_per_token && a.dscale == nullptr) ||
                      (!a.shift_per_token && a.dshift == nullptr) ||
                      (a.gated && !a.gate_per_token && a.dgate == nullptr))) {
    return invalid("adaln: the per-sample gradients must not be null");
  }
  if (a.batch * a.seq > 0) {
    if (a.dx == nullptr || a.dscale == nullptr || (a.dshift == nullptr && !a.shift_per_token) ||
        a.dy == nullptr || a.z == nullptr || a.scale == nullptr || a.mean == nullptr ||
        a.rstd == nullptr) {
      return invalid("adaln: dx, dscale, dshift (unless per token), dy, z, scale, mean and rstd "
                     "must not be null");
    }
    if (a.gated && (a.branch == nullptr || a.gate == nullptr || a.dbranch == nullptr ||
                    a.dgate == nullptr)) {
      return invalid("adaln: gated: branch, gate, dbranch and dgate must not be null");
    }
  }
  if (a.workspace == nullptr && bwd_workspace_floats_cpu(a) > 0) {
    return invalid("adaln: the backward needs its workspace (bwd_workspace_floats_cpu floats)");
  }
  return Status::Ok();
}

}  // namespace

int64_t bwd_workspace_floats_cpu(const BwdArgs& args) {
  const int64_t regions = (wants_partial_p(args) ? 1 : 0) + (args.shift_per_token ? 0 : 1) +
                          (args.gated && !args.gate_per_token ? 1 : 0);
  return regions * args.batch * chunks_per_sample(args.batch, args.seq) * args.hidden;
}

Status fwd_cpu(const FwdArgs& args) {
  if (Status status = check_fwd(args); !status.ok()) return status;
  switch (args.dtype) {
    case DType::kFloat32: fwd_typed<float>(args); break;
    case DType::kFloat16: fwd_typed<Float16>(args); break;
    case DType::kBFloat16: fwd_typed<BFloat16>(args); break;
  }
  return Status::Ok();
}

Status bwd_cpu(const BwdArgs& args) {
  if (Status status = check_bwd(args); !status.ok()) return status;
  switch (args.dtype) {
    case DType::kFloat32: bwd_typed<float>(args); break;
    case DType::kFloat16: bwd_typed<Float16>(args); break;
    case DType::kBFloat16: bwd_typed<BFloat16>(args); break;
  }
  return Status::Ok();
}

}  // namespace tk::adaln
