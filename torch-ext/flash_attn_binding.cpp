// FlashAttention: the out ops (checks, then the framework-free host API of kernel_src/flash_attn),
// the functional ops (validate, allocate, call the out op) and their C++ autograd. Python holds
// the fakes; the Triton variant registers Python versions of the functional ops instead.
//
// CPU tensors run the CPU kernels; in the CUDA variant, CUDA tensors run the sm_80 kernels
// (fp16/bf16, compute capability 8.0 or newer) on the current stream. Their cu_seqlens stay on
// the device and are trusted after the shape checks (flash_attn.h).
//
// q, k, v and dout may be strided with a contiguous last dimension (what transposes and
// unbind of a fused qkv give): the out ops take their strides; the functional ops copy only
// inputs whose last dimension is strided. Outputs are contiguous.

#include <torch/autograd.h>

#include <cmath>
#include <cstdint>
#include <tuple>

#include "binding.h"
#include "flash_attn/flash_attn.h"

namespace tk::binding {
namespace {

constexpr const char* kSupportedHeadDims = "64, 96, 128, 192, 256";

// ---------------------------------------------------------------- checks

void check_same_device(const at::Tensor& t, const char* op, const char* name, const at::Tensor& q) {
  TORCH_CHECK_VALUE(t.device() == q.device(), op, ": ", name, " is on ", t.device(),
                    " but q is on ", q.device());
}

void check_like_q(const at::Tensor& t, const char* op, const char* name, const at::Tensor& q) {
  check_same_device(t, op, name, q);
  TORCH_CHECK_TYPE(t.scalar_type() == q.scalar_type(), op, ": ", name, " dtype ", t.scalar_type(),
                   " must match q dtype ", q.scalar_type());
}

// q, k, v: dtype, device, ranks, head dim, heads, matching sizes. Strides are not checked here.
void check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
               bool varlen) {
  to_tk_dtype(q, op, "q");
  check_device(q, op, "q");
  TORCH_CHECK_TYPE(!(q.is_cuda() && q.scalar_type() == at::kFloat), op,
                   ": q must be float16 or bfloat16 on a GPU (float32 is supported for CPU "
                   "tensors only), got ", q.scalar_type());
  check_like_q(k, op, "k", q);
  check_like_q(v, op, "v", q);
  const int64_t rank = varlen ? 3 : 4;
  const char* layout = varlen ? "[total_q, heads, head_dim]" : "[batch, seqlen_q, heads, head_dim]";
  const char* kv_layout =
      varlen ? "[total_k, heads_k, head_dim]" : "[batch, seqlen_k, heads_k, head_dim]";
  TORCH_CHECK_VALUE(q.dim() == rank, op, ": q must be ", rank, "-D ", layout, ", got shape ",
                    q.sizes());
  TORCH_CHECK_VALUE(k.dim() == rank, op, ": k must be ", rank, "-D ", kv_layout, ", got shape ",
                    k.sizes());
  TORCH_CHECK_VALUE(v.sizes() == k.sizes(), op, ": v must have k's shape ", k.sizes(), ", got ",
                    v.sizes());
  const int64_t head_dim = q.size(-1);
  TORCH_CHECK_VALUE(tk::flash_attn::is_supported_head_dim(head_dim), op, ": q has head_dim ",
                    head_dim, "; supported head dims: ", kSupportedHeadDims);
  TORCH_CHECK_VALUE(k.size(-1) == head_dim, op, ": k must have q's head_dim ", head_dim,
                    ", got ", k.size(-1));
  if (!varlen) {
    TORCH_CHECK_VALUE(k.size(0) == q.size(0), op, ": k must have q's batch size ", q.size(0),
                      ", got ", k.size(0));
  }
  const int64_t heads_q = q.size(-2);
  const int64_t heads_k = k.size(-2);
  TORCH_CHECK_VALUE(heads_k > 0 && heads_q % heads_k == 0, op, ": the query heads of q (",
                    heads_q, ") must be a multiple of the key/value heads of k (", heads_k, ")");
}

void check_last_dim_contiguous(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.size(-1) <= 1 || t.stride(-1) == 1, op, ": ", name,
                    " must have a contiguous last dimension (stride 1), got strides ",
                    t.strides());
}

void check_cu_seqlens(const char* op, const std::optional<at::Tensor>& cu_q,
                      const std::optional<at::Tensor>& cu_k, const at::Tensor& q,
                      int64_t max_seqlen_q, int64_t max_seqlen_k) {
  TORCH_CHECK_VALUE(cu_q.has_value() == cu_k.has_value(), op,
                    ": cu_seqlens_q and cu_seqlens_k must be given together");
  if (!cu_q.has_value()) return;
  for (const auto& [t, name] : {std::pair{*cu_q, "cu_seqlens_q"}, std::pair{*cu_k, "cu_seqlens_k"}}) {
    TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, op, ": ", name, " must be int32, got ",
                     t.scalar_type());
    check_same_device(t, op, name, q);
    TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) >= 1, op, ": ", name,
                      " must be 1-D [batch + 1], got shape ", t.sizes());
    TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
  }
  TORCH_CHECK_VALUE(cu_q->size(0) == cu_k->size(0), op,
                    ": cu_seqlens_q and cu_seqlens_k must have the same length (batch + 1), got ",
                    cu_q->size(0), " and ", cu_k->size(0));
  TORCH_CHECK_VALUE(max_seqlen_q >= 0, op, ": max_seqlen_q must be >= 0, got ", max_seqlen_q);
  TORCH_CHECK_VALUE(max_seqlen_k >= 0, op, ": max_seqlen_k must be >= 0, got ", max_seqlen_k);
}

void check_scalars(const char* op, double softmax_scale, int64_t window_left,
                   int64_t window_right) {
  TORCH_CHECK_VALUE(std::isfinite(softmax_scale), op, ": softmax_scale must be finite, got ",
                    softmax_scale);
  TORCH_CHECK_VALUE(window_left >= -1, op, ": window_left must be >= -1 (-1: unbounded), got ",
                    window_left);
  TORCH_CHECK_VALUE(window_right >= -1, op, ": window_right must be >= -1 (-1: unbounded), got ",
                    window_right);
}

// Outputs and the saved forward tensors: q's device, the given dtype and shape, contiguous.
void check_contiguous_tensor(const at::Tensor& t, const char* op, const char* name,
                             const at::Tensor& q, at::ScalarType dtype, at::IntArrayRef shape) {
  check_same_device(t, op, name, q);
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

std::vector<int64_t> lse_shape(const at::Tensor& q, bool varlen) {
  if (varlen) return {q.size(1), q.size(0)};
  return {q.size(0), q.size(2), q.size(1)};
}

at::Tensor last_dim_contiguous(const at::Tensor& t) {
  return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

// ---------------------------------------------------------------- host API arguments

tk::flash_attn::Strides strides_of(const at::Tensor& t, bool varlen) {
  if (varlen) return {0, t.stride(0), t.stride(1)};
  return {t.stride(0), t.stride(1), t.stride(2)};
}

tk::flash_attn::Problem problem_of(const char* op, const at::Tensor& q, const at::Tensor& k,
                                   const std::optional<at::Tensor>& cu_q,
                                   const std::optional<at::Tensor>& cu_k, int64_t max_seqlen_q,
                                   int64_t max_seqlen_k, double softmax_scale, bool causal,
                                   int64_t window_left, int64_t window_right) {
  const bool varlen = cu_q.has_value();
  tk::flash_attn::Problem p;
  if (varlen) {
    p.batch = cu_q->size(0) - 1;
    p.seqlen_q = q.size(0);
    p.seqlen_k = k.size(0);
    // Host pointers for the CPU kernels, device pointers for the CUDA kernels (same device as
    // q, checked).
    p.cu_seqlens_q = cu_q->data_ptr<int32_t>();
    p.cu_seqlens_k = cu_k->data_ptr<int32_t>();
  } else {
    p.batch = q.size(0);
    p.seqlen_q = q.size(1);
    p.seqlen_k = k.size(1);
  }
  p.max_seqlen_q = varlen ? max_seqlen_q : p.seqlen_q;
  p.max_seqlen_k = varlen ? max_seqlen_k : p.seqlen_k;
  p.heads_q = q.size(-2);
  p.heads_k = k.size(-2);
  p.head_dim = q.size(-1);
  p.softmax_scale = static_cast<float>(softmax_scale);
  p.causal = causal;
  p.window_left = window_left;
  p.window_right = window_right;
  p.dtype = to_tk_dtype(q, op, "q");
  return p;
}

// The CUDA kernels copy rows with 16-byte cp.async: a CUDA input whose address or strides
// (in elements) are not multiples of 16 bytes is copied to a fresh contiguous tensor first.
at::Tensor rows_16_byte_aligned(const at::Tensor& t) {
  if (!t.is_cuda()) return t;
  const int64_t elems = 16 / t.element_size();
  bool aligned = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) aligned = aligned && t.stride(d) % elems == 0;
  return aligned ? t : at::empty(t.sizes(), t.options()).copy_(t);
}

#ifdef TK_WITH_CUDA
void check_cuda_arch(const at::Tensor& q, const char* op) {
  const cudaDeviceProp* props = at::cuda::getDeviceProperties(q.device().index());
  TORCH_CHECK_NOT_IMPLEMENTED(
      props->major >= 8, op, ": the CUDA FlashAttention kernels need compute capability 8.0 or "
      "newer (bf16/fp16 mma.sync); ", q.device(), " is sm_", props->major, props->minor,
      ": load the Triton variant (torch-cuda) or use CPU tensors");
}
#endif

// The CPU kernels for CPU tensors, the CUDA kernels (run_cuda(stream)) for CUDA tensors.
template <class RunCuda, class RunCpu>
void run_flash_attn(const at::Tensor& q, const char* op, RunCuda run_cuda, RunCpu run_cpu) {
  tk::Status status;
#ifdef TK_WITH_CUDA
  if (q.is_cuda()) {
    const c10::cuda::CUDAGuard guard(q.device());
    check_cuda_arch(q, op);
    status = run_cuda(at::cuda::getCurrentCUDAStream(q.device().index()).stream());
  } else {
    status = run_cpu();
  }
#else
  (void)run_cuda;
  TORCH_CHECK(!q.is_cuda(), op, ": this variant was built without CUDA; q is on ", q.device());
  status = run_cpu();
#endif
  // Invalid values the shape checks cannot see (cu_seqlens contents on CPU) are a ValueError.
  TORCH_CHECK_VALUE(status.code != tk::StatusCode::kInvalidArgument, op, ": ", status.message);
  check_status(status, op);
}

// ---------------------------------------------------------------- out ops

void flash_attn_fwd_out(at::Tensor& out, at::Tensor& lse, const at::Tensor& q,
                        const at::Tensor& k, const at::Tensor& v,
                        const std::optional<at::Tensor>& cu_seqlens_q,
                        const std::optional<at::Tensor>& cu_seqlens_k, int64_t max_seqlen_q,
                        int64_t max_seqlen_k, double softmax_scale, bool causal,
                        int64_t window_left, int64_t window_right) {
  constexpr const char* op = "flash_attn_fwd_out";
  const bool varlen = cu_seqlens_q.has_value() || cu_seqlens_k.has_value();
  check_qkv(op, q, k, v, varlen);
  check_cu_seqlens(op, cu_seqlens_q, cu_seqlens_k, q, max_seqlen_q, max_seqlen_k);
  check_scalars(op, softmax_scale, window_left, window_right);
  check_last_dim_contiguous(q, op, "q");
  check_last_dim_contiguous(k, op, "k");
  check_last_dim_contiguous(v, op, "v");
  check_contiguous_tensor(out, op, "out", q, q.scalar_type(), q.sizes());
  check_contiguous_tensor(lse, op, "lse", q, at::kFloat, lse_shape(q, varlen));

  const at::Tensor qa = rows_16_byte_aligned(q);
  const at::Tensor ka = rows_16_byte_aligned(k);
  const at::Tensor va = rows_16_byte_aligned(v);

  tk::flash_attn::FwdArgs args;
  args.problem = problem_of(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            softmax_scale, causal, window_left, window_right);
  args.out = out.data_ptr();
  args.lse = lse.data_ptr<float>();
  args.q = qa.data_ptr();
  args.k = ka.data_ptr();
  args.v = va.data_ptr();
  args.q_strides = strides_of(qa, varlen);
  args.k_strides = strides_of(ka, varlen);
  args.v_strides = strides_of(va, varlen);
  // The sm_90a forward may split its last query blocks between two blocks, which hand state
  // over through a workspace it asks for (on q's device: the lambda runs under its guard).
  at::Tensor split_workspace;
  run_flash_attn(
      q, op,
      [&](void* stream) {
        if (const int64_t bytes = tk::flash_attn::fwd_cuda_split_bytes(args.problem); bytes > 0) {
          split_workspace = at::empty({bytes}, q.options().dtype(at::kByte));
          args.split_workspace = split_workspace.data_ptr();
        }
        return tk::flash_attn::fwd_cuda(args, stream);
      },
      [&] { return tk::flash_attn::fwd_cpu(args); });
}

void flash_attn_bwd_out(at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, const at::Tensor& dout,
                        const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& out, const at::Tensor& lse,
                        const std::optional<at::Tensor>& cu_seqlens_q,
                        const std::optional<at::Tensor>& cu_seqlens_k, int64_t max_seqlen_q,
                        int64_t max_seqlen_k, double softmax_scale, bool causal,
                        int64_t window_left, int64_t window_right, bool deterministic) {
  constexpr const char* op = "flash_attn_bwd_out";
  const bool varlen = cu_seqlens_q.has_value() || cu_seqlens_k.has_value();
  check_qkv(op, q, k, v, varlen);
  check_cu_seqlens(op, cu_seqlens_q, cu_seqlens_k, q, max_seqlen_q, max_seqlen_k);
  check_scalars(op, softmax_scale, window_left, window_right);
  check_like_q(dout, op, "dout", q);
  TORCH_CHECK_VALUE(dout.sizes() == q.sizes(), op, ": dout must have q's shape ", q.sizes(),
                    ", got ", dout.sizes());
  check_last_dim_contiguous(q, op, "q");
  check_last_dim_contiguous(k, op, "k");
  check_last_dim_contiguous(v, op, "v");
  check_last_dim_contiguous(dout, op, "dout");
  check_contiguous_tensor(out, op, "out", q, q.scalar_type(), q.sizes());
  check_contiguous_tensor(lse, op, "lse", q, at::kFloat, lse_shape(q, varlen));
  check_contiguous_tensor(dq, op, "dq", q, q.scalar_type(), q.sizes());
  check_contiguous_tensor(dk, op, "dk", q, q.scalar_type(), k.sizes());
  check_contiguous_tensor(dv, op, "dv", q, q.scalar_type(), k.sizes());

  const at::Tensor qa = rows_16_byte_aligned(q);
  const at::Tensor ka = rows_16_byte_aligned(k);
  const at::Tensor va = rows_16_byte_aligned(v);
  const at::Tensor douta = rows_16_byte_aligned(dout);
  // The CUDA backward's rowsum(dout * out), one float per lse element.
  const at::Tensor delta = q.is_cuda() ? at::empty_like(lse) : at::Tensor();

  tk::flash_attn::BwdArgs args;
  args.problem = problem_of(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            softmax_scale, causal, window_left, window_right);
  args.dq = dq.data_ptr();
  args.dk = dk.data_ptr();
  args.dv = dv.data_ptr();
  args.dout = douta.data_ptr();
  args.q = qa.data_ptr();
  args.k = ka.data_ptr();
  args.v = va.data_ptr();
  args.out = out.data_ptr();
  args.lse = lse.data_ptr<float>();
  args.delta = delta.defined() ? delta.data_ptr<float>() : nullptr;
  args.dout_strides = strides_of(douta, varlen);
  args.q_strides = strides_of(qa, varlen);
  args.k_strides = strides_of(ka, varlen);
  args.v_strides = strides_of(va, varlen);
  // The sm_90a backward at head dims 64 and 128 sums dQ in fp32 across key blocks unless asked
  // to be deterministic; it asks for the sum's buffer (on q's device: the lambda runs under its
  // guard).
  args.deterministic = deterministic;
  at::Tensor dq_accum;
  run_flash_attn(
      q, op,
      [&](void* stream) {
        if (tk::flash_attn::bwd_cuda_accumulates_dq(args.problem, deterministic)) {
          dq_accum = at::empty({tk::flash_attn::bwd_cuda_dq_accum_floats(args.problem)},
                               q.options().dtype(at::kFloat));
          args.dq_accum = dq_accum.data_ptr<float>();
        }
        return tk::flash_attn::bwd_cuda(args, stream);
      },
      [&] { return tk::flash_attn::bwd_cpu(args); });
}

// ---------------------------------------------------------------- functional ops

std::tuple<at::Tensor, at::Tensor> flash_attn_forward_impl(
    const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& cu_q, const std::optional<at::Tensor>& cu_k,
    int64_t max_seqlen_q, int64_t max_seqlen_k, double softmax_scale, bool causal,
    int64_t window_left, int64_t window_right) {
  const bool varlen = cu_q.has_value();
  check_qkv(op, q, k, v, varlen);
  check_cu_seqlens(op, cu_q, cu_k, q, max_seqlen_q, max_seqlen_k);
  check_scalars(op, softmax_scale, window_left, window_right);
  at::Tensor out = at::empty(q.sizes(), q.options());
  at::Tensor lse = at::empty(lse_shape(q, varlen), q.options().dtype(at::kFloat));
  flash_attn_fwd_out(out, lse, last_dim_contiguous(q), last_dim_contiguous(k),
                     last_dim_contiguous(v), cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                     softmax_scale, causal, window_left, window_right);
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> flash_attn(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, double softmax_scale,
                                              bool causal, int64_t window_left,
                                              int64_t window_right) {
  return flash_attn_forward_impl("flash_attn", q, k, v, std::nullopt, std::nullopt, 0, 0,
                                 softmax_scale, causal, window_left, window_right);
}

std::tuple<at::Tensor, at::Tensor> flash_attn_varlen(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& cu_seqlens_q, const at::Tensor& cu_seqlens_k, int64_t max_seqlen_q,
    int64_t max_seqlen_k, double softmax_scale, bool causal, int64_t window_left,
    int64_t window_right) {
  return flash_attn_forward_impl("flash_attn_varlen", q, k, v, cu_seqlens_q, cu_seqlens_k,
                                 max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
                                 window_right);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> flash_attn_backward(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, const std::optional<at::Tensor>& cu_seqlens_q,
    const std::optional<at::Tensor>& cu_seqlens_k, int64_t max_seqlen_q, int64_t max_seqlen_k,
    double softmax_scale, bool causal, int64_t window_left, int64_t window_right,
    bool deterministic) {
  constexpr const char* op = "flash_attn_backward";
  const bool varlen = cu_seqlens_q.has_value() || cu_seqlens_k.has_value();
  check_qkv(op, q, k, v, varlen);
  check_cu_seqlens(op, cu_seqlens_q, cu_seqlens_k, q, max_seqlen_q, max_seqlen_k);
  check_like_q(dout, op, "dout", q);
  check_like_q(out, op, "out", q);
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(k.sizes(), k.options());
  at::Tensor dv = at::empty(k.sizes(), k.options());
  flash_attn_bwd_out(dq, dk, dv, last_dim_contiguous(dout), last_dim_contiguous(q),
                     last_dim_contiguous(k), last_dim_contiguous(v), out.contiguous(),
                     lse.contiguous(), cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                     softmax_scale, causal, window_left, window_right, deterministic);
  return {dq, dk, dv};
}

// ---------------------------------------------------------------- autograd

// Below autograd: the backward op through the dispatcher (so the fake/CPU/CUDA kernel of the
// current tensors runs, and torch.compile traces it as one node). The backward is
// deterministic when torch.use_deterministic_algorithms(True) is in effect.
std::tuple<at::Tensor, at::Tensor, at::Tensor> call_flash_attn_backward(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, const std::optional<at::Tensor>& cu_q,
    const std::optional<at::Tensor>& cu_k, int64_t max_seqlen_q, int64_t max_seqlen_k,
    double softmax_scale, bool causal, int64_t window_left, int64_t window_right) {
  static const auto op =
      find_op("flash_attn_backward")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
              const std::optional<at::Tensor>&, int64_t, int64_t, double, bool, int64_t,
              int64_t, bool)>();
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  return op.call(dout, q, k, v, out, lse, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                 causal, window_left, window_right, deterministic);
}

class FlashAttnFunction : public torch::autograd::Function<FlashAttnFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, double softmax_scale,
                                                bool causal, int64_t window_left,
                                                int64_t window_right) {
    static const auto op = find_op("flash_attn")
                               .typed<std::tuple<at::Tensor, at::Tensor>(
                                   const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   double, bool, int64_t, int64_t)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, lse] = op.call(q, k, v, softmax_scale, causal, window_left, window_right);
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["softmax_scale"] = softmax_scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["window_left"] = window_left;
    ctx->saved_data["window_right"] = window_right;
    ctx->mark_non_differentiable({lse});
    ctx->set_materialize_grads(false);  // see binding.h, grad_or_zeros
    return {out, lse};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dq, dk, dv] = call_flash_attn_backward(
        grad_or_zeros(grads[0], saved[3]), saved[0], saved[1], saved[2], saved[3], saved[4],
        std::nullopt, std::nullopt, 0, 0, ctx->saved_data["softmax_scale"].toDouble(),
        ctx->saved_data["causal"].toBool(), ctx->saved_data["window_left"].toInt(),
        ctx->saved_data["window_right"].toInt());
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class FlashAttnVarlenFunction : public torch::autograd::Function<FlashAttnVarlenFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
      const at::Tensor& v, const at::Tensor& cu_seqlens_q, const at::Tensor& cu_seqlens_k,
      int64_t max_seqlen_q, int64_t max_seqlen_k, double softmax_scale, bool causal,
      int64_t window_left, int64_t window_right) {
    static const auto op =
        find_op("flash_attn_varlen")
            .typed<std::tuple<at::Tensor, at::Tensor>(
                const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                const at::Tensor&, int64_t, int64_t, double, bool, int64_t, int64_t)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, lse] = op.call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                              softmax_scale, causal, window_left, window_right);
    ctx->save_for_backward({q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k});
    ctx->saved_data["max_seqlen_q"] = max_seqlen_q;
    ctx->saved_data["max_seqlen_k"] = max_seqlen_k;
    ctx->saved_data["softmax_scale"] = softmax_scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["window_left"] = window_left;
    ctx->saved_data["window_right"] = window_right;
    ctx->mark_non_differentiable({lse});
    ctx->set_materialize_grads(false);  // see binding.h, grad_or_zeros
    return {out, lse};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dq, dk, dv] = call_flash_attn_backward(
        grad_or_zeros(grads[0], saved[3]), saved[0], saved[1], saved[2], saved[3], saved[4],
        saved[5], saved[6], ctx->saved_data["max_seqlen_q"].toInt(),
        ctx->saved_data["max_seqlen_k"].toInt(), ctx->saved_data["softmax_scale"].toDouble(),
        ctx->saved_data["causal"].toBool(), ctx->saved_data["window_left"].toInt(),
        ctx->saved_data["window_right"].toInt());
    return {dq,           dk,           dv,           at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> flash_attn_autograd(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& v, double softmax_scale,
                                                       bool causal, int64_t window_left,
                                                       int64_t window_right) {
  auto out = FlashAttnFunction::apply(q, k, v, softmax_scale, causal, window_left, window_right);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> flash_attn_varlen_autograd(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& cu_seqlens_q, const at::Tensor& cu_seqlens_k, int64_t max_seqlen_q,
    int64_t max_seqlen_k, double softmax_scale, bool causal, int64_t window_left,
    int64_t window_right) {
  auto out = FlashAttnVarlenFunction::apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                            max_seqlen_k, softmax_scale, causal, window_left,
                                            window_right);
  return {out[0], out[1]};
}

void register_out_ops(torch::Library& lib) {
  lib.impl("flash_attn_fwd_out", &flash_attn_fwd_out);
  lib.impl("flash_attn_bwd_out", &flash_attn_bwd_out);
}

void register_functional_ops(torch::Library& lib) {
  lib.impl("flash_attn", &flash_attn);
  lib.impl("flash_attn_varlen", &flash_attn_varlen);
  lib.impl("flash_attn_backward", &flash_attn_backward);
}

void register_autograd(torch::Library& lib) {
  lib.impl("flash_attn", &flash_attn_autograd);
  lib.impl("flash_attn_varlen", &flash_attn_varlen_autograd);
}

}  // namespace

KernelBinding flash_attn_binding() {
  return {&register_out_ops, &register_functional_ops, &register_autograd};
}

}  // namespace tk::binding
