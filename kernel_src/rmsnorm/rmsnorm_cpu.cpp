// RMSNorm forward and backward on the CPU: OpenMP threads over rows, fp32 math.
//
// Every row is first made into contiguous floats (a pointer to the input itself for fp32, a
// converted copy in a per-thread buffer otherwise), so the arithmetic loops are plain float
// loops that gcc vectorizes; reductions use `omp simd reduction` so they vectorize without
// -ffast-math.
//
// dweight is deterministic for any thread count: rows are cut into a number of chunks that
// depends only on (rows, hidden); each chunk sums its rows in order into its own row of the
// workspace, and the chunk partials are then added in chunk order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "_common/cpu_convert.h"
#include "_common/status.h"
#include "rmsnorm/rmsnorm.h"

namespace tk::rmsnorm {
namespace {

using cpu::BFloat16;
using cpu::Float16;
using cpu::from_float;
using cpu::to_float;

// Below this many elements a launch runs on the calling thread: waking the pool costs more.
constexpr int64_t kMinElementsForThreads = 1 << 15;
// dweight partials: at most this many chunks, and at least this many rows in each.
constexpr int64_t kMaxDweightChunks = 64;
constexpr int64_t kMinRowsPerChunk = 8;

int64_t dweight_chunks(int64_t rows) {
  if (rows <= 0) return 0;
  const int64_t by_rows = (rows + kMinRowsPerChunk - 1) / kMinRowsPerChunk;
  return std::min(by_rows, kMaxDweightChunks);
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

float sum_of_squares(const float* v, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += v[i] * v[i];
  return sum;
}

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// ---------------------------------------------------------------- forward

// z = x + residual, rounded to T (written to residual_out), returned as floats in `z`.
template <typename T>
void add_residual(float* z, T* residual_out, const T* x, const T* residual, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T rounded = from_float<T>(to_float(x[i]) + to_float(residual[i]));
    residual_out[i] = rounded;
    z[i] = to_float(rounded);
  }
}

template <typename T>
void fwd_typed(const FwdArgs& args) {
  const int64_t rows = args.rows;
  const int64_t hidden = args.hidden;
  const T* x = static_cast<const T*>(args.x);
  const T* residual = static_cast<const T*>(args.residual);
  T* residual_out = static_cast<T*>(args.residual_out);
  T* y = static_cast<T*>(args.y);

  std::vector<float> weight_buffer(args.weight != nullptr ? hidden : 0);
  const float* weight = args.weight != nullptr
                            ? row_as_float(static_cast<const T*>(args.weight), weight_buffer.data(), hidden)
                            : nullptr;

#pragma omp parallel if (rows * hidden >= kMinElementsForThreads)
  {
    std::vector<float> z_buffer(hidden);
    std::vector<float> y_buffer(hidden);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t offset = r * hidden;
      const float* z;
      if (residual != nullptr) {
        add_residual(z_buffer.data(), residual_out + offset, x + offset, residual + offset, hidden);
        z = z_buffer.data();
      } else {
        z = row_as_float(x + offset, z_buffer.data(), hidden);
      }

      const float rstd = 1.0f / std::sqrt(sum_of_squares(z, hidden) / static_cast<float>(hidden) + args.eps);
      args.rstd[r] = rstd;

      float* out = y_buffer.data();
      if (weight != nullptr) {
#pragma omp simd
        for (int64_t i = 0; i < hidden; ++i) out[i] = z[i] * rstd * weight[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < hidden; ++i) out[i] = z[i] * rstd;
      }
      store_row(y + offset, out, hidden);
    }
  }
}

// ---------------------------------------------------------------- backward

// dx for one row; adds dy * z * rstd into `dweight_partial` when it is not null.
template <typename T>
void bwd_row(const BwdArgs& args, const float* weight, int64_t r, float* dweight_partial,
             float* dy_buffer, float* z_buffer, float* g_buffer, float* dx_buffer) {
  const int64_t hidden = args.hidden;
  const int64_t offset = r * hidden;
  const float* dy = row_as_float(static_cast<const T*>(args.dy) + offset, dy_buffer, hidden);
  const float* z = row_as_float(static_cast<const T*>(args.z) + offset, z_buffer, hidden);
  const float rstd = args.rstd[r];

  const float* g = dy;
  if (weight != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) g_buffer[i] = dy[i] * weight[i];
    g = g_buffer;
  }

  // dx = rstd * (g - z_hat * mean(g * z_hat)) with z_hat = z * rstd.
  const float mean_g_zhat = dot(g, z, hidden) * rstd / static_cast<float>(hidden);
  const float z_coefficient = rstd * mean_g_zhat;
#pragma omp simd
  for (int64_t i = 0; i < hidden; ++i) dx_buffer[i] = rstd * (g[i] - z[i] * z_coefficient);

  if (args.dresidual != nullptr) {
    const T* dresidual = static_cast<const T*>(args.dresidual) + offset;
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) dx_buffer[i] += to_float(dresidual[i]);
  }
  store_row(static_cast<T*>(args.dx) + offset, dx_buffer, hidden);

  if (dweight_partial != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) dweight_partial[i] += dy[i] * z[i] * rstd;
  }
}

// dweight[i] = sum over chunks, in chunk order, of workspace[chunk][i]. Columns are taken in
// blocks so the inner loop runs along contiguous workspace rows.
template <typename T>
void reduce_dweight(T* dweight, const float* workspace, int64_t chunks, int64_t hidden) {
  constexpr int64_t kColumnBlock = 512;
  const int64_t blocks = (hidden + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (chunks * hidden >= kMinElementsForThreads)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kColumnBlock;
    const int64_t width = std::min(kColumnBlock, hidden - first);
    float sums[kColumnBlock] = {};
    for (int64_t c = 0; c < chunks; ++c) {
      const float* partial = workspace + c * hidden + first;
#pragma omp simd
      for (int64_t i = 0; i < width; ++i) sums[i] += partial[i];
    }
    store_row(dweight + first, sums, width);
  }
}

template <typename T>
void bwd_typed(const BwdArgs& args) {
  const int64_t rows = args.rows;
  const int64_t hidden = args.hidden;
  const bool want_dweight = args.dweight != nullptr;
  const int64_t chunks = dweight_chunks(rows);

  std::vector<float> weight_buffer(args.weight != nullptr ? hidden : 0);
  const float* weight = args.weight != nullptr
                            ? row_as_float(static_cast<const T*>(args.weight), weight_buffer.data(), hidden)
                            : nullptr;

#pragma omp parallel if (rows * hidden >= kMinElementsForThreads)
  {
    std::vector<float> dy_buffer(hidden);
    std::vector<float> z_buffer(hidden);
    std::vector<float> g_buffer(hidden);
    std::vector<float> dx_buffer(hidden);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      float* partial = want_dweight ? args.workspace + c * hidden : nullptr;
      if (partial != nullptr) std::fill(partial, partial + hidden, 0.0f);
      const int64_t first_row = rows * c / chunks;
      const int64_t end_row = rows * (c + 1) / chunks;
      for (int64_t r = first_row; r < end_row; ++r) {
        bwd_row<T>(args, weight, r, partial, dy_buffer.data(), z_buffer.data(), g_buffer.data(),
                   dx_buffer.data());
      }
    }
  }

  if (want_dweight) reduce_dweight(static_cast<T*>(args.dweight), args.workspace, chunks, hidden);
}

// ---------------------------------------------------------------- argument checks

Status check_shape(int64_t rows, int64_t hidden) {
  if (rows < 0) return Status::Error(StatusCode::kInvalidArgument, "rmsnorm: rows must be >= 0");
  if (hidden < 1) return Status::Error(StatusCode::kInvalidArgument, "rmsnorm: hidden must be >= 1");
  return Status::Ok();
}

bool is_known_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

Status check_fwd(const FwdArgs& args) {
  if (!is_known_dtype(args.dtype)) return Status::Error(StatusCode::kUnsupportedDType, "rmsnorm: unknown dtype");
  if (Status status = check_shape(args.rows, args.hidden); !status.ok()) return status;
  if ((args.residual == nullptr) != (args.residual_out == nullptr)) {
    return Status::Error(StatusCode::kInvalidArgument,
                         "rmsnorm: residual and residual_out must be given together");
  }
  if (args.rows > 0 && (args.x == nullptr || args.y == nullptr || args.rstd == nullptr)) {
    return Status::Error(StatusCode::kInvalidArgument, "rmsnorm: x, y and rstd must not be null");
  }
  return Status::Ok();
}

Status check_bwd(const BwdArgs& args) {
  if (!is_known_dtype(args.dtype)) return Status::Error(StatusCode::kUnsupportedDType, "rmsnorm: unknown dtype");
  if (Status status = check_shape(args.rows, args.hidden); !status.ok()) return status;
  if (args.rows > 0 &&
      (args.dx == nullptr || args.dy == nullptr || args.z == nullptr || args.rstd == nullptr)) {
    return Status::Error(StatusCode::kInvalidArgument, "rmsnorm: dx, dy, z and rstd must not be null");
  }
  if (args.dweight != nullptr && args.workspace == nullptr &&
      bwd_workspace_floats_cpu(args.rows, args.hidden, true) > 0) {
    return Status::Error(StatusCode::kInvalidArgument,
                         "rmsnorm: workspace must not be null when dweight is wanted");
  }
  return Status::Ok();
}

}  // namespace

int64_t bwd_workspace_floats_cpu(int64_t rows, int64_t hidden, bool want_dweight) {
  return want_dweight ? dweight_chunks(rows) * hidden : 0;
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

}  // namespace tk::rmsnorm
