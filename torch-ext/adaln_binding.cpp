// AdaLN: the out ops (checks, then the framework-free host API of kernel_src/adaln), the
// functional ops (validate, allocate, call the out op) and their C++ autograd. Python holds
// the fakes; the Triton variant registers Python versions of the functional ops instead.
//
// Modulation tensors (scale, shift, gate) are per sample, [B, D] or [B, 1, D], or per token,
// [B, S, D]. The functional ops hand the out ops [B, D] or [B, S, D], contiguous, and return
// each gradient in its input's shape.

#include <torch/autograd.h>

#include <string>
#include <tuple>
#include <vector>

#include "adaln/adaln.h"
#include "binding.h"

namespace tk::binding {
namespace {

tk::adaln::Norm parse_norm(c10::string_view norm, const char* op) {
  if (norm == "rms") return tk::adaln::Norm::kRms;
  TORCH_CHECK_VALUE(norm == "layer", op, ": norm must be 'rms' or 'layer', got '",
                    std::string(norm), "'");
  return tk::adaln::Norm::kLayer;
}

// A [B, 1, D] tensor is per sample; [B, S, D] with S != 1 per token; [B, D] per sample.
bool is_per_token(const at::Tensor& t) { return t.dim() == 3 && t.size(1) != 1; }

// The [B, D] or [B, S, D] contiguous form the out ops take.
at::Tensor modulation_rows(const at::Tensor& t) {
  return (is_per_token(t) ? t : t.reshape({t.size(0), t.size(-1)})).contiguous();
}

// x of an out op: [B, S, D], D >= 1, contiguous, on a CPU or CUDA device.
void check_x(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 3 && x.size(2) > 0, op, ": ", name,
                    " must be 3-D [batch, seq, hidden] with hidden >= 1, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.is_contiguous(), op, ": ", name, " must be contiguous");
  check_device(x, op, name);
}

// A modulation tensor handed to a kernel: [B, D] or x's [B, S, D], contiguous. Returns whether
// it is per token.
bool check_modulation_out(const at::Tensor& t, const char* op, const char* name,
                          const at::Tensor& x) {
  const bool per_sample = t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) == x.size(2);
  const bool per_token = t.dim() == 3 && t.sizes() == x.sizes();
  TORCH_CHECK_VALUE(per_sample || per_token, op, ": ", name, " must have shape [", x.size(0),
                    ", ", x.size(2), "] or ", x.sizes(), ", got ", t.sizes());
  check_tensor(t, op, name, x, x.scalar_type(), t.sizes());
  return per_token;
}

void check_optional(const std::optional<at::Tensor>& t, const char* op, const char* name,
                    const at::Tensor& x, at::IntArrayRef shape) {
  if (t.has_value()) check_tensor(*t, op, name, x, x.scalar_type(), shape);
}

void adaln_fwd_out(at::Tensor& y, const std::optional<at::Tensor>& z, at::Tensor& mean,
                   at::Tensor& rstd, const at::Tensor& x, const std::optional<at::Tensor>& branch,
                   const std::optional<at::Tensor>& gate, const at::Tensor& scale,
                   const at::Tensor& shift, const std::optional<at::Tensor>& weight, double eps,
                   c10::string_view norm) {
  constexpr const char* op = "adaln_fwd_out";
  check_x(x, op, "x");
  const tk::DType dtype = to_tk_dtype(x, op, "x");
  check_tensor(y, op, "y", x, x.scalar_type(), x.sizes());
  check_tensor(mean, op, "mean", x, at::kFloat, {x.size(0), x.size(1)});
  check_tensor(rstd, op, "rstd", x, at::kFloat, {x.size(0), x.size(1)});
  check_optional(weight, op, "weight", x, {x.size(2)});
  TORCH_CHECK_VALUE(eps >= 0, op, ": eps must be >= 0, got ", eps);
  TORCH_CHECK_VALUE(branch.has_value() == gate.has_value() && branch.has_value() == z.has_value(),
                    op, ": branch, gate and z must be given together");
  tk::adaln::FwdArgs args;
  args.scale_per_token = check_modulation_out(scale, op, "scale", x);
  args.shift_per_token = check_modulation_out(shift, op, "shift", x);
  args.gated = branch.has_value();
  if (args.gated) {
    check_tensor(*branch, op, "branch", x, x.scalar_type(), x.sizes());
    check_tensor(*z, op, "z", x, x.scalar_type(), x.sizes());
    args.gate_per_token = check_modulation_out(*gate, op, "gate", x);
    args.branch = branch->data_ptr();
    args.gate = gate->data_ptr();
    args.z_out = z->data_ptr();
  }
  args.y = y.data_ptr();
  args.mean = mean.data_ptr<float>();
  args.rstd = rstd.data_ptr<float>();
  args.x = x.data_ptr();
  args.scale = scale.data_ptr();
  args.shift = shift.data_ptr();
  args.weight = optional_data(weight);
  args.batch = x.size(0);
  args.seq = x.size(1);
  args.hidden = x.size(2);
  args.eps = static_cast<float>(eps);
  args.norm = parse_norm(norm, op);
  args.dtype = dtype;
  run_on_device(
      x, op, [&](void* stream) { return tk::adaln::fwd_cuda(args, stream); },
      [&] { return tk::adaln::fwd_cpu(args); });
}

void adaln_bwd_out(at::Tensor& dx, at::Tensor& dscale, at::Tensor& dshift,
                   const std::optional<at::Tensor>& dweight,
                   const std::optional<at::Tensor>& dbranch,
                   const std::optional<at::Tensor>& dgate, const at::Tensor& dy,
                   const std::optional<at::Tensor>& dz, const at::Tensor& z,
                   const std::optional<at::Tensor>& branch,
                   const std::optional<at::Tensor>& gate, const at::Tensor& scale,
                   const std::optional<at::Tensor>& weight, const at::Tensor& mean,
                   const at::Tensor& rstd, c10::string_view norm) {
  constexpr const char* op = "adaln_bwd_out";
  check_x(z, op, "z");
  const tk::DType dtype = to_tk_dtype(z, op, "z");
  check_tensor(dx, op, "dx", z, z.scalar_type(), z.sizes());
  check_tensor(dy, op, "dy", z, z.scalar_type(), z.sizes());
  check_optional(dz, op, "dz", z, z.sizes());
  check_tensor(mean, op, "mean", z, at::kFloat, {z.size(0), z.size(1)});
  check_tensor(rstd, op, "rstd", z, at::kFloat, {z.size(0), z.size(1)});
  check_optional(weight, op, "weight", z, {z.size(2)});
  TORCH_CHECK_VALUE(!dweight.has_value() || weight.has_value(), op,
                    ": dweight was given but weight is None");
  check_optional(dweight, op, "dweight", z, {z.size(2)});
  tk::adaln::BwdArgs args;
  args.scale_per_token = check_modulation_out(scale, op, "scale", z);
  check_tensor(dscale, op, "dscale", z, z.scalar_type(), scale.sizes());
  // An empty 1-D dshift: shift is per token and its gradient, dy itself, is not copied.
  const bool dshift_is_dy = dshift.dim() == 1 && dshift.numel() == 0;
  args.shift_per_token = dshift_is_dy || check_modulation_out(dshift, op, "dshift", z);
  const bool gated = branch.has_value();
  TORCH_CHECK_VALUE(gate.has_value() == gated && dbranch.has_value() == gated &&
                        dgate.has_value() == gated,
                    op, ": branch, gate, dbranch and dgate must be given together");
  args.gated = gated;
  if (gated) {
    check_tensor(*branch, op, "branch", z, z.scalar_type(), z.sizes());
    args.gate_per_token = check_modulation_out(*gate, op, "gate", z);
    check_tensor(*dbranch, op, "dbranch", z, z.scalar_type(), z.sizes());
    check_tensor(*dgate, op, "dgate", z, z.scalar_type(), gate->sizes());
    args.branch = branch->data_ptr();
    args.gate = gate->data_ptr();
    args.dbranch = dbranch->data_ptr();
    args.dgate = dgate->data_ptr();
  }
  args.dx = dx.data_ptr();
  args.dscale = dscale.data_ptr();
  args.dshift = dshift_is_dy ? nullptr : dshift.data_ptr();
  args.dweight = dweight.has_value() ? dweight->data_ptr() : nullptr;
  args.dy = dy.data_ptr();
  args.dz = optional_data(dz);
  args.z = z.data_ptr();
  args.scale = scale.data_ptr();
  args.weight = optional_data(weight);
  args.mean = mean.data_ptr<float>();
  args.rstd = rstd.data_ptr<float>();
  args.batch = z.size(0);
  args.seq = z.size(1);
  args.hidden = z.size(2);
  args.norm = parse_norm(norm, op);
  args.dtype = dtype;
  const auto workspace = [&](int64_t floats) {
    return at::empty({floats}, z.options().dtype(at::kFloat));
  };
  run_on_device(
      z, op,
      [&](void* stream) {
        at::Tensor ws = workspace(tk::adaln::bwd_workspace_floats_cuda(args));
        args.workspace = ws.data_ptr<float>();
        return tk::adaln::bwd_cuda(args, stream);
      },
      [&] {
        at::Tensor ws = workspace(tk::adaln::bwd_workspace_floats_cpu(args));
        args.workspace = ws.data_ptr<float>();
        return tk::adaln::bwd_cpu(args);
      });
}

// ---------------------------------------------------------------------------------------------
// Functional ops

// A modulation input of a functional op: x's device and dtype, [B, D], [B, 1, D] or [B, S, D].
void check_modulation(const at::Tensor& t, const char* op, const char* name,
                      const at::Tensor& x) {
  check_like_x(t, op, name, x);
  const int64_t batch = x.size(0), seq = x.size(1), hidden = x.size(2);
  const bool ok = (t.dim() == 2 && t.size(0) == batch && t.size(1) == hidden) ||
                  (t.dim() == 3 && t.size(0) == batch && (t.size(1) == 1 || t.size(1) == seq) &&
                   t.size(2) == hidden);
  TORCH_CHECK_VALUE(ok, op, ": ", name, " must have shape [", batch, ", ", hidden, "], [", batch,
                    ", 1, ", hidden, "] or ", x.sizes(), " (x is [batch, seq, hidden]), got ",
                    t.sizes());
}

void check_adaln_inputs(const char* op, const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor* shift, const std::optional<at::Tensor>& weight,
                        const at::Tensor* branch, const at::Tensor* gate, double eps,
                        c10::string_view norm) {
  to_tk_dtype(x, op, "x");
  check_device(x, op);
  TORCH_CHECK_VALUE(x.dim() == 3 && x.size(2) > 0, op,
                    ": x must be 3-D [batch, seq, hidden] with hidden >= 1, got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(eps >= 0, op, ": eps must be a non-negative number, got ", eps);
  parse_norm(norm, op);
  check_modulation(scale, op, "scale", x);
  if (shift != nullptr) check_modulation(*shift, op, "shift", x);
  if (branch != nullptr) {
    check_like_x(*branch, op, "branch", x);
    TORCH_CHECK_VALUE(branch->sizes() == x.sizes(), op, ": branch must have x's shape ",
                      x.sizes(), ", got ", branch->sizes());
  }
  if (gate != nullptr) check_modulation(*gate, op, "gate", x);
  if (weight.has_value()) {
    check_like_x(*weight, op, "weight", x);
    TORCH_CHECK_VALUE(weight->dim() == 1 && weight->size(0) == x.size(2), op,
                      ": weight must have shape (", x.size(2), ",) (the last dim of x), got ",
                      weight->sizes());
  }
}

at::Tensor new_stats(const at::Tensor& x) {
  return at::empty({x.size(0), x.size(1)}, x.options().dtype(at::kFloat));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> adaln(const at::Tensor& x, const at::Tensor& scale,
                                                     const at::Tensor& shift,
                                                     const std::optional<at::Tensor>& weight,
                                                     double eps, c10::string_view norm) {
  check_adaln_inputs("adaln", x, scale, &shift, weight, nullptr, nullptr, eps, norm);
  at::Tensor x3 = x.contiguous();
  at::Tensor y = at::empty_like(x3);
  at::Tensor mean = new_stats(x3), rstd = new_stats(x3);
  adaln_fwd_out(y, std::nullopt, mean, rstd, x3, std::nullopt, std::nullopt,
                modulation_rows(scale), modulation_rows(shift), contiguous_or_none(weight), eps,
                norm);
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adaln_gated(
    const at::Tensor& x, const at::Tensor& branch, const at::Tensor& gate,
    const at::Tensor& scale, const at::Tensor& shift, const std::optional<at::Tensor>& weight,
    double eps, c10::string_view norm) {
  check_adaln_inputs("adaln_gated", x, scale, &shift, weight, &branch, &gate, eps, norm);
  at::Tensor x3 = x.contiguous();
  at::Tensor y = at::empty_like(x3);
  std::optional<at::Tensor> z = at::empty_like(x3);
  at::Tensor mean = new_stats(x3), rstd = new_stats(x3);
  adaln_fwd_out(y, z, mean, rstd, x3, branch.contiguous(), modulation_rows(gate),
                modulation_rows(scale), modulation_rows(shift), contiguous_or_none(weight), eps,
                norm);
  return {y, *z, mean, rstd};
}

// Returns (dx, dscale, dshift, dweight, dbranch, dgate): dscale and dgate in scale's and gate's
// shapes, dshift [B, D] for a per-sample shift and empty when shift_per_token (the gradient of
// a per-token shift is dy itself: autograd passes dy on, as it does for an addition); dweight is
// empty unless want_dweight, dbranch and dgate are empty unless gated.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
adaln_backward(const at::Tensor& dy, const std::optional<at::Tensor>& dz, const at::Tensor& z,
               const std::optional<at::Tensor>& branch, const std::optional<at::Tensor>& gate,
               const at::Tensor& scale, bool shift_per_token,
               const std::optional<at::Tensor>& weight, const at::Tensor& mean,
               const at::Tensor& rstd, c10::string_view norm, bool want_dweight) {
  constexpr const char* op = "adaln_backward";
  TORCH_CHECK_VALUE(branch.has_value() == gate.has_value(), op,
                    ": branch and gate must be given together");
  TORCH_CHECK_VALUE(!want_dweight || weight.has_value(), op, ": want_dweight=True needs a weight");
  const bool gated = branch.has_value();
  check_adaln_inputs(op, z, scale, nullptr, weight, gated ? &*branch : nullptr,
                     gated ? &*gate : nullptr, 0.0, norm);
  check_like_x(dy, op, "dy", z);
  TORCH_CHECK_VALUE(dy.sizes() == z.sizes(), op, ": dy must have z's shape ", z.sizes(),
                    ", got ", dy.sizes());
  if (dz.has_value()) {
    check_like_x(*dz, op, "dz", z);
    TORCH_CHECK_VALUE(dz->sizes() == z.sizes(), op, ": dz must have z's shape ", z.sizes(),
                      ", got ", dz->sizes());
  }
  at::Tensor z3 = z.contiguous();
  at::Tensor scale_rows = modulation_rows(scale);
  at::Tensor dx = at::empty_like(z3);
  at::Tensor dscale = at::empty_like(scale_rows);
  at::Tensor dshift =
      shift_per_token ? z.new_empty({0}) : at::empty({z.size(0), z.size(2)}, z.options());
  at::Tensor dweight = want_dweight ? at::empty_like(*weight) : z.new_empty({0});
  at::Tensor dbranch = gated ? at::empty_like(z3) : z.new_empty({0});
  std::optional<at::Tensor> gate_rows =
      gated ? std::optional<at::Tensor>(modulation_rows(*gate)) : std::nullopt;
  at::Tensor dgate = gated ? at::empty_like(*gate_rows) : z.new_empty({0});
  const auto maybe = [](bool wanted, const at::Tensor& t) {
    return wanted ? std::optional<at::Tensor>(t) : std::nullopt;
  };
  adaln_bwd_out(dx, dscale, dshift, maybe(want_dweight, dweight), maybe(gated, dbranch),
                maybe(gated, dgate), dy.contiguous(), contiguous_or_none(dz), z3,
                contiguous_or_none(branch), gate_rows, scale_rows, contiguous_or_none(weight),
                mean.reshape({z.size(0), z.size(1)}).contiguous(),
                rstd.reshape({z.size(0), z.size(1)}).contiguous(), norm);
  return {dx, dscale.view(scale.sizes()), dshift, dweight, dbranch,
          gated ? dgate.view(gate->sizes()) : dgate};
}

// ---------------------------------------------------------------------------------------------
// Autograd: the functional ops through the dispatcher (so the fake/CUDA/CPU kernel of the
// current tensors runs, and torch.compile traces them as single nodes).

using Grads6 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Grads6 call_adaln_backward(const at::Tensor& dy, const std::optional<at::Tensor>& dz,
                           const at::Tensor& z, const std::optional<at::Tensor>& branch,
                           const std::optional<at::Tensor>& gate, const at::Tensor& scale,
                           bool shift_per_token, const std::optional<at::Tensor>& weight,
                           const at::Tensor& mean, const at::Tensor& rstd,
                           c10::string_view norm, bool want_dweight) {
  static const auto op =
      find_op("adaln_backward")
          .typed<Grads6(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                        const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                        const at::Tensor&, bool, const std::optional<at::Tensor>&,
                        const at::Tensor&, const at::Tensor&, c10::string_view, bool)>();
  return op.call(dy, dz, z, branch, gate, scale, shift_per_token, weight, mean, rstd, norm,
                 want_dweight);
}

// What both autograd functions keep besides tensors: the norm, and shift's layout and shape.
void save_shift_and_norm(torch::autograd::AutogradContext* ctx, const at::Tensor& shift,
                         c10::string_view norm) {
  ctx->saved_data["norm"] = std::string(norm);
  ctx->saved_data["shift_per_token"] = is_per_token(shift);
  ctx->saved_data["shift_sizes"] = shift.sizes().vec();
}

// shift's gradient: dy itself for a per-token shift (the backward op returns it empty), else
// the op's [B, D] sum in shift's shape.
at::Tensor shift_grad(torch::autograd::AutogradContext* ctx, const at::Tensor& dy,
                      const at::Tensor& dshift) {
  if (ctx->saved_data["shift_per_token"].toBool()) return dy;
  return dshift.view(ctx->saved_data["shift_sizes"].toIntVector());
}

class AdalnFunction : public torch::autograd::Function<AdalnFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, const at::Tensor& scale,
                                                const at::Tensor& shift,
                                                const std::optional<at::Tensor>& weight,
                                                double eps, const std::string& norm) {
    static const auto op =
        find_op("adaln").typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
            const at::Tensor&, const at::Tensor&, const at::Tensor&,
            const std::optional<at::Tensor>&, double, c10::string_view)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, mean, rstd] = op.call(x, scale, shift, weight, eps, norm);
    ctx->save_for_backward({x, scale, weight.value_or(at::Tensor()), mean, rstd});
    save_shift_and_norm(ctx, shift, norm);
    ctx->mark_non_differentiable({mean, rstd});
    ctx->set_materialize_grads(false);  // see binding.h, grad_or_zeros
    return {y, mean, rstd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::optional<at::Tensor> weight = optional_from_saved(saved[2]);
    const bool want_dweight = weight.has_value() && ctx->needs_input_grad(3);
    const std::string norm = ctx->saved_data["norm"].toStringRef();
    const at::Tensor dy = grad_or_zeros(grads[0], saved[0]);
    auto [dx, dscale, dshift, dweight, dbranch, dgate] = call_adaln_backward(
        dy, std::nullopt, saved[0], std::nullopt, std::nullopt, saved[1],
        ctx->saved_data["shift_per_token"].toBool(), weight, saved[3], saved[4], norm,
        want_dweight);
    return {dx, dscale, shift_grad(ctx, dy, dshift), want_dweight ? dweight : at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

class AdalnGatedFunction : public torch::autograd::Function<AdalnGatedFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& branch,
      const at::Tensor& gate, const at::Tensor& scale, const at::Tensor& shift,
      const std::optional<at::Tensor>& weight, double eps, const std::string& norm) {
    static const auto op =
        find_op("adaln_gated")
            .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                const at::Tensor&, const std::optional<at::Tensor>&, double, c10::string_view)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, z, mean, rstd] = op.call(x, branch, gate, scale, shift, weight, eps, norm);
    ctx->save_for_backward({z, branch, gate, scale, weight.value_or(at::Tensor()), mean, rstd});
    save_shift_and_norm(ctx, shift, norm);
    ctx->mark_non_differentiable({mean, rstd});
    ctx->set_materialize_grads(false);  // see binding.h, grad_or_zeros
    return {y, z, mean, rstd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::optional<at::Tensor> weight = optional_from_saved(saved[4]);
    const bool want_dweight = weight.has_value() && ctx->needs_input_grad(5);
    const std::optional<at::Tensor> dz =
        grads[1].defined() ? std::optional<at::Tensor>(grads[1]) : std::nullopt;
    const std::string norm = ctx->saved_data["norm"].toStringRef();
    const at::Tensor dy = grad_or_zeros(grads[0], saved[0]);
    auto [dx, dscale, dshift, dweight, dbranch, dgate] = call_adaln_backward(
        dy, dz, saved[0], saved[1], saved[2], saved[3],
        ctx->saved_data["shift_per_token"].toBool(), weight, saved[5], saved[6], norm,
        want_dweight);
    return {dx,
            dbranch,
            dgate,
            dscale,
            shift_grad(ctx, dy, dshift),
            want_dweight ? dweight : at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> adaln_autograd(
    const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
    const std::optional<at::Tensor>& weight, double eps, c10::string_view norm) {
  auto out = AdalnFunction::apply(x, scale, shift, weight, eps, std::string(norm));
  return {out[0], out[1], out[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adaln_gated_autograd(
    const at::Tensor& x, const at::Tensor& branch, const at::Tensor& gate,
    const at::Tensor& scale, const at::Tensor& shift, const std::optional<at::Tensor>& weight,
    double eps, c10::string_view norm) {
  auto out = AdalnGatedFunction::apply(x, branch, gate, scale, shift, weight, eps,
                                       std::string(norm));
  return {out[0], out[1], out[2], out[3]};
}

void register_out_ops(torch::Library& lib) {
  lib.impl("adaln_fwd_out", &adaln_fwd_out);
  lib.impl("adaln_bwd_out", &adaln_bwd_out);
}

void register_functional_ops(torch::Library& lib) {
  lib.impl("adaln", &adaln);
  lib.impl("adaln_gated", &adaln_gated);
  lib.impl("adaln_backward", &adaln_backward);
}

void register_autograd(torch::Library& lib) {
  lib.impl("adaln", &adaln_autograd);
  lib.impl("adaln_gated", &adaln_gated_autograd);
}

}  // namespace

KernelBinding adaln_binding() {
  return {&register_out_ops, &register_functional_ops, &register_autograd};
}

}  // namespace tk::binding
