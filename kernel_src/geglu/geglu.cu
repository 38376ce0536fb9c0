// GEGLU / GELU CUDA launchers (the host API of geglu.h): check the arguments, pick the vector
// width and the kernel, launch on the caller's stream. No torch headers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "_common/cuda_check.cuh"
#include "_common/status.h"
#include "geglu/geglu.cuh"
#include "_common/launch_util.h"
#include "geglu/geglu.h"
#include "geglu/launch_config.h"

namespace tk::geglu {
namespace {

bool is_known_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

bool is_known_activation(Activation activation) {
  return activation == Activation::kGeluTanh || activation == Activation::kGelu ||
         activation == Activation::kSilu;
}

Status unsupported_dtype() {
  return Status::Error(StatusCode::kUnsupportedDType,
                       "dtype must be float32, float16 or bfloat16");
}

// Calls fn(T{}) with T the CUDA element type of `dtype` (checked by the caller).
template <typename Fn>
void visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat16: return fn(__half{});
    default: return fn(__nv_bfloat16{});
  }
}

template <Activation kAct>
using ActTag = std::integral_constant<Activation, kAct>;

// Calls fn(ActTag<activation>{}) (activation checked by the caller).
template <typename Fn>
void visit_activation(Activation activation, Fn&& fn) {
  switch (activation) {
    case Activation::kGeluTanh: return fn(ActTag<Activation::kGeluTanh>{});
    case Activation::kGelu: return fn(ActTag<Activation::kGelu>{});
    default: return fn(ActTag<Activation::kSilu>{});
  }
}

// ---------------------------------------------------------------------------------------------
// Gated

Status check_gated(int64_t rows, int64_t hidden, Activation activation, DType dtype) {
  if (!is_known_dtype(dtype)) return unsupported_dtype();
  if (!is_known_activation(activation)) return invalid("unknown activation");
  if (rows < 0) return invalid("rows must be non-negative");
  if (hidden < 1) return invalid("hidden must be at least 1");
  if (hidden > INT_MAX) return invalid("hidden must be below 2^31");
  return Status::Ok();
}

template <typename T, int N, int kVecs, Activation kAct, bool kBackward>
void launch_gated(const GatedParams<T>& p, cudaStream_t stream) {
  const GatedLaunch shape = gated_launch(p.rows, p.hidden / N, kVecs);
  const dim3 grid(grid_size(shape.grid_x), static_cast<unsigned>(shape.grid_y));
  const dim3 block(shape.tx, shape.ty);
  if constexpr (kBackward) {
    geglu_bwd_kernel<T, N, kVecs, kAct><<<grid, block, 0, stream>>>(p);
  } else {
    geglu_fwd_kernel<T, N, kVecs, kAct><<<grid, block, 0, stream>>>(p);
  }
}

// 16-byte vectors when hidden is a whole number of them (then both halves of every row start
// on a vector) and every pointer is 16-byte aligned; single elements otherwise.
template <bool kBackward, typename T>
Status run_gated(const GatedParams<T>& p, Activation activation, bool vectors,
                 cudaStream_t stream) {
  constexpr int kVec = kElemsPer16Bytes<T>;
  visit_activation(activation, [&](auto act_tag) {
    constexpr Activation kAct = decltype(act_tag)::value;
    if (vectors) {
      launch_gated<T, kVec, kGatedPerThread<true, kBackward>, kAct, kBackward>(p, stream);
    } else {
      launch_gated<T, 1, kGatedPerThread<false, kBackward>, kAct, kBackward>(p, stream);
    }
  });
  return check_last_launch();
}

// ---------------------------------------------------------------------------------------------
// Elementwise

Status check_elementwise(int64_t numel, Activation activation, DType dtype) {
  if (!is_known_dtype(dtype)) return unsupported_dtype();
  if (activation != Activation::kGeluTanh && activation != Activation::kGelu) {
    return invalid("gelu: activation must be kGeluTanh or kGelu");
  }
  if (numel < 0) return invalid("numel must be non-negative");
  return Status::Ok();
}

template <typename T, int N, int kVecs, Activation kAct, bool kBackward>
void launch_elementwise(const ElementwiseParams<T>& p, cudaStream_t stream) {
  if (p.num_vecs == 0) return;
  const int64_t blocks = ceil_div(p.num_vecs, static_cast<int64_t>(kThreads) * kVecs);
  gelu_kernel<T, N, kVecs, kAct, kBackward><<<grid_size(blocks), kThreads, 0, stream>>>(p);
}

// With 16-byte aligned pointers the first numel / N * N elements go as vectors and the
// remainder (fewer than N) as single elements in a second, tiny launch.
template <bool kBackward, typename T>
Status run_elementwise(T* out, const T* x, const T* dy, int64_t numel, Activation activation,
                       cudaStream_t stream) {
  constexpr int kVec = kElemsPer16Bytes<T>;
  const bool vectors = all_aligned({out, x, dy}, 16);
  visit_activation(activation, [&](auto act_tag) {
    constexpr Activation kAct = decltype(act_tag)::value;
    if constexpr (kAct != Activation::kSilu) {
      int64_t done = 0;
      if (vectors) {
        const ElementwiseParams<T> body{out, x, dy, numel / kVec};
        launch_elementwise<T, kVec, kElementwisePerThread<true>, kAct, kBackward>(body, stream);
        done = body.num_vecs * kVec;
      }
      const ElementwiseParams<T> rest{out + done, x + done, dy == nullptr ? nullptr : dy + done,
                                      numel - done};
      launch_elementwise<T, 1, kElementwisePerThread<false>, kAct, kBackward>(rest, stream);
    }
  });
  return check_last_launch();
}

}  // namespace

Status fwd_cuda(const FwdArgs& args, void* stream) {
  if (Status s = check_gated(args.rows, args.hidden, args.activation, args.dtype); !s.ok()) {
    return s;
  }
  if (args.rows == 0) return Status::Ok();
  if (args.y == nullptr || args.x == nullptr) return invalid("y and x are required");
  if (!all_aligned({args.y, args.x}, dtype_size(args.dtype))) {
    return invalid("every pointer must be aligned to its element size");
  }
  Status status;
  visit_dtype(args.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    const GatedParams<T> p{static_cast<T*>(args.y), static_cast<const T*>(args.x), nullptr,
                           args.rows, args.hidden, args.swap_halves ? args.hidden : 0,
                           args.swap_halves ? 0 : args.hidden};
    const bool vectors =
        args.hidden % kElemsPer16Bytes<T> == 0 && all_aligned({args.y, args.x}, 16);
    status = run_gated<false>(p, args.activation, vectors, static_cast<cudaStream_t>(stream));
  });
  return status;
}

Status bwd_cuda(const BwdArgs& args, void* stream) {
  if (Status s = check_gated(args.rows, args.hidden, args.activation, args.dtype); !s.ok()) {
    return s;
  }
  if (args.rows == 0) return Status::Ok();
  if (args.dx == nullptr || args.dy == nullptr || args.x == nullptr) {
    return invalid("dx, dy and x are required");
  }
  if (!all_aligned({args.dx, args.dy, args.x}, dtype_size(args.dtype))) {
    return invalid("every pointer must be aligned to its element size");
  }
  Status status;
  visit_dtype(args.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    const GatedParams<T> p{static_cast<T*>(args.dx), static_cast<const T*>(args.x),
                           static_cast<const T*>(args.dy), args.rows, args.hidden,
                           args.swap_halves ? args.hidden : 0, args.swap_halves ? 0 : args.hidden};
    const bool vectors = args.hidden % kElemsPer16Bytes<T> == 0 &&
                         all_aligned({args.dx, args.dy, args.x}, 16);
    status = run_gated<true>(p, args.activation, vectors, static_cast<cudaStream_t>(stream));
  });
  return status;
}

Status gelu_fwd_cuda(const GeluFwdArgs& args, void* stream) {
  if (Status s = check_elementwise(args.numel, args.activation, args.dtype); !s.ok()) return s;
  if (args.numel == 0) return Status::Ok();
  if (args.y == nullptr || args.x == nullptr) return invalid("y and x are required");
  if (!all_aligned({args.y, args.x}, dtype_size(args.dtype))) {
    return invalid("every pointer must be aligned to its element size");
  }
  Status status;
  visit_dtype(args.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    status = run_elementwise<false>(static_cast<T*>(args.y), static_cast<const T*>(args.x),
                                    static_cast<const T*>(nullptr), args.numel, args.activation,
                                    static_cast<cudaStream_t>(stream));
  });
  return status;
}

Status gelu_bwd_cuda(const GeluBwdArgs& args, void* stream) {
  if (Status s = check_elementwise(args.numel, args.activation, args.dtype); !s.ok()) return s;
  if (args.numel == 0) return Status::Ok();
  if (args.dx == nullptr || args.dy == nullptr || args.x == nullptr) {
    return invalid("dx, dy and x are required");
  }
  if (!all_aligned({args.dx, args.dy, args.x}, dtype_size(args.dtype))) {
    return invalid("every pointer must be aligned to its element size");
  }
  Status status;
  visit_dtype(args.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    status = run_elementwise<true>(static_cast<T*>(args.dx), static_cast<const T*>(args.x),
                                   static_cast<const T*>(args.dy), args.numel, args.activation,
                                   static_cast<cudaStream_t>(stream));
  });
  return status;
}

}  // namespace tk::geglu
