// RMSNorm CUDA launchers (the host API of rmsnorm.h): check the arguments, pick a kernel and
// its shape from launch_config.h, launch on the caller's stream. No torch headers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <utility>

#include "_common/cuda_check.cuh"
#include "_common/launch_util.h"
#include "_common/status.h"
#include "rmsnorm/launch_config.h"
#include "rmsnorm/rmsnorm.cuh"
#include "rmsnorm/rmsnorm.h"

namespace tk::rmsnorm {
namespace {

Status check_sizes(int64_t rows, int64_t hidden, DType dtype) {
  if (rows < 0 || hidden < 0) return invalid("rows and hidden must be non-negative");
  if (hidden == 0) return invalid("hidden must be at least 1");
  if (hidden > INT_MAX) return invalid("hidden must be below 2^31");
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return Status::Error(StatusCode::kUnsupportedDType,
                         "dtype must be float32, float16 or bfloat16");
  }
  return Status::Ok();
}

// Calls fn(T{}) with T the CUDA element type of `dtype` (checked by check_sizes).
template <typename Fn>
Status visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      return fn(float{});
    case DType::kFloat16:
      return fn(__half{});
    default:
      return fn(__nv_bfloat16{});
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T, size_t kShape>
void launch_fwd_resident(const FwdParams<T>& p, cudaStream_t stream) {
  constexpr ResidentShape s = kFwdShapes[kShape];
  rmsnorm_fwd_resident<T, s.threads_per_row, s.vecs_per_thread,
                       s.rows_per_block, s.min_blocks_per_sm>
      <<<grid_size(ceil_div(p.rows, s.rows_per_block)), s.threads_per_block(), 0, stream>>>(p);
}

template <typename T, size_t... kShapes>
void launch_fwd_resident_shape(int shape, const FwdParams<T>& p, cudaStream_t stream,
                               std::index_sequence<kShapes...>) {
  ((shape == static_cast<int>(kShapes) ? launch_fwd_resident<T, kShapes>(p, stream) : void()),
   ...);
}

// Instantiated for every power-of-two vector width from 16 bytes down to one element.
template <typename T, int kVecElems = kElemsPer16Bytes<T>>
void launch_fwd_looped(int vec_elems, const FwdParams<T>& p, cudaStream_t stream) {
  if constexpr (kVecElems > 1) {
    if (vec_elems < kVecElems) return launch_fwd_looped<T, kVecElems / 2>(vec_elems, p, stream);
  }
  rmsnorm_fwd_looped<T, kVecElems>
      <<<grid_size(p.rows), looped_threads_per_row(p.hidden), 0, stream>>>(p);
}

template <typename T>
Status fwd_typed(const FwdArgs& a, cudaStream_t stream) {
  const FwdParams<T> p{static_cast<T*>(a.y),
                       a.rstd,
                       static_cast<const T*>(a.x),
                       static_cast<const T*>(a.weight),
                       static_cast<const T*>(a.residual),
                       static_cast<T*>(a.residual_out),
                       a.rows,
                       static_cast<int>(a.hidden),
                       1.0f / static_cast<float>(a.hidden),
                       a.eps};
  const int elem_bytes = sizeof(T);
  const int vec_bytes = common_vector_bytes({a.y, a.x, a.weight, a.residual, a.residual_out},
                                            a.hidden * elem_bytes, elem_bytes);
  const int shape =
      vec_bytes == 16 ? find_resident_shape(kFwdShapes, a.hidden / kElemsPer16Bytes<T>) : -1;
  if (shape >= 0) {
    launch_fwd_resident_shape<T>(shape, p, stream,
                                 std::make_index_sequence<std::size(kFwdShapes)>{});
  } else {
    launch_fwd_looped<T>(vec_bytes / elem_bytes, p, stream);
  }
  return check_last_launch();
}

// ---------------------------------------------------------------------------------------------
// Backward

// Which kernel runs and how many blocks its persistent grid has (= partial-dweight rows).
struct BwdPlan {
  int resident_shape;  // index into kBwdShapes, or -1 for the looped kernel
  int64_t grid_blocks;
};

template <typename T>
BwdPlan plan_bwd(int vec_bytes, int64_t rows, int64_t hidden, int multiprocessors) {
  const int shape =
      vec_bytes == 16 ? find_resident_shape(kBwdShapes, hidden / kElemsPer16Bytes<T>) : -1;
  if (shape >= 0) {
    const ResidentShape& s = kBwdShapes[shape];
    return {shape,
            bwd_grid_blocks(rows, s.rows_per_block, s.min_blocks_per_sm, multiprocessors)};
  }
  const int threads = looped_threads_per_row(hidden);
  return {-1, bwd_grid_blocks(rows, 1, looped_blocks_per_sm(threads), multiprocessors)};
}

// The largest grid any dtype and any pointer alignment can get for this problem, so the
// workspace can be sized from (rows, hidden) alone.
int64_t max_bwd_grid_blocks(int64_t rows, int64_t hidden, int multiprocessors) {
  int64_t most = 0;
  for (const DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    visit_dtype(dtype, [&](auto type_tag) {
      using T = decltype(type_tag);
      for (const int vec_bytes : {16, static_cast<int>(sizeof(T))}) {
        most = std::max(most, plan_bwd<T>(vec_bytes, rows, hidden, multiprocessors).grid_blocks);
      }
      return Status::Ok();
    });
  }
  return most;
}

template <typename T, size_t kShape>
void launch_bwd_resident(const BwdParams<T>& p, int64_t grid_blocks, cudaStream_t stream) {
  constexpr ResidentShape s = kBwdShapes[kShape];
  rmsnorm_bwd_resident<T, s.threads_per_row, s.vecs_per_thread,
                       s.rows_per_block, s.min_blocks_per_sm>
      <<<grid_size(grid_blocks), s.threads_per_block(), 0, stream>>>(p);
}

template <typename T, size_t... kShapes>
void launch_bwd_resident_shape(int shape, const BwdParams<T>& p, int64_t grid_blocks,
                               cudaStream_t stream, std::index_sequence<kShapes...>) {
  ((shape == static_cast<int>(kShapes) ? launch_bwd_resident<T, kShapes>(p, grid_blocks, stream)
                                       : void()),
   ...);
}

template <typename T, int kVecElems = kElemsPer16Bytes<T>>
void launch_bwd_looped(int vec_elems, const BwdParams<T>& p, int64_t grid_blocks,
                       cudaStream_t stream) {
  if constexpr (kVecElems > 1) {
    if (vec_elems < kVecElems) {
      return launch_bwd_looped<T, kVecElems / 2>(vec_elems, p, grid_blocks, stream);
    }
  }
  rmsnorm_bwd_looped<T, kVecElems>
      <<<grid_size(grid_blocks), looped_threads_per_row(p.hidden), 0, stream>>>(p);
}

template <typename T>
Status bwd_typed(const BwdArgs& a, cudaStream_t stream) {
  if (a.rows == 0) {
    // No rows: dweight is an empty sum. All-zero bits are 0.0 in every supported dtype.
    if (a.dweight == nullptr) return Status::Ok();
    return status_from(cudaMemsetAsync(a.dweight, 0, a.hidden * sizeof(T), stream));
  }
  int multiprocessors = 0;
  if (Status s = current_multiprocessor_count(&multiprocessors); !s.ok()) return s;
  if (a.dweight != nullptr && a.workspace == nullptr) {
    return invalid("dweight needs the workspace (bwd_workspace_floats_cuda floats)");
  }

  const BwdParams<T> p{static_cast<T*>(a.dx),
                       a.dweight != nullptr ? a.workspace : nullptr,
                       static_cast<const T*>(a.dy),
                       static_cast<const T*>(a.z),
                       static_cast<const T*>(a.weight),
                       a.rstd,
                       static_cast<const T*>(a.dresidual),
                       a.rows,
                       static_cast<int>(a.hidden),
                       1.0f / static_cast<float>(a.hidden)};
  const int elem_bytes = sizeof(T);
  const int vec_bytes = common_vector_bytes({a.dx, a.dy, a.z, a.weight, a.dresidual},
                                            a.hidden * elem_bytes, elem_bytes);
  const BwdPlan plan = plan_bwd<T>(vec_bytes, a.rows, a.hidden, multiprocessors);
  if (plan.resident_shape >= 0) {
    launch_bwd_resident_shape<T>(plan.resident_shape, p, plan.grid_blocks, stream,
                                 std::make_index_sequence<std::size(kBwdShapes)>{});
  } else {
    launch_bwd_looped<T>(vec_bytes / elem_bytes, p, plan.grid_blocks, stream);
  }
  if (Status s = check_last_launch(); !s.ok() || a.dweight == nullptr) return s;

  const dim3 reduce_block(kReduceColumns, kReduceRowGroups);
  rmsnorm_reduce_partials<T>
      <<<grid_size(ceil_div(a.hidden, kReduceColumns)), reduce_block, 0, stream>>>(
          static_cast<T*>(a.dweight), a.workspace, static_cast<int>(plan.grid_blocks),
          static_cast<int>(a.hidden));
  return check_last_launch();
}

}  // namespace

Status fwd_cuda(const FwdArgs& args, void* stream) {
  if (Status s = check_sizes(args.rows, args.hidden, args.dtype); !s.ok()) return s;
  if ((args.residual == nullptr) != (args.residual_out == nullptr)) {
    return invalid("residual and residual_out must be given together");
  }
  if (args.rows == 0) return Status::Ok();
  if (args.x == nullptr || args.y == nullptr || args.rstd == nullptr) {
    return invalid("x, y and rstd are required");
  }
  if (!all_aligned({args.y, args.x, args.weight, args.residual, args.residual_out},
                   dtype_size(args.dtype)) ||
      !all_aligned({args.rstd}, sizeof(float))) {
    return invalid("every pointer must be aligned to its element size");
  }
  return visit_dtype(args.dtype, [&](auto type_tag) {
    return fwd_typed<decltype(type_tag)>(args, static_cast<cudaStream_t>(stream));
  });
}

Status bwd_cuda(const BwdArgs& args, void* stream) {
  if (Status s = check_sizes(args.rows, args.hidden, args.dtype); !s.ok()) return s;
  if (args.rows > 0) {
    if (args.dx == nullptr || args.dy == nullptr || args.z == nullptr || args.rstd == nullptr) {
      return invalid("dx, dy, z and rstd are required");
    }
  }
  if (!all_aligned({args.dx, args.dweight, args.dy, args.z, args.weight, args.dresidual},
                   dtype_size(args.dtype)) ||
      !all_aligned({args.rstd}, sizeof(float))) {
    return invalid("every pointer must be aligned to its element size");
  }
  if (!all_aligned({args.workspace}, 16)) return invalid("workspace must be 16-byte aligned");
  return visit_dtype(args.dtype, [&](auto type_tag) {
    return bwd_typed<decltype(type_tag)>(args, static_cast<cudaStream_t>(stream));
  });
}

int64_t bwd_workspace_floats_cuda(int64_t rows, int64_t hidden, bool want_dweight) {
  if (!want_dweight || rows <= 0 || hidden <= 0 || hidden > INT_MAX) return 0;
  int multiprocessors = 0;
  // On failure bwd_cuda reports the same error; no workspace is needed to get there.
  if (!current_multiprocessor_count(&multiprocessors).ok()) return 0;
  return max_bwd_grid_blocks(rows, hidden, multiprocessors) * hidden;
}

}  // namespace tk::rmsnorm
