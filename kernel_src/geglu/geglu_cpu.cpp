// GEGLU / GELU forward and backward on the CPU: OpenMP threads over rows (gated) or element
// ranges (elementwise), the fp32 math of activation.h, one rounding per output. The loops over
// a row or range are TK_CPU_CLONES and vectorize (exp in plain arithmetic; the exact GELU's
// erff stays a scalar call).
#include <cstdint>
#include <type_traits>

#include "_common/cpu_convert.h"
#include "_common/cpu_math.h"
#include "_common/status.h"
#include "geglu/activation.h"
#include "geglu/geglu.h"

namespace tk::geglu {
namespace {

using cpu::BFloat16;
using cpu::Float16;
using cpu::from_float;
using cpu::to_float;

// Below this many output elements a call runs on the calling thread: waking the pool costs more.
constexpr int64_t kMinElementsForThreads = 1 << 15;
// Elementwise work is cut into chunks of this many elements, one chunk per loop iteration.
constexpr int64_t kChunk = 1 << 14;

bool is_known_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

bool is_known_activation(Activation activation) {
  return activation == Activation::kGeluTanh || activation == Activation::kGelu ||
         activation == Activation::kSilu;
}

// Calls fn(T{}, std::integral_constant<Activation, act>{}) for the storage type of `dtype`.
template <typename Fn>
void visit(DType dtype, Activation activation, Fn&& fn) {
  const auto with_type = [&](auto type_tag) {
    switch (activation) {
      case Activation::kGeluTanh:
        return fn(type_tag, std::integral_constant<Activation, Activation::kGeluTanh>{});
      case Activation::kGelu:
        return fn(type_tag, std::integral_constant<Activation, Activation::kGelu>{});
      default:
        return fn(type_tag, std::integral_constant<Activation, Activation::kSilu>{});
    }
  };
  switch (dtype) {
    case DType::kFloat32: return with_type(float{});
    case DType::kFloat16: return with_type(Float16{});
    default: return with_type(BFloat16{});
  }
}

template <typename T, Activation kAct>
TK_CPU_CLONES void gated_fwd_row(const T* a, const T* b, T* y, int64_t hidden) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    y[j] = from_float<T>(activation<kAct>(to_float(a[j]), nullptr) * to_float(b[j]));
  }
}

template <typename T, Activation kAct>
void gated_fwd(const FwdArgs& args) {
  const int64_t hidden = args.hidden;
  const int64_t a_offset = args.swap_halves ? hidden : 0;
  const int64_t b_offset = args.swap_halves ? 0 : hidden;
#pragma omp parallel for schedule(static) if (args.rows * hidden >= kMinElementsForThreads)
  for (int64_t r = 0; r < args.rows; ++r) {
    const T* x = static_cast<const T*>(args.x) + r * 2 * hidden;
    gated_fwd_row<T, kAct>(x + a_offset, x + b_offset, static_cast<T*>(args.y) + r * hidden,
                           hidden);
  }
}

template <typename T, Activation kAct>
TK_CPU_CLONES void gated_bwd_row(const T* a, const T* b, const T* dy, T* da, T* db,
                                 int64_t hidden) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    const float g = to_float(dy[j]);
    float grad;
    const float act = activation<kAct>(to_float(a[j]), &grad);
    da[j] = from_float<T>(g * to_float(b[j]) * grad);
    db[j] = from_float<T>(g * act);
  }
}

template <typename T, Activation kAct>
void gated_bwd(const BwdArgs& args) {
  const int64_t hidden = args.hidden;
  const int64_t a_offset = args.swap_halves ? hidden : 0;
  const int64_t b_offset = args.swap_halves ? 0 : hidden;
#pragma omp parallel for schedule(static) if (args.rows * hidden >= kMinElementsForThreads)
  for (int64_t r = 0; r < args.rows; ++r) {
    const T* x = static_cast<const T*>(args.x) + r * 2 * hidden;
    T* dx = static_cast<T*>(args.dx) + r * 2 * hidden;
    gated_bwd_row<T, kAct>(x + a_offset, x + b_offset, static_cast<const T*>(args.dy) + r * hidden,
                           dx + a_offset, dx + b_offset, hidden);
  }
}

// out = act(x), or with dy the gradient dy * act'(x), over [begin, end).
template <typename T, Activation kAct>
TK_CPU_CLONES void elementwise_range(T* out, const T* x, const T* dy, int64_t begin,
                                     int64_t end) {
  if (dy == nullptr) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      out[i] = from_float<T>(activation<kAct>(to_float(x[i]), nullptr));
    }
    return;
  }
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    float grad;
    activation<kAct>(to_float(x[i]), &grad);
    out[i] = from_float<T>(to_float(dy[i]) * grad);
  }
}

template <typename T, Activation kAct>
void elementwise(T* out, const T* x, const T* dy, int64_t numel) {
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (numel >= kMinElementsForThreads)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = c == chunks - 1 ? numel : (c + 1) * kChunk;
    elementwise_range<T, kAct>(out, x, dy, c * kChunk, end);
  }
}

Status check_gated(int64_t rows, int64_t hidden, Activation activation, DType dtype) {
  if (!is_known_dtype(dtype)) {
    return Status::Error(StatusCode::kUnsupportedDType, "geglu: unknown dtype");
  }
  if (!is_known_activation(activation)) return invalid("geglu: unknown activation");
  if (rows < 0) return invalid("geglu: rows must be >= 0");
  if (hidden < 1) return invalid("geglu: hidden must be >= 1");
  return Status::Ok();
}

Status check_elementwise(int64_t numel, Activation activation, DType dtype) {
  if (!is_known_dtype(dtype)) {
    return Status::Error(StatusCode::kUnsupportedDType, "gelu: unknown dtype");
  }
  if (activation != Activation::kGeluTanh && activation != Activation::kGelu) {
    return invalid("gelu: activation must be kGeluTanh or kGelu");
  }
  if (numel < 0) return invalid("gelu: numel must be >= 0");
  return Status::Ok();
}

}  // namespace

Status fwd_cpu(const FwdArgs& args) {
  const Status status = check_gated(args.rows, args.hidden, args.activation, args.dtype);
  if (!status.ok()) return status;
  if (args.rows > 0 && (args.y == nullptr || args.x == nullptr)) {
    return invalid("geglu: y and x must not be null");
  }
  visit(args.dtype, args.activation, [&](auto type_tag, auto act_tag) {
    gated_fwd<decltype(type_tag), decltype(act_tag)::value>(args);
  });
  return Status::Ok();
}

Status bwd_cpu(const BwdArgs& args) {
  const Status status = check_gated(args.rows, args.hidden, args.activation, args.dtype);
  if (!status.ok()) return status;
  if (args.rows > 0 && (args.dx == nullptr || args.dy == nullptr || args.x == nullptr)) {
    return invalid("geglu: dx, dy and x must not be null");
  }
  visit(args.dtype, args.activation, [&](auto type_tag, auto act_tag) {
    gated_bwd<decltype(type_tag), decltype(act_tag)::value>(args);
  });
  return Status::Ok();
}

Status gelu_fwd_cpu(const GeluFwdArgs& args) {
  if (Status s = check_elementwise(args.numel, args.activation, args.dtype); !s.ok()) return s;
  if (args.numel > 0 && (args.y == nullptr || args.x == nullptr)) {
    return invalid("gelu: y and x must not be null");
  }
  visit(args.dtype, args.activation, [&](auto type_tag, auto act_tag) {
    using T = decltype(type_tag);
    elementwise<T, decltype(act_tag)::value>(static_cast<T*>(args.y),
                                             static_cast<const T*>(args.x), nullptr, args.numel);
  });
  return Status::Ok();
}

Status gelu_bwd_cpu(const GeluBwdArgs& args) {
  if (Status s = check_elementwise(args.numel, args.activation, args.dtype); !s.ok()) return s;
  if (args.numel > 0 && (args.dx == nullptr || args.dy == nullptr || args.x == nullptr)) {
    return invalid("gelu: dx, dy and x must not be null");
  }
  visit(args.dtype, args.activation, [&](auto type_tag, auto act_tag) {
    using T = decltype(type_tag);
    elementwise<T, decltype(act_tag)::value>(static_cast<T*>(args.dx),
                                             static_cast<const T*>(args.x),
                                             static_cast<const T*>(args.dy), args.numel);
  });
  return Status::Ok();
}

}  // namespace tk::geglu
