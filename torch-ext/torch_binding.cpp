// The only translation unit that sees torch. It checks tensors, turns them into the
// framework-free host API of each kernel (kernel_src/<kernel>/<kernel>.h) and registers the
// implementations of the `*_out` ops. The schemas live in transformer_kernels/_schemas.py.
//
// The op namespace is not compiled in: the builder's generated module init (PyInit_<ns>)
// calls tk_register_impls(ns), so this object file is the same for every namespace and a
// changed kernel source recompiles that source and relinks, nothing more.
// TK_WITH_CUDA is defined when the variant links CUDA kernels.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#ifdef TK_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rmsnorm/rmsnorm.h"

namespace {

tk::DType to_tk_dtype(const at::Tensor& t, const char* op, const char* name) {
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
void check_tensor(const at::Tensor& t, const char* op, const char* name, const at::Tensor& x,
                  at::ScalarType dtype, at::IntArrayRef shape) {
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(),
              " but x is on ", x.device());
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void check_x(const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 2 && x.size(1) > 0, op,
                    ": x must be 2-D [rows, hidden] with hidden >= 1, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.is_contiguous(), op, ": x must be contiguous");
  TORCH_CHECK(x.is_cpu() || x.is_cuda(), op, ": x must be a CPU or CUDA tensor, got ",
              x.device());
}

void check_status(const tk::Status& status, const char* op) {
  TORCH_CHECK(status.ok(), op, " failed: ", status.message);
}

const void* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr() : nullptr;
}

#ifdef TK_WITH_CUDA
void* current_stream(const at::Tensor& x) {
  return at::cuda::getCurrentCUDAStream(x.device().index()).stream();
}
#endif

// ---------------------------------------------------------------------------------------
// RMSNorm

void check_rms_norm_weight(const std::optional<at::Tensor>& weight, const char* op,
                           const at::Tensor& x) {
  if (weight.has_value()) {
    check_tensor(*weight, op, "weight", x, x.scalar_type(), {x.size(1)});
  }
}

void run_rms_norm_fwd(const tk::rmsnorm::FwdArgs& args, const at::Tensor& x, const char* op) {
  if (x.is_cuda()) {
#ifdef TK_WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    check_status(tk::rmsnorm::fwd_cuda(args, current_stream(x)), op);
    return;
#else
    TORCH_CHECK(false, op, ": this variant was built without CUDA; x is on ", x.device());
#endif
  }
  check_status(tk::rmsnorm::fwd_cpu(args), op);
}

tk::rmsnorm::FwdArgs rms_norm_fwd_args(at::Tensor& y, at::Tensor& rstd, const at::Tensor& x,
                                       const std::optional<at::Tensor>& weight, double eps,
                                       const char* op) {
  check_x(x, op);
  check_tensor(y, op, "y", x, x.scalar_type(), x.sizes());
  check_tensor(rstd, op, "rstd", x, at::kFloat, {x.size(0)});
  check_rms_norm_weight(weight, op, x);
  TORCH_CHECK_VALUE(eps >= 0, op, ": eps must be >= 0, got ", eps);
  tk::rmsnorm::FwdArgs args;
  args.y = y.data_ptr();
  args.rstd = rstd.data_ptr<float>();
  args.x = x.data_ptr();
  args.weight = optional_data(weight);
  args.rows = x.size(0);
  args.hidden = x.size(1);
  args.eps = static_cast<float>(eps);
  args.dtype = to_tk_dtype(x, op, "x");
  return args;
}

void rms_norm_fwd_out(at::Tensor& y, at::Tensor& rstd, const at::Tensor& x,
                      const std::optional<at::Tensor>& weight, double eps) {
  constexpr const char* op = "rms_norm_fwd_out";
  run_rms_norm_fwd(rms_norm_fwd_args(y, rstd, x, weight, eps, op), x, op);
}

void rms_norm_add_fwd_out(at::Tensor& y, at::Tensor& residual_out, at::Tensor& rstd,
                          const at::Tensor& x, const at::Tensor& residual,
                          const std::optional<at::Tensor>& weight, double eps) {
  constexpr const char* op = "rms_norm_add_fwd_out";
  tk::rmsnorm::FwdArgs args = rms_norm_fwd_args(y, rstd, x, weight, eps, op);
  check_tensor(residual, op, "residual", x, x.scalar_type(), x.sizes());
  check_tensor(residual_out, op, "residual_out", x, x.scalar_type(), x.sizes());
  args.residual = residual.data_ptr();
  args.residual_out = residual_out.data_ptr();
  run_rms_norm_fwd(args, x, op);
}

void rms_norm_bwd_out(at::Tensor& dx, const std::optional<at::Tensor>& dweight,
                      const at::Tensor& dy, const at::Tensor& z,
                      const std::optional<at::Tensor>& weight, const at::Tensor& rstd,
                      const std::optional<at::Tensor>& dresidual) {
  constexpr const char* op = "rms_norm_bwd_out";
  check_x(z, op);
  check_tensor(dx, op, "dx", z, z.scalar_type(), z.sizes());
  check_tensor(dy, op, "dy", z, z.scalar_type(), z.sizes());
  check_tensor(rstd, op, "rstd", z, at::kFloat, {z.size(0)});
  check_rms_norm_weight(weight, op, z);
  if (dweight.has_value()) {
    TORCH_CHECK_VALUE(weight.has_value(), op, ": dweight was given but weight is None");
    check_tensor(*dweight, op, "dweight", z, z.scalar_type(), {z.size(1)});
  }
  if (dresidual.has_value()) {
    check_tensor(*dresidual, op, "dresidual", z, z.scalar_type(), z.sizes());
  }
  tk::rmsnorm::BwdArgs args;
  args.dx = dx.data_ptr();
  args.dweight = dweight.has_value() ? dweight->data_ptr() : nullptr;
  args.dy = dy.data_ptr();
  args.z = z.data_ptr();
  args.weight = optional_data(weight);
  args.rstd = rstd.data_ptr<float>();
  args.dresidual = optional_data(dresidual);
  args.rows = z.size(0);
  args.hidden = z.size(1);
  args.dtype = to_tk_dtype(z, op, "z");
  const bool want_dweight = dweight.has_value();

  if (z.is_cuda()) {
#ifdef TK_WITH_CUDA
    const c10::cuda::CUDAGuard guard(z.device());
    at::Tensor workspace = at::empty(
        {tk::rmsnorm::bwd_workspace_floats_cuda(args.rows, args.hidden, want_dweight)},
        z.options().dtype(at::kFloat));
    args.workspace = workspace.data_ptr<float>();
    check_status(tk::rmsnorm::bwd_cuda(args, current_stream(z)), op);
    return;
#else
    TORCH_CHECK(false, op, ": this variant was built without CUDA; z is on ", z.device());
#endif
  }
  at::Tensor workspace = at::empty(
      {tk::rmsnorm::bwd_workspace_floats_cpu(args.rows, args.hidden, want_dweight)},
      z.options().dtype(at::kFloat));
  args.workspace = workspace.data_ptr<float>();
  check_status(tk::rmsnorm::bwd_cpu(args), op);
}

void register_impls(torch::Library& lib) {
  lib.impl("rms_norm_fwd_out", &rms_norm_fwd_out);
  lib.impl("rms_norm_add_fwd_out", &rms_norm_add_fwd_out);
  lib.impl("rms_norm_bwd_out", &rms_norm_bwd_out);
}

bool already_registered(const std::string& ns) {
  // A second copy of the same build (same namespace) loaded from another path finds the
  // first copy's kernels; registering again would override them with identical ones.
  const auto op = c10::Dispatcher::singleton().findOp({ns + "::rms_norm_fwd_out", ""});
  return op.has_value() && op->hasKernelForDispatchKey(c10::DispatchKey::CPU);
}

// Live for the whole process: destroying a Library deregisters its kernels.
std::vector<std::unique_ptr<torch::Library>>& libraries() {
  static std::vector<std::unique_ptr<torch::Library>> libs;
  return libs;
}

std::string& last_error() {
  static std::string message;
  return message;
}

}  // namespace

// Called once from PyInit_<ns>. Returns nullptr on success, else an error message.
extern "C" const char* tk_register_impls(const char* ns) {
  try {
    if (already_registered(ns)) return nullptr;
    std::vector<c10::DispatchKey> keys{c10::DispatchKey::CPU};
#ifdef TK_WITH_CUDA
    keys.push_back(c10::DispatchKey::CUDA);
#endif
    for (const c10::DispatchKey key : keys) {
      auto lib = std::make_unique<torch::Library>(torch::Library::IMPL, ns, key, __FILE__,
                                                  __LINE__);
      register_impls(*lib);
      libraries().push_back(std::move(lib));
    }
    return nullptr;
  } catch (const std::exception& error) {
    last_error() = error.what();
    return last_error().c_str();
  }
}
