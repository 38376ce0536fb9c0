// RoPE 1D and 3D: the out ops and the in-place op (checks, then the framework-free host API of
// kernel_src/rope), the functional ops (validate, allocate, call the out op) and their C++
// autograd. Python holds the fakes; the Triton variant registers Python versions instead.
//
// Tensors are 4-D in one of two layouts, "bshd" ([B, S, H, D]) or "bhsd" ([B, H, S, D]), with
// any strides as long as the last dim has stride 1: the kernels take (batch, seq, head)
// strides, so a q sliced out of a fused qkv projection is rotated without a copy. Outputs the
// functional ops allocate are contiguous in the input's layout.

#include <torch/autograd.h>

#include <array>
#include <cmath>
#include <string>
#include <tuple>

#include "binding.h"
#include "rope/rope.h"

namespace tk::binding {
namespace {

// Dims of batch, seq and head in a 4-D tensor of the layout (head_dim is dim 3).
struct LayoutDims {
  int batch;
  int seq;
  int head;
};

LayoutDims layout_dims(c10::string_view layout, const char* op) {
  if (layout == "bshd") return {0, 1, 2};
  if (layout == "bhsd") return {0, 2, 1};
  TORCH_CHECK_VALUE(false, op, ": layout must be 'bshd' or 'bhsd', got '", std::string(layout), "'");
}

// Stride of a dim, 0 for a dim of size 1 (never stepped over; a stride there says nothing about
// alignment).
int64_t step(const at::Tensor& t, int dim) { return t.size(dim) == 1 ? 0 : t.stride(dim); }

void check_on_q_device(const at::Tensor& t, const char* op, const char* name, const at::Tensor& q) {
  TORCH_CHECK_VALUE(t.device() == q.device(), op, ": ", name, " is on ", t.device(),
                    " but q is on ", q.device());
}

void check_last_dim_contiguous(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.size(-1) <= 1 || t.stride(-1) == 1, op, ": ", name,
                    " must have a last dim of stride 1, got strides ", t.strides());
}

// A 4-D data tensor of the layout: q (or x), or k / an output checked against q.
void check_data(const at::Tensor& t, const char* op, const char* name) {
  to_tk_dtype(t, op, name);
  TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name,
                    " must be 4-D ([B, S, H, D] for layout 'bshd', [B, H, S, D] for 'bhsd'), "
                    "got shape ", t.sizes());
  check_device(t, op, name);
}

void check_like_q(const at::Tensor& t, const char* op, const char* name, const at::Tensor& q) {
  check_on_q_device(t, op, name, q);
  TORCH_CHECK_TYPE(t.scalar_type() == q.scalar_type(), op, ": ", name, " dtype ", t.scalar_type(),
                   " must match q dtype ", q.scalar_type());
}

// An output: q's device and dtype, the given shape, last dim of stride 1.
void check_out(const at::Tensor& out, const char* op, const char* name, const at::Tensor& like,
               const at::Tensor& q) {
  check_like_q(out, op, name, q);
  TORCH_CHECK_VALUE(out.sizes() == like.sizes(), op, ": ", name, " must have shape ", like.sizes(),
                    ", got ", out.sizes());
  check_last_dim_contiguous(out, op, name);
}

tk::rope::Rows rows_of(const at::Tensor& in, const at::Tensor& out, LayoutDims d) {
  tk::rope::Rows r;
  r.in = in.data_ptr();
  r.out = out.data_ptr();
  r.heads = in.size(d.head);
  r.in_stride_batch = step(in, d.batch);
  r.in_stride_seq = step(in, d.seq);
  r.in_stride_head = step(in, d.head);
  r.out_stride_batch = step(out, d.batch);
  r.out_stride_seq = step(out, d.seq);
  r.out_stride_head = step(out, d.head);
  return r;
}

tk::rope::Common common_of(const at::Tensor& q, LayoutDims d, int64_t rot_dim, bool interleaved,
                           bool conjugate, const char* op) {
  tk::rope::Common x;
  x.batch = q.size(d.batch);
  x.seq = q.size(d.seq);
  x.head_dim = q.size(3);
  x.rot_dim = rot_dim;
  x.interleaved = interleaved;
  x.conjugate = conjugate;
  x.dtype = to_tk_dtype(q, op, "q");
  return x;
}

// ---------------------------------------------------------------------------------------------
// 1D checks

// Everything but strides: shapes, dtypes, devices, layout. Returns the layout's dims.
LayoutDims check_rope_args(const char* op, const at::Tensor& q, const std::optional<at::Tensor>& k,
                           const at::Tensor& cos, const at::Tensor& sin,
                           const std::optional<at::Tensor>& positions, c10::string_view layout) {
  const LayoutDims d = layout_dims(layout, op);
  check_data(q, op, "q");
  const int64_t batch = q.size(d.batch);
  const int64_t seq = q.size(d.seq);
  const int64_t head_dim = q.size(3);
  if (k.has_value()) {
    check_like_q(*k, op, "k", q);
    TORCH_CHECK_VALUE(k->dim() == 4 && k->size(d.batch) == batch && k->size(d.seq) == seq &&
                          k->size(3) == head_dim,
                      op, ": k must be 4-D with q's batch, seq and head_dim (heads may differ), "
                      "got shape ", k->sizes(), " for q of shape ", q.sizes());
  }
  for (const auto& [t, name] : {std::pair{&cos, "cos"}, std::pair{&sin, "sin"}}) {
    check_on_q_device(*t, op, name, q);
    TORCH_CHECK_TYPE(t->scalar_type() == at::kFloat || t->scalar_type() == q.scalar_type(), op,
                     ": ", name, " must be float32 or q's dtype ", q.scalar_type(), ", got ",
                     t->scalar_type());
  }
  TORCH_CHECK_TYPE(sin.scalar_type() == cos.scalar_type(), op, ": sin dtype ", sin.scalar_type(),
                   " must match cos dtype ", cos.scalar_type());
  TORCH_CHECK_VALUE(sin.sizes() == cos.sizes(), op, ": sin must have cos's shape ", cos.sizes(),
                    ", got ", sin.sizes());
  TORCH_CHECK_VALUE(cos.dim() >= 1 && cos.size(-1) >= 1 && 2 * cos.size(-1) <= head_dim, op,
                    ": cos must have 1 to head_dim / 2 = ", head_dim / 2,
                    " columns (the rotated dims are 2 * cos.shape[-1]), got shape ", cos.sizes());
  if (positions.has_value()) {
    check_on_q_device(*positions, op, "positions", q);
    TORCH_CHECK_TYPE(positions->scalar_type() == at::kInt || positions->scalar_type() == at::kLong,
                     op, ": positions must be int32 or int64, got ", positions->scalar_type());
    const bool shape_ok =
        (positions->dim() == 1 && positions->size(0) == seq) ||
        (positions->dim() == 2 && (positions->size(0) == batch || positions->size(0) == 1) &&
         positions->size(1) == seq);
    TORCH_CHECK_VALUE(shape_ok, op, ": positions must be [S] or [B, S] with B = ", batch,
                      ", S = ", seq, ", got shape ", positions->sizes());
    TORCH_CHECK_VALUE(cos.dim() == 2 && cos.size(0) >= 1, op,
                      ": with positions, cos and sin must be tables [P, R/2] with P >= 1, "
                      "got shape ", cos.sizes());
  } else {
    const bool shape_ok =
        (cos.dim() == 2 && cos.size(0) == seq) ||
        (cos.dim() == 3 && (cos.size(0) == batch || cos.size(0) == 1) && cos.size(1) == seq);
    TORCH_CHECK_VALUE(shape_ok, op, ": without positions, cos and sin must be [S, R/2] or "
                      "[B, S, R/2] with B = ", batch, ", S = ", seq, ", got shape ", cos.sizes());
  }
  return d;
}

// Positions outside the table: an error on the CPU; on CUDA the caller's contract (NaN outputs,
// never an out-of-bounds read), since checking would cost a reduction and a device sync.
void check_positions_in_table(const char* op, const std::optional<at::Tensor>& positions,
                              const at::Tensor& cos) {
  if (!positions.has_value() || !positions->is_cpu() || positions->numel() == 0) return;
  const int64_t low = positions->min().item<int64_t>();
  const int64_t high = positions->max().item<int64_t>();
  TORCH_CHECK_VALUE(low >= 0 && high < cos.size(0), op, ": positions must be in [0, ", cos.size(0),
                    ") (the rows of cos), got values in [", low, ", ", high, "]");
}

void run_rope(const char* op, const tk::rope::Args& args, const at::Tensor& q) {
  run_on_device(
      q, op, [&](void* stream) { return tk::rope::fwd_cuda(args, stream); },
      [&] { return tk::rope::fwd_cpu(args); });
}

// Checks the strides the kernels need, then rotates q into q_out and k into k_out (either pair
// may be the same tensor: in place).
void launch_rope(const char* op, const at::Tensor& q_out, const std::optional<at::Tensor>& k_out,
                 const at::Tensor& q, const std::optional<at::Tensor>& k, const at::Tensor& cos,
                 const at::Tensor& sin, const std::optional<at::Tensor>& positions,
                 c10::string_view layout, bool interleaved, bool conjugate) {
  const LayoutDims d = check_rope_args(op, q, k, cos, sin, positions, layout);
  check_last_dim_contiguous(q, op, "q");
  if (k.has_value()) check_last_dim_contiguous(*k, op, "k");
  check_last_dim_contiguous(cos, op, "cos");
  check_last_dim_contiguous(sin, op, "sin");
  check_positions_in_table(op, positions, cos);

  tk::rope::Args args;
  args.x = common_of(q, d, 2 * cos.size(-1), interleaved, conjugate, op);
  args.x.q = rows_of(q, q_out, d);
  if (k.has_value()) args.x.k = rows_of(*k, *k_out, d);
  args.cos = cos.data_ptr();
  args.sin = sin.data_ptr();
  args.table_fp32 = cos.scalar_type() == at::kFloat;
  const int row_dim = cos.dim() - 2;
  args.cos_stride_row = step(cos, row_dim);
  args.sin_stride_row = step(sin, row_dim);
  if (cos.dim() == 3) {
    args.cos_stride_batch = step(cos, 0);
    args.sin_stride_batch = step(sin, 0);
  }
  if (positions.has_value()) {
    args.positions = positions->data_ptr();
    args.positions_int64 = positions->scalar_type() == at::kLong;
    args.positions_stride_seq = step(*positions, positions->dim() - 1);
    args.positions_stride_batch = positions->dim() == 2 ? step(*positions, 0) : 0;
    args.table_rows = cos.size(0);
  }
  run_rope(op, args, q);
}

// ---------------------------------------------------------------------------------------------
// 1D ops

void rope_fwd_out(at::Tensor& q_out, const std::optional<at::Tensor>& k_out, const at::Tensor& q,
                  const std::optional<at::Tensor>& k, const at::Tensor& cos, const at::Tensor& sin,
                  const std::optional<at::Tensor>& positions, c10::string_view layout,
                  bool interleaved, bool conjugate) {
  constexpr const char* op = "rope_fwd_out";
  check_data(q, op, "q");
  check_out(q_out, op, "q_out", q, q);
  TORCH_CHECK_VALUE(k.has_value() == k_out.has_value(), op,
                    ": k_out must be given exactly when k is");
  if (k.has_value()) {
    check_data(*k, op, "k");
    check_out(*k_out, op, "k_out", *k, q);
  }
  launch_rope(op, q_out, k_out, q, k, cos, sin, positions, layout, interleaved, conjugate);
}

void rope_inplace(at::Tensor& q, const std::optional<at::Tensor>& k, const at::Tensor& cos,
                  const at::Tensor& sin, const std::optional<at::Tensor>& positions,
                  c10::string_view layout, bool interleaved, bool conjugate) {
  launch_rope("rope_inplace", q, k, q, k, cos, sin, positions, layout, interleaved, conjugate);
}

// The tensor itself when its last dim has stride 1, else a contiguous copy.
at::Tensor last_dim_contiguous(const at::Tensor& t) {
  return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

std::tuple<at::Tensor, at::Tensor> rope(const at::Tensor& q, const std::optional<at::Tensor>& k,
                                        const at::Tensor& cos, const at::Tensor& sin,
                                        const std::optional<at::Tensor>& positions,
                                        c10::string_view layout, bool interleaved,
                                        bool conjugate) {
  constexpr const char* op = "rope";
  check_rope_args(op, q, k, cos, sin, positions, layout);
  const at::Tensor q_in = last_dim_contiguous(q);
  std::optional<at::Tensor> k_in;
  if (k.has_value()) k_in = last_dim_contiguous(*k);
  // Contiguous in the input's layout: the shape already is in layout order.
  at::Tensor q_out = at::empty(q.sizes(), q.options());
  at::Tensor k_out = k.has_value() ? at::empty(k->sizes(), k->options()) : q.new_empty({0});
  std::optional<at::Tensor> k_out_arg;
  if (k.has_value()) k_out_arg = k_out;
  launch_rope(op, q_out, k_out_arg, q_in, k_in, last_dim_contiguous(cos),
              last_dim_contiguous(sin), positions, layout, interleaved, conjugate);
  return {q_out, k_out};
}

// ---------------------------------------------------------------------------------------------
// 3D

struct Grid3d {
  std::array<int64_t, 3> grid;
  std::array<int64_t, 3> split;
  std::array<float, 3> scale;
};

Grid3d check_rope3d_args(const char* op, const at::Tensor& x, at::IntArrayRef grid,
                         at::IntArrayRef split, double theta, at::ArrayRef<double> scale,
                         LayoutDims d) {
  check_data(x, op, "x");
  const int64_t seq = x.size(d.seq);
  TORCH_CHECK_VALUE(grid.size() == 3, op, ": grid must be (T, H, W), got ", grid);
  TORCH_CHECK_VALUE(grid[0] >= 1 && grid[1] >= 1 && grid[2] >= 1, op,
                    ": grid entries must be >= 1, got ", grid);
  // Compared by division so that the product cannot overflow.
  TORCH_CHECK_VALUE(seq % grid[0] == 0 && (seq / grid[0]) % grid[1] == 0 &&
                        seq / grid[0] / grid[1] == grid[2],
                    op, ": grid ", grid, " must multiply to the sequence length S = ", seq);
  TORCH_CHECK_VALUE(split.size() == 3, op, ": split must be (d_t, d_h, d_w), got ", split);
  int64_t rot_dim = 0;
  for (const int64_t width : split) {
    TORCH_CHECK_VALUE(width >= 0 && width % 2 == 0, op,
                      ": split entries must be even and >= 0, got ", split);
    rot_dim += width;
  }
  TORCH_CHECK_VALUE(rot_dim >= 2 && rot_dim <= x.size(3), op, ": split ", split,
                    " must sum to between 2 and head_dim = ", x.size(3), ", got ", rot_dim);
  TORCH_CHECK_VALUE(std::isfinite(theta) && theta > 0, op, ": theta must be a positive number, got ",
                    theta);
  TORCH_CHECK_VALUE(scale.size() == 3, op, ": scale must have 3 entries (t, h, w), got ", scale);
  Grid3d g{};
  for (int a = 0; a < 3; ++a) {
    TORCH_CHECK_VALUE(std::isfinite(scale[a]), op, ": scale entries must be finite, got ", scale);
    g.grid[a] = grid[a];
    g.split[a] = split[a];
    g.scale[a] = static_cast<float>(scale[a]);
  }
  return g;
}

void rope3d_fwd_out(at::Tensor& out, const at::Tensor& x, at::IntArrayRef grid,
                    at::IntArrayRef split, double theta, at::ArrayRef<double> scale,
                    c10::string_view layout, bool interleaved, bool conjugate) {
  constexpr const char* op = "rope3d_fwd_out";
  const LayoutDims d = layout_dims(layout, op);
  const Grid3d g = check_rope3d_args(op, x, grid, split, theta, scale, d);
  check_last_dim_contiguous(x, op, "x");
  TORCH_CHECK_VALUE(out.device() == x.device(), op, ": out is on ", out.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_TYPE(out.scalar_type() == x.scalar_type(), op, ": out dtype ", out.scalar_type(),
                   " must match x dtype ", x.scalar_type());
  TORCH_CHECK_VALUE(out.sizes() == x.sizes(), op, ": out must have shape ", x.sizes(), ", got ",
                    out.sizes());
  check_last_dim_contiguous(out, op, "out");

  tk::rope::Args3d args;
  args.x = common_of(x, d, g.split[0] + g.split[1] + g.split[2], interleaved, conjugate, op);
  args.x.q = rows_of(x, out, d);
  for (int a = 0; a < 3; ++a) {
    args.grid[a] = g.grid[a];
    args.split[a] = g.split[a];
    args.scale[a] = g.scale[a];
  }
  args.theta = theta;
  run_on_device(
      x, op, [&](void* stream) { return tk::rope::fwd3d_cuda(args, stream); },
      [&] { return tk::rope::fwd3d_cpu(args); });
}

at::Tensor rope3d(const at::Tensor& x, at::IntArrayRef grid, at::IntArrayRef split, double theta,
                  at::ArrayRef<double> scale, c10::string_view layout, bool interleaved,
                  bool conjugate) {
  constexpr const char* op = "rope3d";
  check_rope3d_args(op, x, grid, split, theta, scale, layout_dims(layout, op));
  at::Tensor out = at::empty(x.sizes(), x.options());
  rope3d_fwd_out(out, last_dim_contiguous(x), grid, split, theta, scale, layout, interleaved,
                 conjugate);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Autograd: the rotation is linear in q and k, and its backward is the rotation by the
// opposite angle (conjugate flipped), run through the dispatcher so that torch.compile and
// double backward see the same ops.

std::tuple<at::Tensor, at::Tensor> call_rope(const at::Tensor& q,
                                             const std::optional<at::Tensor>& k,
                                             const at::Tensor& cos, const at::Tensor& sin,
                                             const std::optional<at::Tensor>& positions,
                                             c10::string_view layout, bool interleaved,
                                             bool conjugate) {
  static const auto op =
      find_op("rope")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
              const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view, bool, bool)>();
  return op.call(q, k, cos, sin, positions, layout, interleaved, conjugate);
}

at::Tensor call_rope3d(const at::Tensor& x, at::IntArrayRef grid, at::IntArrayRef split,
                       double theta, at::ArrayRef<double> scale, c10::string_view layout,
                       bool interleaved, bool conjugate) {
  static const auto op = find_op("rope3d").typed<at::Tensor(
      const at::Tensor&, at::IntArrayRef, at::IntArrayRef, double, at::ArrayRef<double>,
      c10::string_view, bool, bool)>();
  return op.call(x, grid, split, theta, scale, layout, interleaved, conjugate);
}

class RopeFunction : public torch::autograd::Function<RopeFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& q,
      const std::optional<at::Tensor>& k, const at::Tensor& cos, const at::Tensor& sin,
      const std::optional<at::Tensor>& positions, c10::string_view layout, bool interleaved,
      bool conjugate) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [q_out, k_out] = call_rope(q, k, cos, sin, positions, layout, interleaved, conjugate);
    ctx->save_for_backward({cos, sin, positions.value_or(at::Tensor())});
    ctx->saved_data["layout"] = std::string(layout);
    ctx->saved_data["interleaved"] = interleaved;
    ctx->saved_data["conjugate"] = conjugate;
    if (!k.has_value()) ctx->mark_non_differentiable({k_out});
    // An unused output's gradient stays undefined instead of becoming a tensor of zeros to
    // rotate.
    ctx->set_materialize_grads(false);
    return {q_out, k_out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string layout = ctx->saved_data["layout"].toStringRef();
    const bool interleaved = ctx->saved_data["interleaved"].toBool();
    const bool conjugate = ctx->saved_data["conjugate"].toBool();
    const std::optional<at::Tensor> positions = optional_from_saved(saved[2]);
    const at::Tensor& dq = grads[0];
    const at::Tensor& dk = grads[1];
    const bool want_dk = dk.defined() && ctx->needs_input_grad(1);
    at::Tensor grad_q, grad_k;
    // Whichever gradients exist are rotated back in one call; a lone dk goes in q's place.
    if (dq.defined()) {
      std::optional<at::Tensor> dk_arg;
      if (want_dk) dk_arg = dk;
      std::tie(grad_q, grad_k) =
          call_rope(dq, dk_arg, saved[0], saved[1], positions, layout, interleaved, !conjugate);
    } else if (want_dk) {
      grad_k = std::get<0>(call_rope(dk, std::nullopt, saved[0], saved[1], positions, layout,
                                     interleaved, !conjugate));
    }
    return {grad_q, want_dk ? grad_k : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class Rope3dFunction : public torch::autograd::Function<Rope3dFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, at::IntArrayRef grid,
                                                at::IntArrayRef split, double theta,
                                                at::ArrayRef<double> scale,
                                                c10::string_view layout, bool interleaved,
                                                bool conjugate) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = call_rope3d(x, grid, split, theta, scale, layout, interleaved, conjugate);
    ctx->saved_data["grid"] = grid.vec();
    ctx->saved_data["split"] = split.vec();
    ctx->saved_data["theta"] = theta;
    ctx->saved_data["scale"] = scale.vec();
    ctx->saved_data["layout"] = std::string(layout);
    ctx->saved_data["interleaved"] = interleaved;
    ctx->saved_data["conjugate"] = conjugate;
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto& data = ctx->saved_data;
    const std::vector<int64_t> grid = data["grid"].toIntVector();
    const std::vector<int64_t> split = data["split"].toIntVector();
    const std::vector<double> scale = data["scale"].toDoubleVector();
    at::Tensor dx;
    if (grads[0].defined()) {
      dx = call_rope3d(grads[0], grid, split, data["theta"].toDouble(), scale,
                       data["layout"].toStringRef(), data["interleaved"].toBool(),
                       !data["conjugate"].toBool());
    }
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> rope_autograd(
    const at::Tensor& q, const std::optional<at::Tensor>& k, const at::Tensor& cos,
    const at::Tensor& sin, const std::optional<at::Tensor>& positions, c10::string_view layout,
    bool interleaved, bool conjugate) {
  // cos and sin get no gradient; a table that wants one must not lose it silently.
  TORCH_CHECK_VALUE(!at::GradMode::is_enabled() || (!cos.requires_grad() && !sin.requires_grad()),
                    "rope: cos and sin get no gradient, but one of them requires grad; detach "
                    "them (or build them under torch.no_grad())");
  auto out = RopeFunction::apply(q, k, cos, sin, positions, layout, interleaved, conjugate);
  return {out[0], out[1]};
}

at::Tensor rope3d_autograd(const at::Tensor& x, at::IntArrayRef grid, at::IntArrayRef split,
                           double theta, at::ArrayRef<double> scale, c10::string_view layout,
                           bool interleaved, bool conjugate) {
  return Rope3dFunction::apply(x, grid, split, theta, scale, layout, interleaved, conjugate)[0];
}

void register_out_ops(torch::Library& lib) {
  lib.impl("rope_fwd_out", &rope_fwd_out);
  lib.impl("rope_inplace", &rope_inplace);
  lib.impl("rope3d_fwd_out", &rope3d_fwd_out);
}

void register_functional_ops(torch::Library& lib) {
  lib.impl("rope", &rope);
  lib.impl("rope3d", &rope3d);
}

void register_autograd(torch::Library& lib) {
  lib.impl("rope", &rope_autograd);
  lib.impl("rope3d", &rope3d_autograd);
}

}  // namespace

KernelBinding rope_binding() {
  return {&register_out_ops, &register_functional_ops, &register_autograd};
}

}  // namespace tk::binding
