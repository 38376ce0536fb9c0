// FlashAttention CUDA launchers (the host API of flash_attn.h): check the arguments, flatten
// them into sm80::Params and dispatch (dtype, head dim) to the kernels, which are compiled in
// instantiations/ (one file per direction, head dim and dtype). No torch headers.
//
// cu_seqlens are device pointers: their contents (cu[0] = 0, non-decreasing, cu[batch] equal to
// the total rows, every length at most max_seqlen) are trusted, as FlashAttention-2 does;
// checking them would cost a device-to-host copy and a sync per call.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "_common/cuda_check.cuh"
#include "_common/launch_util.h"
#include "_common/status.h"
#include "flash_attn/flash_attn.h"
#include "flash_attn/flash_attn_sm80_launch.h"
#include "flash_attn/flash_attn_sm80_params.h"
#include "flash_attn/flash_attn_sm90_launch.h"

namespace tk::flash_attn {
namespace {

// gridDim.y and gridDim.z are at most 65535.
constexpr int64_t kMaxGridYZ = 65535;

bool rows_are_16_byte_aligned(const void* pointer, const Strides& s) {
  return all_aligned({pointer}, 16) && s.batch % 8 == 0 && s.row % 8 == 0 && s.head % 8 == 0;
}

Status check_problem(const Problem& p) {
  if (p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    return Status::Error(StatusCode::kUnsupportedDType,
                         "flash_attn: CUDA tensors must be float16 or bfloat16");
  }
  if (Status s = check_problem_shape(p); !s.ok()) return s;
  if (p.seqlen_q >= sm80::kUnbounded || p.seqlen_k >= sm80::kUnbounded) {
    return invalid("flash_attn: CUDA kernels take fewer than 2^30 query and key rows");
  }
  if (p.batch > kMaxGridYZ || p.heads_q > kMaxGridYZ) {
    return invalid("flash_attn: CUDA kernels take at most 65535 sequences and 65535 heads");
  }
  if (p.cu_seqlens_q != nullptr && ((p.seqlen_q > 0 && p.max_seqlen_q < 1) ||
                                    (p.seqlen_k > 0 && p.max_seqlen_k < 1))) {
    return invalid("flash_attn: max_seqlen_q / max_seqlen_k must be at least 1 when q / k have "
                   "rows");
  }
  return Status::Ok();
}

int clamp_window(int64_t bound) {
  return bound < 0 || bound > sm80::kUnbounded ? sm80::kUnbounded : static_cast<int>(bound);
}

// A sequence has at most all the rows (the batched layout: exactly seqlen rows).
int grid_rows(const Problem& p, int64_t max_seqlen, int64_t total) {
  if (p.cu_seqlens_q == nullptr) return static_cast<int>(total);
  return static_cast<int>(max_seqlen < total ? max_seqlen : total);
}

sm80::Params params_of(const Problem& p, const Strides& q, const Strides& k, const Strides& v) {
  sm80::Params s;
  s.q_batch = q.batch, s.q_row = q.row, s.q_head = q.head;
  s.k_batch = k.batch, s.k_row = k.row, s.k_head = k.head;
  s.v_batch = v.batch, s.v_row = v.row, s.v_head = v.head;
  s.cu_seqlens_q = p.cu_seqlens_q;
  s.cu_seqlens_k = p.cu_seqlens_k;
  s.batch = static_cast<int>(p.batch);
  s.seqlen_q = static_cast<int>(p.seqlen_q);
  s.seqlen_k = static_cast<int>(p.seqlen_k);
  s.max_seqlen_q = grid_rows(p, p.max_seqlen_q, p.seqlen_q);
  s.max_seqlen_k = grid_rows(p, p.max_seqlen_k, p.seqlen_k);
  s.heads_q = static_cast<int>(p.heads_q);
  s.heads_k = static_cast<int>(p.heads_k);
  s.group = static_cast<int>(p.heads_q / p.heads_k);
  s.window_left = clamp_window(p.window_left);
  s.window_right = clamp_window(effective_window_right(p.causal, p.window_right));
  s.softmax_scale = p.softmax_scale;
  s.scale_log2 = p.softmax_scale * sm80::kLog2e;
  return s;
}

// Calls Run<T, kHeadDim>::call(params, stream, sm90) for the problem's dtype and head dim (both
// checked).
template <template <typename, int> class Run>
Status dispatch(const Problem& p, const sm80::Params& params, cudaStream_t stream, bool sm90) {
  const auto with_type = [&](auto type_tag) {
    using T = decltype(type_tag);
    switch (p.head_dim) {
      case 64: return Run<T, 64>::call(params, stream, sm90);
      case 96: return Run<T, 96>::call(params, stream, sm90);
      case 128: return Run<T, 128>::call(params, stream, sm90);
      case 192: return Run<T, 192>::call(params, stream, sm90);
      default: return Run<T, 256>::call(params, stream, sm90);
    }
  };
  return p.dtype == DType::kFloat16 ? with_type(__half{}) : with_type(__nv_bfloat16{});
}

// The sm_90a launcher when the GPU takes it (`sm90`) and the head dim has one, else sm_80's.
template <typename T, int kHeadDim>
struct RunFwd {
  static Status call(const sm80::Params& p, cudaStream_t s, bool sm90) {
    if constexpr (sm90::has_fwd(kHeadDim)) {
      if (sm90) return sm90::run_fwd<T, kHeadDim>(p, s);
    }
    return sm80::run_fwd<T, kHeadDim>(p, s);
  }
};

// The sm_90a backward where runs_sm90_bwd (`sm90`), else sm_80's.
template <typename T, int kHeadDim>
struct RunBwd {
  static Status call(const sm80::Params& p, cudaStream_t s, bool sm90) {
    if constexpr (sm90::has_bwd(kHeadDim)) {
      if (sm90) return sm90::run_bwd<T, kHeadDim>(p, s);
    }
    // bwd_cuda sets dq_accum only where the sm_90a kernels run: not here.
    return sm80::run_bwd<T, kHeadDim>(p, s);
  }
};

// The sm_90a kernels run on sm_90 GPUs when this build has sm_90a code (the builder defines
// TK_CUDA_SM_90A) and both q and k have rows (TMA maps have no empty dimension).
Status use_sm90(const Problem& p, bool* use) {
  *use = false;
#ifdef TK_CUDA_SM_90A
  if (p.seqlen_q == 0 || p.seqlen_k == 0) return Status::Ok();
  int capability = 0;
  if (Status s = current_compute_capability(&capability); !s.ok()) return s;
  *use = capability == 90;
#endif
  return Status::Ok();
}

// Whether the sm_90a backward runs, and whether it sums dQ across key blocks.
bool runs_sm90_bwd(const Problem& p, bool sm90) { return sm90 && sm90::has_bwd(p.head_dim); }

bool accumulates_dq(const Problem& p, bool deterministic, bool sm90) {
  return runs_sm90_bwd(p, sm90) && sm90::sums_dq(p.head_dim) && !deterministic;
}

}  // namespace

int64_t bwd_cuda_dq_accum_floats(const Problem& p) {
  return sm80::dq_accum_floats(p.cu_seqlens_q != nullptr, p.batch, p.seqlen_q, p.heads_q,
                               p.head_dim);
}

bool bwd_cuda_accumulates_dq(const Problem& p, bool deterministic) {
  bool sm90 = false;
  return use_sm90(p, &sm90).ok() && accumulates_dq(p, deterministic, sm90);
}

int64_t fwd_cuda_split_bytes(const Problem& p) {
  bool sm90 = false;
  int multiprocessors = 0;
  if (!check_problem(p).ok() || !use_sm90(p, &sm90).ok() || !sm90 ||
      !sm90::has_fwd(static_cast<int>(p.head_dim)) ||
      !current_multiprocessor_count(&multiprocessors).ok()) {
    return 0;
  }
  const sm80::Params params = params_of(p, {}, {}, {});
  const int head_dim = static_cast<int>(p.head_dim);
  return sm90::fwd_split_plan(params, head_dim, sm90::fwd_units(params, head_dim, multiprocessors))
      .bytes;
}

Status fwd_cuda(const FwdArgs& a, void* stream) {
  const Problem& p = a.problem;
  if (Status s = check_problem(p); !s.ok()) return s;
  if (!rows_are_16_byte_aligned(a.q, a.q_strides) || !rows_are_16_byte_aligned(a.k, a.k_strides) ||
      !rows_are_16_byte_aligned(a.v, a.v_strides)) {
    return invalid("flash_attn: q, k and v must be 16-byte aligned with strides that are "
                   "multiples of 8 elements");
  }
  if (!all_aligned({a.out}, 16)) return invalid("flash_attn: out must be 16-byte aligned");
  sm80::Params params = params_of(p, a.q_strides, a.k_strides, a.v_strides);
  if (params.batch == 0 || params.heads_q == 0 || params.max_seqlen_q == 0) return Status::Ok();
  params.q = a.q;
  params.k = a.k;
  params.v = a.v;
  params.out = a.out;
  params.lse = a.lse;
  if (a.split_workspace != nullptr && !all_aligned({a.split_workspace}, 16)) {
    return invalid("flash_attn: split_workspace must be 16-byte aligned");
  }
  params.fwd_split = a.split_workspace;
  bool sm90 = false;
  if (Status s = use_sm90(p, &sm90); !s.ok()) return s;
  return dispatch<RunFwd>(p, params, static_cast<cudaStream_t>(stream), sm90);
}

Status bwd_cuda(const BwdArgs& a, void* stream) {
  const Problem& p = a.problem;
  if (Status s = check_problem(p); !s.ok()) return s;
  if (!rows_are_16_byte_aligned(a.q, a.q_strides) || !rows_are_16_byte_aligned(a.k, a.k_strides) ||
      !rows_are_16_byte_aligned(a.v, a.v_strides) ||
      !rows_are_16_byte_aligned(a.dout, a.dout_strides)) {
    return invalid("flash_attn: q, k, v and dout must be 16-byte aligned with strides that are "
                   "multiples of 8 elements");
  }
  if (!all_aligned({a.out, a.dq, a.dk, a.dv}, 16)) {
    return invalid("flash_attn: out, dq, dk and dv must be 16-byte aligned");
  }
  sm80::Params params = params_of(p, a.q_strides, a.k_strides, a.v_strides);
  if (params.batch == 0 || params.heads_q == 0) return Status::Ok();
  if (params.max_seqlen_q > 0 && a.delta == nullptr) {
    return invalid("flash_attn: the CUDA backward needs the delta workspace (lse's shape, fp32)");
  }
  params.dout_batch = a.dout_strides.batch;
  params.dout_row = a.dout_strides.row;
  params.dout_head = a.dout_strides.head;
  params.q = a.q;
  params.k = a.k;
  params.v = a.v;
  params.dout = a.dout;
  // The forward's outputs, only read by the backward kernels.
  params.out = const_cast<void*>(a.out);
  params.lse = const_cast<float*>(a.lse);
  params.delta = a.delta;
  params.dq = a.dq;
  params.dk = a.dk;
  params.dv = a.dv;
  bool sm90 = false;
  if (Status s = use_sm90(p, &sm90); !s.ok()) return s;
  if (params.max_seqlen_q > 0 && accumulates_dq(p, a.deterministic, sm90)) {
    if (a.dq_accum == nullptr) {
      return invalid("flash_attn: this CUDA backward needs the dq_accum workspace "
                     "(bwd_cuda_dq_accum_floats floats)");
    }
    if (!all_aligned({a.dq_accum}, 16)) {
      return invalid("flash_attn: dq_accum must be 16-byte aligned");
    }
    params.dq_accum = a.dq_accum;
  }
  return dispatch<RunBwd>(p, params, static_cast<cudaStream_t>(stream),
                         runs_sm90_bwd(p, sm90));
}

}  // namespace tk::flash_attn
