// AdaLN CUDA launchers (the host API of adaln.h): check the arguments, pick a kernel and its
// shape from launch_config.h, launch on the caller's stream. No torch headers.
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
#include "adaln/adaln.cuh"
#include "adaln/adaln.h"
#include "adaln/launch_config.h"

namespace tk::adaln {
namespace {

Status check_common(int64_t batch, int64_t seq, int64_t hidden, Norm norm, DType dtype) {
  if (batch < 0 || seq < 0) return invalid("batch and seq must be non-negative");
  if (hidden < 1) return invalid("hidden must be at least 1");
  if (hidden > INT_MAX) return invalid("hidden must be below 2^31");
  if (norm != Norm::kRms && norm != Norm::kLayer) return invalid("norm must be rms or layer");
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return Status::Error(StatusCode::kUnsupportedDType,
                         "dtype must be float32, float16 or bfloat16");
  }
  return Status::Ok();
}

// Calls fn(T{}) with T the CUDA element type of `dtype` (checked by check_common).
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

template <typename T, bool kSampleRows, size_t kShape>
void launch_fwd_resident(const FwdParams<T>& p, cudaStream_t stream) {
  constexpr ResidentShape s = kSampleRows ? kFwdSampleShapes[kShape] : kFwdShapes[kShape];
  adaln_fwd_resident<T, s.threads_per_row, s.vecs_per_thread, s.rows_per_block,
                     s.min_blocks_per_sm>
      <<<grid_size(ceil_div(p.rows, s.rows_per_block)), s.threads_per_block(), 0, stream>>>(p);
}

template <typename T, bool kSampleRows, size_t... kShapes>
void launch_fwd_resident_shape(int shape, const FwdParams<T>& p, cudaStream_t stream,
                               std::index_sequence<kShapes...>) {
  ((shape == static_cast<int>(kShapes) ? launch_fwd_resident<T, kSampleRows, kShapes>(p, stream)
                                       : void()),
   ...);
}

// Instantiated for every power-of-two vector width from 16 bytes down to one element.
template <typename T, int kVecElems = kElemsPer16Bytes<T>>
void launch_fwd_looped(int vec_elems, const FwdParams<T>& p, cudaStream_t stream) {
  if constexpr (kVecElems > 1) {
    if (vec_elems < kVecElems) return launch_fwd_looped<T, kVecElems / 2>(vec_elems, p, stream);
  }
  adaln_fwd_looped<T, kVecElems>
      <<<grid_size(p.rows), looped_threads_per_row(p.hidden), 0, stream>>>(p);
}

template <typename T>
Status fwd_typed(const FwdArgs& a, cudaStream_t stream) {
  FwdParams<T> p;
  p.y = static_cast<T*>(a.y);
  p.z_out = static_cast<T*>(a.z_out);
  p.mean = a.mean;
  p.rstd = a.rstd;
  p.x = static_cast<const T*>(a.x);
  p.branch = static_cast<const T*>(a.branch);
  p.gate = static_cast<const T*>(a.gate);
  p.scale = static_cast<const T*>(a.scale);
  p.shift = static_cast<const T*>(a.shift);
  p.weight = static_cast<const T*>(a.weight);
  p.rows = a.batch * a.seq;
  p.seq = a.seq;
  p.hidden = static_cast<int>(a.hidden);
  p.inv_hidden = 1.0f / static_cast<float>(a.hidden);
  p.eps = a.eps;
  p.layer = a.norm == Norm::kLayer;
  p.scale_per_token = a.scale_per_token;
  p.shift_per_token = a.shift_per_token;
  p.gate_per_token = a.gate_per_token;

  const int elem_bytes = sizeof(T);
  const int vec_bytes =
      common_vector_bytes({a.y, a.z_out, a.x, a.branch, a.gate, a.scale, a.shift, a.weight},
                          a.hidden * elem_bytes, elem_bytes);
  const int shape =
      vec_bytes == 16 ? find_resident_shape(kFwdShapes, a.hidden / kElemsPer16Bytes<T>) : -1;
  // Plain rows with per-sample scale and shift take kFwdSampleShapes (launch_config.h).
  const bool sample_rows = !a.gated && !a.scale_per_token && !a.shift_per_token;
  constexpr auto kShapeIndices = std::make_index_sequence<std::size(kFwdShapes)>{};
  if (shape >= 0 && sample_rows) {
    launch_fwd_resident_shape<T, true>(shape, p, stream, kShapeIndices);
  } else if (shape >= 0) {
    launch_fwd_resident_shape<T, false>(shape, p, stream, kShapeIndices);
  } else {
    launch_fwd_looped<T>(vec_bytes / elem_bytes, p, stream);
  }
  return check_last_launch();
}

// ---------------------------------------------------------------------------------------------
// Backward

// Which kernel runs, on how many blocks, and where its fp32 scratch lives in the workspace.
struct BwdPlan {
  int vec_bytes;
  int resident_shape;   // index into kBwdShapes, or -1 for the looped kernel
  bool fused_sums;      // the resident kernel sums its partial rows itself (cooperative launch)
  int slice_columns;    // its column slices (fused_slice_columns)
  int64_t chunks;       // blocks per sample
  int64_t blocks;       // batch * chunks
  // Offsets (in floats) into the workspace, -1 where that buffer is not needed.
  int64_t partial_p, partial_shift, partial_gate, sample_p;
  int64_t workspace_floats;
};

// Needs the per-sample dy * xhat sums (dscale) or the dweight sums.
bool wants_partial_p(const BwdArgs& a) { return !a.scale_per_token || a.dweight != nullptr; }

template <typename T>
BwdPlan plan_bwd(const BwdArgs& a, int multiprocessors) {
  BwdPlan plan{};
  const int elem_bytes = sizeof(T);
  plan.vec_bytes = common_vector_bytes(
      {a.dx, a.dscale, a.dshift, a.dbranch, a.dgate, a.dy, a.dz, a.z, a.branch, a.gate, a.scale,
       a.weight},
      a.hidden * elem_bytes, elem_bytes);
  plan.resident_shape =
      plan.vec_bytes == 16 ? find_resident_shape(kBwdShapes, a.hidden / kElemsPer16Bytes<T>)
                           : -1;
  const int blocks_per_sm = plan.resident_shape >= 0
                                ? kBwdShapes[plan.resident_shape].min_blocks_per_sm
                                : looped_blocks_per_sm(looped_threads_per_row(a.hidden));
  // Fused only with a per-sample scale: ptxas spilled 12 bytes in the fused fp16 kernels with a
  // per-token scale (sm_90), which keep the second pass for their per-sample shift or gate.
  const int64_t fused_chunks =
      plan.resident_shape >= 0 && !a.scale_per_token
          ? fused_bwd_chunks_per_sample(a.batch, a.seq, blocks_per_sm, multiprocessors)
          : 0;
  plan.fused_sums = fused_chunks > 0;
  plan.chunks = plan.fused_sums
                    ? fused_chunks
                    : bwd_chunks_per_sample(a.batch, a.seq, blocks_per_sm, multiprocessors);
  plan.blocks = a.batch * plan.chunks;
  plan.slice_columns = fused_slice_columns(a.hidden, plan.chunks);

  // Every buffer starts 16-byte aligned (the kernels store fp32 partials as float4).
  int64_t used = 0;
  const auto take = [&used](bool needed, int64_t floats) -> int64_t {
    if (!needed) return -1;
    const int64_t offset = used;
    used += ceil_div(floats, 4) * 4;
    return offset;
  };
  const int64_t partial_floats = plan.blocks * a.hidden;
  plan.partial_p = take(wants_partial_p(a), partial_floats);
  plan.partial_shift = take(!a.shift_per_token, partial_floats);
  plan.partial_gate = take(a.gated && !a.gate_per_token, partial_floats);
  plan.sample_p = take(a.dweight != nullptr, a.batch * a.hidden);
  plan.workspace_floats = used;
  return plan;
}

// The resident backward of one shape: fused (launched cooperatively: every block resident at
// once, as its grid barrier needs) or plain. The fused launch fails with
// cudaErrorCooperativeLaunchTooLarge where the device holds fewer blocks than its multiprocessor
// count promises (e.g. under MPS); the caller then runs the plain kernel and the second pass.
template <typename T, size_t kShape, bool kSampleScale>
cudaError_t launch_bwd_resident(const BwdParams<T>& p, const ReduceParams<T>& r, int64_t blocks,
                                bool fused, cudaStream_t stream) {
  constexpr ResidentShape s = kBwdShapes[kShape];
  static_assert(s.vecs_per_thread == 1 && s.rows_per_block == 1, "one vector, one row");
  const dim3 grid(static_cast<unsigned>(blocks));
  if constexpr (kSampleScale) {
    if (fused) {
      return launch_cooperative_kernel(
          adaln_bwd_resident<T, s.threads_per_row, s.min_blocks_per_sm, true, true>, grid,
          dim3(s.threads_per_block()), stream, p, r);
    }
  }
  adaln_bwd_resident<T, s.threads_per_row, s.min_blocks_per_sm, kSampleScale, false>
      <<<grid, s.threads_per_block(), 0, stream>>>(p, r);
  return cudaGetLastError();
}

template <typename T, size_t... kShapes>
cudaError_t launch_bwd_resident_shape(int shape, const BwdParams<T>& p, const ReduceParams<T>& r,
                                      int64_t blocks, bool fused, cudaStream_t stream,
                                      std::index_sequence<kShapes...>) {
  cudaError_t error = cudaSuccess;
  ((shape == static_cast<int>(kShapes)
        ? void(error = p.scale_per_token
                           ? launch_bwd_resident<T, kShapes, false>(p, r, blocks, fused, stream)
                           : launch_bwd_resident<T, kShapes, true>(p, r, blocks, fused, stream))
        : void()),
   ...);
  return error;
}

template <typename T, int kVecElems = kElemsPer16Bytes<T>>
void launch_bwd_looped(int vec_elems, const BwdParams<T>& p, int64_t blocks,
                       cudaStream_t stream) {
  if constexpr (kVecElems > 1) {
    if (vec_elems < kVecElems) {
      return launch_bwd_looped<T, kVecElems / 2>(vec_elems, p, blocks, stream);
    }
  }
  adaln_bwd_looped<T, kVecElems>
      <<<static_cast<unsigned>(blocks), looped_threads_per_row(p.hidden), 0, stream>>>(p);
}

float* workspace_at(float* workspace, int64_t offset) {
  return offset >= 0 ? workspace + offset : nullptr;
}

// No rows: every per-sample gradient and dweight is an empty sum. All-zero bits are 0.0 in
// every supported dtype.
Status zero_empty_sums(const BwdArgs& a, cudaStream_t stream) {
  const size_t per_sample_bytes = a.batch * a.hidden * dtype_size(a.dtype);
  const std::pair<void*, size_t> outputs[] = {
      {a.scale_per_token ? nullptr : a.dscale, per_sample_bytes},
      {a.shift_per_token ? nullptr : a.dshift, per_sample_bytes},
      {a.gated && !a.gate_per_token ? a.dgate : nullptr, per_sample_bytes},
      {a.dweight, a.hidden * dtype_size(a.dtype)},
  };
  for (const auto& [pointer, bytes] : outputs) {
    if (pointer == nullptr || bytes == 0) continue;
    if (Status s = status_from(cudaMemsetAsync(pointer, 0, bytes, stream)); !s.ok()) return s;
  }
  return Status::Ok();
}

template <typename T>
Status bwd_typed(const BwdArgs& a, cudaStream_t stream) {
  if (a.batch * a.seq == 0) return zero_empty_sums(a, stream);
  int multiprocessors = 0;
  if (Status s = current_multiprocessor_count(&multiprocessors); !s.ok()) return s;
  const BwdPlan plan = plan_bwd<T>(a, multiprocessors);
  if (plan.workspace_floats > 0 && a.workspace == nullptr) {
    return invalid("the backward needs its workspace (bwd_workspace_floats_cuda floats)");
  }
  const int64_t column_tiles = ceil_div(a.hidden, kReduceColumns);
  if (plan.blocks > INT_MAX || a.batch * column_tiles > INT_MAX) {
    return invalid("batch * hidden too large for the backward grid");
  }

  BwdParams<T> p;
  p.dx = static_cast<T*>(a.dx);
  p.dscale = static_cast<T*>(a.dscale);
  p.dshift = a.shift_per_token ? static_cast<T*>(a.dshift) : nullptr;
  p.dbranch = static_cast<T*>(a.dbranch);
  p.dgate = static_cast<T*>(a.dgate);
  p.partial_p = workspace_at(a.workspace, plan.partial_p);
  p.partial_shift = workspace_at(a.workspace, plan.partial_shift);
  p.partial_gate = workspace_at(a.workspace, plan.partial_gate);
  p.dy = static_cast<const T*>(a.dy);
  p.dz = static_cast<const T*>(a.dz);
  p.z = static_cast<const T*>(a.z);
  p.branch = static_cast<const T*>(a.branch);
  p.gate = static_cast<const T*>(a.gate);
  p.scale = static_cast<const T*>(a.scale);
  p.weight = static_cast<const T*>(a.weight);
  p.mean = a.mean;
  p.rstd = a.rstd;
  p.seq = a.seq;
  p.chunks = plan.chunks;
  p.hidden = static_cast<int>(a.hidden);
  p.inv_hidden = 1.0f / static_cast<float>(a.hidden);
  p.layer = a.norm == Norm::kLayer;
  p.scale_per_token = a.scale_per_token;
  p.shift_per_token = a.shift_per_token;
  p.gate_per_token = a.gate_per_token;

  ReduceParams<T> r;
  r.dscale = static_cast<T*>(a.dscale);
  r.dshift = static_cast<T*>(a.dshift);
  r.dgate = static_cast<T*>(a.dgate);
  r.sample_p = workspace_at(a.workspace, plan.sample_p);
  r.partial_p = p.partial_p;
  r.partial_shift = p.partial_shift;
  r.partial_gate = p.partial_gate;
  r.weight = p.weight;
  r.chunks = plan.chunks;
  r.column_tiles = column_tiles;
  r.hidden = p.hidden;
  r.slice_columns = plan.slice_columns;
  r.scale_per_token = a.scale_per_token;

  bool sums_done = false;
  if (plan.resident_shape >= 0) {
    constexpr auto kShapeIndices = std::make_index_sequence<std::size(kBwdShapes)>{};
    cudaError_t error = launch_bwd_resident_shape<T>(plan.resident_shape, p, r, plan.blocks,
                                                     plan.fused_sums, stream, kShapeIndices);
    sums_done = plan.fused_sums && error == cudaSuccess;
    if (plan.fused_sums && error == cudaErrorCooperativeLaunchTooLarge) {
      (void)cudaGetLastError();  // clears the error; the plain kernel takes the same chunks
      error = launch_bwd_resident_shape<T>(plan.resident_shape, p, r, plan.blocks, false, stream,
                                           kShapeIndices);
    }
    if (Status s = status_from(error); !s.ok()) return s;
  } else {
    launch_bwd_looped<T>(plan.vec_bytes / static_cast<int>(sizeof(T)), p, plan.blocks, stream);
    if (Status s = check_last_launch(); !s.ok()) return s;
  }
  const bool any_partials =
      r.partial_p != nullptr || r.partial_shift != nullptr || r.partial_gate != nullptr;
  if (!any_partials || (sums_done && a.dweight == nullptr)) return Status::Ok();
  // The reduction passes start as the kernel before them ends (programmatic dependent launch,
  // sm_90+), their launch latency hidden behind its last blocks; they wait for it before reading
  // its partial rows.
  int capability = 0;
  if (Status s = current_compute_capability(&capability); !s.ok()) return s;
  const bool overlap = capability >= 90;
  if (!sums_done) {
    const unsigned reduce_blocks = static_cast<unsigned>(a.batch * column_tiles);
    const auto reduce_chunks = a.hidden % 4 == 0 ? adaln_reduce_chunks<T, 4>
                                                 : adaln_reduce_chunks<T, 1>;
    if (Status s = status_from(launch_kernel(reduce_chunks, dim3(reduce_blocks),
                                             dim3(kReduceThreads), 0, stream, overlap, r));
        !s.ok() || a.dweight == nullptr) {
      return s;
    }
  }
  return status_from(launch_kernel(
      adaln_reduce_dweight<T>, dim3(static_cast<unsigned>(column_tiles)),
      dim3(kReduceColumns, kReduceRowGroups), 0, stream, overlap, static_cast<T*>(a.dweight),
      r.sample_p, a.scale_per_token ? nullptr : p.scale, a.batch, p.hidden));
}

}  // namespace

Status fwd_cuda(const FwdArgs& args, void* stream) {
  if (Status s = check_common(args.batch, args.seq, args.hidden, args.norm, args.dtype); !s.ok()) {
    return s;
  }
  if (args.batch * args.seq == 0) return Status::Ok();
  if (args.y == nullptr || args.mean == nullptr || args.rstd == nullptr || args.x == nullptr ||
      args.scale == nullptr || args.shift == nullptr) {
    return invalid("y, mean, rstd, x, scale and shift are required");
  }
  if (args.gated && (args.branch == nullptr || args.gate == nullptr || args.z_out == nullptr)) {
    return invalid("gated: branch, gate and z_out are required");
  }
  if (!args.gated && (args.branch != nullptr || args.gate != nullptr || args.z_out != nullptr)) {
    return invalid("not gated: branch, gate and z_out must be null");
  }
  if (!all_aligned({args.y, args.z_out, args.x, args.branch, args.gate, args.scale, args.shift,
                    args.weight},
                   dtype_size(args.dtype)) ||
      !all_aligned({args.mean, args.rstd}, sizeof(float))) {
    return invalid("every pointer must be aligned to its element size");
  }
  return visit_dtype(args.dtype, [&](auto type_tag) {
    return fwd_typed<decltype(type_tag)>(args, static_cast<cudaStream_t>(stream));
  });
}

Status bwd_cuda(const BwdArgs& args, void* stream) {
  if (Status s = check_common(args.batch, args.seq, args.hidden, args.norm, args.dtype); !s.ok()) {
    return s;
  }
  if (args.batch * args.seq > 0) {
    if (args.dx == nullptr || args.dscale == nullptr ||
        (args.dshift == nullptr && !args.shift_per_token) || args.dy == nullptr ||
        args.z == nullptr || args.scale == nullptr || args.mean == nullptr ||
        args.rstd == nullptr) {
      return invalid("dx, dscale, dshift (unless per token), dy, z, scale, mean and rstd are "
                     "required");
    }
    if (args.gated && (args.branch == nullptr || args.gate == nullptr ||
                       args.dbranch == nullptr || args.dgate == nullptr)) {
      return invalid("gated: branch, gate, dbranch and dgate are required");
    }
  }
  if (!args.gated && (args.branch != nullptr || args.gate != nullptr ||
                      args.dbranch != nullptr || args.dgate != nullptr)) {
    return invalid("not gated: branch, gate, dbranch and dgate must be null");
  }
  if (!all_aligned({args.dx, args.dscale, args.dshift, args.dweight, args.dbranch, args.dgate,
                    args.dy, args.dz, args.z, args.branch, args.gate, args.scale, args.weight},
                   dtype_size(args.dtype)) ||
      !all_aligned({args.mean, args.rstd}, sizeof(float))) {
    return invalid("every pointer must be aligned to its element size");
  }
  if (!all_aligned({args.workspace}, 16)) return invalid("workspace must be 16-byte aligned");
  return visit_dtype(args.dtype, [&](auto type_tag) {
    return bwd_typed<decltype(type_tag)>(args, static_cast<cudaStream_t>(stream));
  });
}

int64_t bwd_workspace_floats_cuda(const BwdArgs& args) {
  if (!check_common(args.batch, args.seq, args.hidden, args.norm, args.dtype).ok() ||
      args.batch * args.seq == 0) {
    return 0;
  }
  int multiprocessors = 0;
  // On failure bwd_cuda reports the same error; no workspace is needed to get there.
  if (!current_multiprocessor_count(&multiprocessors).ok()) return 0;
  int64_t floats = 0;
  visit_dtype(args.dtype, [&](auto type_tag) {
    floats = plan_bwd<decltype(type_tag)>(args, multiprocessors).workspace_floats;
    return Status::Ok();
  });
  return floats;
}

}  // namespace tk::adaln
