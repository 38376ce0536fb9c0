// Host API of exact attention (FlashAttention-2 conventions): plain pointers, sizes and
// strides, no torch, no CUDA headers.
//
//   s[i, j]  = softmax_scale * dot(q[i], k[j])          for the allowed keys j of query i
//   lse[i]   = log(sum_j exp(s[i, j]))                   (natural log, fp32)
//   out[i]   = sum_j exp(s[i, j] - lse[i]) * v[j]
// Key j is allowed for query i iff
//   i + Sk - Sq - window_left <= j <= i + Sk - Sq + window_right
// where a window bound of -1 is unbounded and `causal` sets window_right = 0 (FlashAttention-2:
// causal aligned to the bottom right when Sq != Sk). A query with no allowed key gets out = 0
// and lse = -inf.
//
// Backward (delta[i] = dot(dout[i], out[i]), p = exp(s - lse)):
//   dv[j] = sum_i p[i, j] dout[i];  ds = p * (dot(dout[i], v[j]) - delta[i])
//   dq[i] = scale * sum_j ds[i, j] k[j];  dk[j] = scale * sum_i ds[i, j] q[i]
// With grouped-query attention (heads_q = group * heads_k) query head h reads key/value head
// h / group, and dk, dv sum over the group's query heads.
//
// Layouts. Batched (cu_seqlens null): q, out, dq, dout are [batch, seqlen_q, heads_q, head_dim],
// k, v, dk, dv [batch, seqlen_k, heads_k, head_dim]; lse [batch, heads_q, seqlen_q].
// Varlen (cu_seqlens given, int32 [batch + 1], cu[0] = 0, non-decreasing, cu[batch] = total):
// q-like tensors are [total_q, heads_q, head_dim], k-like [total_k, heads_k, head_dim] and lse is
// [heads_q, total_q]; sequence b holds rows cu[b] .. cu[b + 1] - 1.
// q, k, v, dout may have any strides (in elements) with the last dimension contiguous; out, lse,
// dq, dk, dv are contiguous. Inputs share one dtype; math is fp32 inside.
#pragma once

#include <cstdint>

#include "_common/status.h"

namespace tk::flash_attn {

// Strides of one [batch, rows, heads, head_dim] tensor (batch is 0 in the varlen layout).
struct Strides {
  int64_t batch = 0;
  int64_t row = 0;
  int64_t head = 0;
};

struct Problem {
  const int32_t* cu_seqlens_q = nullptr;  // host (CPU kernels) or device (CUDA); null: batched
  const int32_t* cu_seqlens_k = nullptr;
  int64_t batch = 0;
  int64_t seqlen_q = 0;    // batched: the sequence lengths; varlen: total_q and total_k
  int64_t seqlen_k = 0;
  int64_t max_seqlen_q = 0;  // varlen only: at least every sequence's length
  int64_t max_seqlen_k = 0;
  int64_t heads_q = 0;
  int64_t heads_k = 0;
  int64_t head_dim = 0;
  float softmax_scale = 1.0f;
  bool causal = false;
  int64_t window_left = -1;
  int64_t window_right = -1;
  DType dtype = DType::kFloat32;
};

struct FwdArgs {
  Problem problem;
  void* out = nullptr;
  float* lse = nullptr;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  Strides q_strides, k_strides, v_strides;
  // CUDA only: scratch of fwd_cuda_split_bytes(problem) bytes (16-byte aligned) where that is
  // not 0 (contents ignored).
  void* split_workspace = nullptr;
};

struct BwdArgs {
  Problem problem;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  const void* dout = nullptr;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* out = nullptr;
  const float* lse = nullptr;
  float* delta = nullptr;  // CUDA only: fp32 scratch of lse's shape (rowsum(dout * out))
  // CUDA only: fp32 scratch of bwd_cuda_dq_accum_floats(problem) floats (16-byte aligned),
  // needed when bwd_cuda_accumulates_dq(problem, deterministic) says so.
  float* dq_accum = nullptr;
  bool deterministic = false;
  Strides dout_strides, q_strides, k_strides, v_strides;
};

// The window actually applied: causal sets the right bound to 0 (FlashAttention-2).
inline int64_t effective_window_right(bool causal, int64_t window_right) {
  return causal ? 0 : window_right;
}

// Head dimensions every backend supports.
inline bool is_supported_head_dim(int64_t head_dim) {
  return head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 192 ||
         head_dim == 256;
}

// The checks of a Problem every backend makes (each adds its dtypes and its own limits).
inline Status check_problem_shape(const Problem& p) {
  if (!is_supported_head_dim(p.head_dim)) {
    return invalid("flash_attn: head_dim must be one of 64, 96, 128, 192, 256");
  }
  if (p.batch < 0 || p.seqlen_q < 0 || p.seqlen_k < 0 || p.max_seqlen_q < 0 ||
      p.max_seqlen_k < 0) {
    return invalid("flash_attn: sizes must be >= 0");
  }
  if (p.heads_q < 0 || p.heads_k < 1 || p.heads_q % p.heads_k != 0) {
    return invalid("flash_attn: heads_q must be a multiple of heads_k (at least 1)");
  }
  if (p.window_left < -1 || p.window_right < -1) {
    return invalid("flash_attn: window bounds must be >= -1 (-1: unbounded)");
  }
  if ((p.cu_seqlens_q == nullptr) != (p.cu_seqlens_k == nullptr)) {
    return invalid("flash_attn: cu_seqlens_q and cu_seqlens_k must be given together");
  }
  return Status::Ok();
}

// CUDA (flash_attn_cuda.cu, sm_80 and newer; `stream` is a cudaStream_t and the current device
// is the tensors'): fp16 and bf16 only; q, k, v, dout 16-byte aligned with strides that are
// multiples of 8 elements; cu_seqlens are device pointers whose contents are trusted (not read
// on the host), and every sequence must be at most max_seqlen long. The backward is
// deterministic except where bwd_cuda_accumulates_dq: on sm_90 at head dims 64 and 128
// without `deterministic`, dQ is summed over key blocks in fp32 in dq_accum, in an order that
// varies between runs.
Status fwd_cuda(const FwdArgs& args, void* stream);
// The scratch fwd_cuda takes on the current device for this problem: on sm_90, where its last
// query blocks are split between two blocks of the persistent grid; else 0 (also when the device
// cannot be queried: fwd_cuda then reports that error). Without it fwd_cuda splits nothing.
int64_t fwd_cuda_split_bytes(const Problem& problem);
Status bwd_cuda(const BwdArgs& args, void* stream);
// Whether bwd_cuda on the current device needs args.dq_accum for this problem (false when the
// device cannot be queried: bwd_cuda then reports that error).
bool bwd_cuda_accumulates_dq(const Problem& problem, bool deterministic);
// The size of that workspace.
int64_t bwd_cuda_dq_accum_floats(const Problem& problem);

// CPU (flash_attn_cpu.cpp): OpenMP over (sequence, head, block of rows) (the backward over
// (sequence, key head) when there are enough); deterministic for any thread count. Validates
// cu_seqlens (values) and max_seqlen against them.
Status fwd_cpu(const FwdArgs& args);
Status bwd_cpu(const BwdArgs& args);

}  // namespace tk::flash_attn
