// GEGLU / SwiGLU and elementwise GELU: the out ops (checks, then the framework-free host API
// of kernel_src/geglu), the functional ops (validate, allocate, call the out op) and their C++
// autograd. Python holds the fakes; the Triton variant registers Python versions of the
// functional ops instead.

#include <torch/autograd.h>

#include <string>
#include <string_view>
#include <vector>

#include "binding.h"
#include "geglu/geglu.h"

namespace tk::binding {
namespace {

using tk::geglu::Activation;

Activation parse_activation(std::string_view name, const char* op) {
  if (name == "gelu_tanh") return Activation::kGeluTanh;
  if (name == "gelu") return Activation::kGelu;
  if (name == "silu") return Activation::kSilu;
  TORCH_CHECK_VALUE(false, op, ": activation must be one of 'gelu_tanh', 'gelu', 'silu', got '",
                    name, "'");
}

Activation parse_approximate(std::string_view name, const char* op) {
  if (name == "tanh") return Activation::kGeluTanh;
  if (name == "none") return Activation::kGelu;
  TORCH_CHECK_VALUE(false, op, ": approximate must be one of 'tanh', 'none', got '", name, "'");
}

// x of a gated out op: [rows, 2 * hidden], hidden >= 1, contiguous, on a supported device.
int64_t check_gated_x(const at::Tensor& x, const char* op) {
  check_device(x, op);
  to_tk_dtype(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be 2-D [rows, 2 * hidden], got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(x.size(1) > 0 && x.size(1) % 2 == 0, op,
                    ": x's last dim must be even and non-zero (x is [rows, 2 * hidden]), got ",
                    x.size(1));
  TORCH_CHECK_VALUE(x.is_contiguous(), op, ": x must be contiguous");
  return x.size(1) / 2;
}

void geglu_fwd_out(at::Tensor& y, const at::Tensor& x, std::string_view activation,
                   bool swap_halves) {
  constexpr const char* op = "geglu_fwd_out";
  const Activation act = parse_activation(activation, op);
  const int64_t hidden = check_gated_x(x, op);
  check_tensor(y, op, "y", x, x.scalar_type(), {x.size(0), hidden});
  tk::geglu::FwdArgs args;
  args.y = y.data_ptr();
  args.x = x.data_ptr();
  args.rows = x.size(0);
  args.hidden = hidden;
  args.activation = act;
  args.swap_halves = swap_halves;
  args.dtype = to_tk_dtype(x, op, "x");
  run_on_device(
      x, op, [&](void* stream) { return tk::geglu::fwd_cuda(args, stream); },
      [&] { return tk::geglu::fwd_cpu(args); });
}

void geglu_bwd_out(at::Tensor& dx, const at::Tensor& dy, const at::Tensor& x,
                   std::string_view activation, bool swap_halves) {
  constexpr const char* op = "geglu_bwd_out";
  const Activation act = parse_activation(activation, op);
  const int64_t hidden = check_gated_x(x, op);
  check_tensor(dx, op, "dx", x, x.scalar_type(), x.sizes());
  check_tensor(dy, op, "dy", x, x.scalar_type(), {x.size(0), hidden});
  tk::geglu::BwdArgs args;
  args.dx = dx.data_ptr();
  args.dy = dy.data_ptr();
  args.x = x.data_ptr();
  args.rows = x.size(0);
  args.hidden = hidden;
  args.activation = act;
  args.swap_halves = swap_halves;
  args.dtype = to_tk_dtype(x, op, "x");
  run_on_device(
      x, op, [&](void* stream) { return tk::geglu::bwd_cuda(args, stream); },
      [&] { return tk::geglu::bwd_cpu(args); });
}

// x of an elementwise out op: any shape, contiguous, on a supported device.
void check_elementwise_x(const at::Tensor& x, const char* op) {
  check_device(x, op);
  to_tk_dtype(x, op, "x");
  TORCH_CHECK_VALUE(x.is_contiguous(), op, ": x must be contiguous");
}

void gelu_fwd_out(at::Tensor& y, const at::Tensor& x, std::string_view approximate) {
  constexpr const char* op = "gelu_fwd_out";
  const Activation act = parse_approximate(approximate, op);
  check_elementwise_x(x, op);
  check_tensor(y, op, "y", x, x.scalar_type(), x.sizes());
  tk::geglu::GeluFwdArgs args;
  args.y = y.data_ptr();
  args.x = x.data_ptr();
  args.numel = x.numel();
  args.activation = act;
  args.dtype = to_tk_dtype(x, op, "x");
  run_on_device(
      x, op, [&](void* stream) { return tk::geglu::gelu_fwd_cuda(args, stream); },
      [&] { return tk::geglu::gelu_fwd_cpu(args); });
}

void gelu_bwd_out(at::Tensor& dx, const at::Tensor& dy, const at::Tensor& x,
                  std::string_view approximate) {
  constexpr const char* op = "gelu_bwd_out";
  const Activation act = parse_approximate(approximate, op);
  check_elementwise_x(x, op);
  check_tensor(dx, op, "dx", x, x.scalar_type(), x.sizes());
  check_tensor(dy, op, "dy", x, x.scalar_type(), x.sizes());
  tk::geglu::GeluBwdArgs args;
  args.dx = dx.data_ptr();
  args.dy = dy.data_ptr();
  args.x = x.data_ptr();
  args.numel = x.numel();
  args.activation = act;
  args.dtype = to_tk_dtype(x, op, "x");
  run_on_device(
      x, op, [&](void* stream) { return tk::geglu::gelu_bwd_cuda(args, stream); },
      [&] { return tk::geglu::gelu_bwd_cpu(args); });
}

// ---------------------------------------------------------------------------------------------
// Functional ops

// x of geglu / geglu_backward: [..., 2 * hidden] with hidden >= 1. Returns hidden.
int64_t check_geglu_input(const at::Tensor& x, std::string_view activation, const char* op) {
  parse_activation(activation, op);
  to_tk_dtype(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) > 0 && x.size(-1) % 2 == 0, op,
                    ": x's last dim must be even and non-zero (x is [..., 2 * hidden]), got "
                    "shape ",
                    x.sizes());
  return x.size(-1) / 2;
}

std::vector<int64_t> halved_shape(const at::Tensor& x, int64_t hidden) {
  std::vector<int64_t> shape = leading_dims(x);
  shape.push_back(hidden);
  return shape;
}

at::Tensor geglu(const at::Tensor& x, std::string_view activation, bool swap_halves) {
  const int64_t hidden = check_geglu_input(x, activation, "geglu");
  at::Tensor x2 = rows_of(x);
  at::Tensor y = at::empty({x2.size(0), hidden}, x.options());
  geglu_fwd_out(y, x2, activation, swap_halves);
  return y.view(halved_shape(x, hidden));
}

at::Tensor geglu_backward(const at::Tensor& dy, const at::Tensor& x, std::string_view activation,
                          bool swap_halves) {
  constexpr const char* op = "geglu_backward";
  const int64_t hidden = check_geglu_input(x, activation, op);
  check_like_x(dy, op, "dy", x);
  const std::vector<int64_t> y_shape = halved_shape(x, hidden);
  TORCH_CHECK_VALUE(dy.sizes() == at::IntArrayRef(y_shape), op, ": dy must have shape ",
                    at::IntArrayRef(y_shape), " (x's shape with the last dim halved), got ",
                    dy.sizes());
  at::Tensor x2 = rows_of(x);
  at::Tensor dx = at::empty_like(x2);
  geglu_bwd_out(dx, rows_of(dy), x2, activation, swap_halves);
  return dx.view(x.sizes());
}

at::Tensor gelu(const at::Tensor& x, std::string_view approximate) {
  constexpr const char* op = "gelu";
  parse_approximate(approximate, op);
  to_tk_dtype(x, op, "x");
  at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  gelu_fwd_out(y, xc, approximate);
  return y;
}

at::Tensor gelu_backward(const at::Tensor& dy, const at::Tensor& x, std::string_view approximate) {
  constexpr const char* op = "gelu_backward";
  parse_approximate(approximate, op);
  to_tk_dtype(x, op, "x");
  check_like_x(dy, op, "dy", x);
  TORCH_CHECK_VALUE(dy.sizes() == x.sizes(), op, ": dy must have x's shape ", x.sizes(),
                    ", got ", dy.sizes());
  at::Tensor xc = x.contiguous();
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  gelu_bwd_out(dx, dy.contiguous(), xc, approximate);
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Autograd: the functional ops through the dispatcher, below autograd (so the fake/CUDA/CPU
// kernel of the current tensors runs, and torch.compile traces them as single nodes).

class GegluFunction : public torch::autograd::Function<GegluFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, std::string_view activation,
                                                bool swap_halves) {
    static const auto op =
        find_op("geglu").typed<at::Tensor(const at::Tensor&, std::string_view, bool)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor y = op.call(x, activation, swap_halves);
    ctx->save_for_backward({x});
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["swap_halves"] = swap_halves;
    return {y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    static const auto op =
        find_op("geglu_backward")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, std::string_view, bool)>();
    const at::Tensor x = ctx->get_saved_variables()[0];
    if (!grads[0].defined()) return {at::zeros_like(x), at::Tensor(), at::Tensor()};
    const std::string activation = ctx->saved_data["activation"].toStringRef();
    const bool swap_halves = ctx->saved_data["swap_halves"].toBool();
    return {op.call(grads[0], x, activation, swap_halves), at::Tensor(), at::Tensor()};
  }
};

class GeluFunction : public torch::autograd::Function<GeluFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x,
                                                std::string_view approximate) {
    static const auto op =
        find_op("gelu").typed<at::Tensor(const at::Tensor&, std::string_view)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor y = op.call(x, approximate);
    ctx->save_for_backward({x});
    ctx->saved_data["approximate"] = std::string(approximate);
    return {y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    static const auto op =
        find_op("gelu_backward")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, std::string_view)>();
    const at::Tensor x = ctx->get_saved_variables()[0];
    if (!grads[0].defined()) return {at::zeros_like(x), at::Tensor()};
    const std::string approximate = ctx->saved_data["approximate"].toStringRef();
    return {op.call(grads[0], x, approximate), at::Tensor()};
  }
};

at::Tensor geglu_autograd(const at::Tensor& x, std::string_view activation, bool swap_halves) {
  return GegluFunction::apply(x, activation, swap_halves)[0];
}

at::Tensor gelu_autograd(const at::Tensor& x, std::string_view approximate) {
  return GeluFunction::apply(x, approximate)[0];
}

void register_out_ops(torch::Library& lib) {
  lib.impl("geglu_fwd_out", &geglu_fwd_out);
  lib.impl("geglu_bwd_out", &geglu_bwd_out);
  lib.impl("gelu_fwd_out", &gelu_fwd_out);
  lib.impl("gelu_bwd_out", &gelu_bwd_out);
}

void register_functional_ops(torch::Library& lib) {
  lib.impl("geglu", &geglu);
  lib.impl("geglu_backward", &geglu_backward);
  lib.impl("gelu", &gelu);
  lib.impl("gelu_backward", &gelu_backward);
}

void register_autograd(torch::Library& lib) {
  lib.impl("geglu", &geglu_autograd);
  lib.impl("gelu", &gelu_autograd);
}

}  // namespace

KernelBinding geglu_binding() {
  return {&register_out_ops, &register_functional_ops, &register_autograd};
}

}  // namespace tk::binding
