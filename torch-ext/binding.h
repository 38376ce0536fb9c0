// Shared by every <kernel>_binding.cpp: tensor checks, device dispatch, the op namespace and
// the registration table. Only the torch-ext/*.cpp translation units see torch; kernel_src/
// stays framework-free.
//
// Each kernel's binding file defines `KernelBinding <kernel>_binding()`; torch_binding.cpp
// lists them and registers every entry for the build's namespace. TK_WITH_CUDA is defined when
// the variant links CUDA kernels.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#ifdef TK_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <optional>
#include <string>
#include <vector>

#include "_common/status.h"

namespace tk::binding {

// One kernel's registrations. `out_ops` run per device key (CPU, and CUDA when built);
// `functional_ops` at CompositeExplicitAutograd, so arguments on two devices reach their
// checks and get an error naming the argument; `autograd` at the Autograd key (may be null).
struct KernelBinding {
  void (*out_ops)(torch::Library&);
  void (*functional_ops)(torch::Library&);
  void (*autograd)(torch::Library&);
};

KernelBinding rmsnorm_binding();
KernelBinding geglu_binding();
KernelBinding rope_binding();
KernelBinding adaln_binding();
KernelBinding flash_attn_binding();

// The namespace this build registered under (set once, before any registration).
std::string& op_namespace();

inline c10::OperatorHandle find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow((op_namespace() + "::" + name).c_str(),
                                                        "");
}

inline tk::DType to_tk_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return tk::DType::kFloat32;
    case at::kHalf: return tk::DType::kFloat16;
    case at::kBFloat16: return tk::DType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, op, ": ", name, " must be float32, float16 or bfloat16, got ",
                       t.scalar_type());
  }
}

// Every tensor handed to a kernel: on x's device, contiguous, of the expected dtype and shape.
inline void check_tensor(const at::Tensor& t, const char* op, const char* name,
                         const at::Tensor& x, at::ScalarType dtype, at::IntArrayRef shape) {
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": ", name, " is on ", t.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// For functional ops: same device and dtype as x (shapes are each op's business).
inline void check_like_x(const at::Tensor& t, const char* op, const char* name,
                         const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": ", name, " is on ", t.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), op, ": ", name, " dtype ",
                   t.scalar_type(), " must match x dtype ", x.scalar_type());
}

inline void check_device(const at::Tensor& x, const char* op, const char* name = "x") {
  TORCH_CHECK(x.is_cpu() || x.is_cuda(), op, ": ", name, " must be a CPU or CUDA tensor, got ",
              x.device());
}

inline void check_status(const tk::Status& status, const char* op) {
  TORCH_CHECK(status.ok(), op, " failed: ", status.message);
}

inline const void* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr() : nullptr;
}

inline std::optional<at::Tensor> contiguous_or_none(const std::optional<at::Tensor>& t) {
  return t.has_value() ? std::optional<at::Tensor>(t->contiguous()) : std::nullopt;
}

// [rows, last dim], contiguous (a copy only when t is not already).
inline at::Tensor rows_of(const at::Tensor& t) {
  return t.reshape({-1, t.size(-1)}).contiguous();
}

inline std::vector<int64_t> leading_dims(const at::Tensor& x) {
  return std::vector<int64_t>(x.sizes().begin(), x.sizes().end() - 1);
}

// Autograd helpers: an optional input saved as an undefined tensor when absent, and a missing
// output gradient (that output was unused) read as zeros. Functions with outputs that are
// never differentiated (mean, rstd, lse) call ctx->set_materialize_grads(false): otherwise
// autograd fills a zero gradient for each of them on every backward, two fill kernels of about
// 1 us each beside AdaLN's 60 us backward kernel at 2x4096x3072 (H100, torch.profiler).
inline std::optional<at::Tensor> optional_from_saved(const at::Tensor& saved) {
  return saved.defined() ? std::optional<at::Tensor>(saved) : std::nullopt;
}

inline at::Tensor grad_or_zeros(const at::Tensor& grad, const at::Tensor& like) {
  return grad.defined() ? grad : at::zeros_like(like);
}

// Runs run_cuda(stream) for a CUDA tensor (under its device guard), run_cpu() otherwise; both
// return a tk::Status. In a variant without CUDA the run_cuda lambda is never instantiated as
// a call, so it may name CUDA-only launchers.
#ifdef TK_WITH_CUDA
template <class RunCuda, class RunCpu>
void run_on_device(const at::Tensor& x, const char* op, RunCuda run_cuda, RunCpu run_cpu) {
  if (x.is_cuda()) {
    const c10::cuda::CUDAGuard guard(x.device());
    check_status(run_cuda(at::cuda::getCurrentCUDAStream(x.device().index()).stream()), op);
    return;
  }
  check_status(run_cpu(), op);
}
#else
template <class RunCuda, class RunCpu>
void run_on_device(const at::Tensor& x, const char* op, RunCuda, RunCpu run_cpu) {
  TORCH_CHECK(!x.is_cuda(), op, ": this variant was built without CUDA; x is on ", x.device());
  check_status(run_cpu(), op);
}
#endif

}  // namespace tk::binding
