// RMSNorm: the out ops (checks, then the framework-free host API of kernel_src/rmsnorm), the
// functional ops (validate, allocate, call the out op) and their C++ autograd. Python holds
// the fakes; the Triton variant registers Python versions of the functional ops instead.
// Keeping this path in C++ keeps the host cost of one call near a plain ATen op (a Python impl
// plus a Python autograd formula measured about 50 us per call on an H200 host, more than the
// kernel itself for a 4096 x 4096 bf16 tensor).

#include <torch/autograd.h>

#include <tuple>

#include "binding.h"
#include "rmsnorm/rmsnorm.h"

namespace tk::binding {
namespace {

void check_x(const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 2 && x.size(1) > 0, op,
                    ": x must be 2-D [rows, hidden] with hidden >= 1, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.is_contiguous(), op, ": x must be contiguous");
  check_device(x, op);
}

void check_rms_norm_weight(const std::optional<at::Tensor>& weight, const char* op,
                           const at::Tensor& x) {
  if (weight.has_value()) {
    check_tensor(*weight, op, "weight", x, x.scalar_type(), {x.size(1)});
  }
}

void run_rms_norm_fwd(const tk::rmsnorm::FwdArgs& args, const at::Tensor& x, const char* op) {
  run_on_device(
      x, op, [&](void* stream) { return tk::rmsnorm::fwd_cuda(args, stream); },
      [&] { return tk::rmsnorm::fwd_cpu(args); });
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
  const auto workspace = [&](int64_t floats) {
    return at::empty({floats}, z.options().dtype(at::kFloat));
  };
  run_on_device(
      z, op,
      [&](void* stream) {
        at::Tensor ws =
            workspace(tk::rmsnorm::bwd_workspace_floats_cuda(args.rows, args.hidden, want_dweight));
        args.workspace = ws.data_ptr<float>();
        return tk::rmsnorm::bwd_cuda(args, stream);
      },
      [&] {
        at::Tensor ws =
            workspace(tk::rmsnorm::bwd_workspace_floats_cpu(args.rows, args.hidden, want_dweight));
        args.workspace = ws.data_ptr<float>();
        return tk::rmsnorm::bwd_cpu(args);
      });
}

void check_rms_norm_inputs(const char* op, const at::Tensor& x,
                           const std::optional<at::Tensor>& weight,
                           const at::Tensor* residual, double eps) {
  to_tk_dtype(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) > 0, op,
                    ": x needs a non-empty last (hidden) dimension, got shape ", x.sizes());
  TORCH_CHECK_VALUE(eps >= 0, op, ": eps must be a non-negative number, got ", eps);
  if (residual != nullptr) {
    check_like_x(*residual, op, "residual", x);
    TORCH_CHECK_VALUE(residual->sizes() == x.sizes(), op, ": residual must have x's shape ",
                      x.sizes(), ", got ", residual->sizes());
  }
  if (weight.has_value()) {
    check_like_x(*weight, op, "weight", x);
    TORCH_CHECK_VALUE(weight->dim() == 1 && weight->size(0) == x.size(-1), op,
                      ": weight must have shape (", x.size(-1), ",) (the last dim of x), got ",
                      weight->sizes());
  }
}

std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& x,
                                            const std::optional<at::Tensor>& weight,
                                            double eps) {
  check_rms_norm_inputs("rms_norm", x, weight, nullptr, eps);
  at::Tensor x2 = rows_of(x);
  at::Tensor y = at::empty_like(x2);
  at::Tensor rstd = at::empty({x2.size(0)}, x.options().dtype(at::kFloat));
  rms_norm_fwd_out(y, rstd, x2, contiguous_or_none(weight), eps);
  return {y.view(x.sizes()), rstd.view(leading_dims(x))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rms_norm_add(
    const at::Tensor& x, const at::Tensor& residual, const std::optional<at::Tensor>& weight,
    double eps) {
  check_rms_norm_inputs("rms_norm_add", x, weight, &residual, eps);
  at::Tensor x2 = rows_of(x);
  at::Tensor y = at::empty_like(x2);
  at::Tensor residual_out = at::empty_like(x2);
  at::Tensor rstd = at::empty({x2.size(0)}, x.options().dtype(at::kFloat));
  rms_norm_add_fwd_out(y, residual_out, rstd, x2, rows_of(residual), contiguous_or_none(weight),
                       eps);
  return {y.view(x.sizes()), residual_out.view(x.sizes()), rstd.view(leading_dims(x))};
}

std::tuple<at::Tensor, at::Tensor> rms_norm_backward(
    const at::Tensor& dy, const at::Tensor& z, const std::optional<at::Tensor>& weight,
    const at::Tensor& rstd, const std::optional<at::Tensor>& dresidual, bool want_dweight) {
  constexpr const char* op = "rms_norm_backward";
  TORCH_CHECK_VALUE(!want_dweight || weight.has_value(), op,
                    ": want_dweight=True needs a weight");
  check_rms_norm_inputs(op, z, weight, nullptr, 0.0);
  check_like_x(dy, op, "dy", z);
  if (dresidual.has_value()) check_like_x(*dresidual, op, "dresidual", z);
  at::Tensor z2 = rows_of(z);
  at::Tensor dx = at::empty_like(z2);
  at::Tensor dweight = want_dweight ? at::empty_like(*weight) : z.new_empty({0});
  std::optional<at::Tensor> dweight_out =
      want_dweight ? std::optional<at::Tensor>(dweight) : std::nullopt;
  std::optional<at::Tensor> dresidual_rows =
      dresidual.has_value() ? std::optional<at::Tensor>(rows_of(*dresidual)) : std::nullopt;
  rms_norm_bwd_out(dx, dweight_out, rows_of(dy), z2, contiguous_or_none(weight),
                   rstd.reshape({-1}).contiguous(), dresidual_rows);
  return {dx.view(z.sizes()), dweight};
}

// Below autograd: the functional ops through the dispatcher (so the fake/CUDA/CPU kernel of
// the current tensors runs, and torch.compile traces them as single nodes).
std::tuple<at::Tensor, at::Tensor> call_rms_norm_backward(
    const at::Tensor& dy, const at::Tensor& z, const std::optional<at::Tensor>& weight,
    const at::Tensor& rstd, const std::optional<at::Tensor>& dresidual, bool want_dweight) {
  static const auto op = find_op("rms_norm_backward")
                             .typed<std::tuple<at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, bool)>();
  return op.call(dy, z, weight, rstd, dresidual, want_dweight);
}

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x,
                                                const std::optional<at::Tensor>& weight,
                                                double eps) {
    static const auto op = find_op("rms_norm").typed<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const std::optional<at::Tensor>&, double)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, rstd] = op.call(x, weight, eps);
    ctx->save_for_backward({x, weight.value_or(at::Tensor()), rstd});
    ctx->mark_non_differentiable({rstd});
    ctx->set_materialize_grads(false);  // see binding.h, grad_or_zeros
    return {y, rstd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::optional<at::Tensor> weight = optional_from_saved(saved[1]);
    const bool want_dweight = weight.has_value() && ctx->needs_input_grad(1);
    auto [dx, dweight] = call_rms_norm_backward(grad_or_zeros(grads[0], saved[0]), saved[0],
                                                weight, saved[2], std::nullopt, want_dweight);
    return {dx, want_dweight ? dweight : at::Tensor(), at::Tensor()};
  }
};

class RmsNormAddFunction : public torch::autograd::Function<RmsNormAddFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, const at::Tensor& residual,
                                                const std::optional<at::Tensor>& weight,
                                                double eps) {
    static const auto op =
        find_op("rms_norm_add")
            .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                double)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, residual_out, rstd] = op.call(x, residual, weight, eps);
    ctx->save_for_backward({residual_out, weight.value_or(at::Tensor()), rstd});
    ctx->mark_non_differentiable({rstd});
    ctx->set_materialize_grads(false);  // see binding.h, grad_or_zeros
    return {y, residual_out, rstd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::optional<at::Tensor> weight = optional_from_saved(saved[1]);
    const bool want_dweight = weight.has_value() && ctx->needs_input_grad(2);
    const std::optional<at::Tensor> dresidual =
        grads[1].defined() ? std::optional<at::Tensor>(grads[1]) : std::nullopt;
    auto [dz, dweight] = call_rms_norm_backward(grad_or_zeros(grads[0], saved[0]), saved[0],
                                                weight, saved[2], dresidual, want_dweight);
    return {dz, dz, want_dweight ? dweight : at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> rms_norm_autograd(const at::Tensor& x,
                                                     const std::optional<at::Tensor>& weight,
                                                     double eps) {
  auto out = RmsNormFunction::apply(x, weight, eps);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rms_norm_add_autograd(
    const at::Tensor& x, const at::Tensor& residual, const std::optional<at::Tensor>& weight,
    double eps) {
  auto out = RmsNormAddFunction::apply(x, residual, weight, eps);
  return {out[0], out[1], out[2]};
}

void register_out_ops(torch::Library& lib) {
  lib.impl("rms_norm_fwd_out", &rms_norm_fwd_out);
  lib.impl("rms_norm_add_fwd_out", &rms_norm_add_fwd_out);
  lib.impl("rms_norm_bwd_out", &rms_norm_bwd_out);
}

void register_functional_ops(torch::Library& lib) {
  lib.impl("rms_norm", &rms_norm);
  lib.impl("rms_norm_add", &rms_norm_add);
  lib.impl("rms_norm_backward", &rms_norm_backward);
}

void register_autograd(torch::Library& lib) {
  lib.impl("rms_norm", &rms_norm_autograd);
  lib.impl("rms_norm_add", &rms_norm_add_autograd);
}

}  // namespace

KernelBinding rmsnorm_binding() {
  return {&register_out_ops, &register_functional_ops, &register_autograd};
}

}  // namespace tk::binding
