// The sm_90a FlashAttention launchers, declared for the dispatcher (flash_attn_cuda.cu)
// without the kernels (defined in flash_attn_sm90_launch.cuh, instantiated per (T, head dim) under
// instantiations/ by generate_instantiations.py).
#pragma once

#include <cuda_runtime.h>

#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_params.h"

namespace tk::flash_attn::sm90 {

using sm80::Params;

// Head dims with a sm_90a forward (multiples of the 64-element swizzle atom) and backward (192
// has none: the wide form's halves, 96 columns, would split a 64-column chunk).
constexpr bool has_fwd(int head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 192 || head_dim == 256;
}
constexpr bool has_bwd(int head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 256;
}
// Whether the backward of a head dim sums dQ across key blocks, where not deterministic: up to
// 128, whose dK and dV accumulators fit one warpgroup's registers. The backward has three forms
// (flash_attn_sm90_bwd.cuh, flash_attn_sm90_bwd_wide.cuh); run_bwd picks by p.dq_accum:
// - given dq_accum (sums_dq and not deterministic): one dk/dv kernel that also computes dQ
//   (five matrix products per step) and adds it into dq_accum with bulk reductions, in an order
//   that varies between runs. On an H100 (bf16, same-command A/B) 1.15x-1.21x faster than the
//   two kernels at head dim 128 (4x32x4096x128: 6352 -> 5301 us) and 1.30x-1.34x faster than
//   the same kernel summing with 16-byte atomics at 64 (2x16x16384x64: 16424 -> 12275 us);
// - null: two kernels, dk/dv then dq (seven products, no sums across blocks; deterministic);
// - head dim 256: two kernels whose consumer warpgroups each hold half the head dim of the
//   accumulators and exchange halves of P^T and dS^T (or dS) through shared memory.
constexpr bool sums_dq(int head_dim) { return head_dim <= 128; }

// T = __half or __nv_bfloat16; kHeadDim one of has_fwd's. The caller has checked the arguments,
// that the grid is not empty and that the GPU is sm_90 (the code is sm_90a SASS only).
template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream);

// As sm80::run_bwd (p.delta is scratch), for has_bwd's head dims, with rows in both q and k;
// p.dq_accum is set only where sums_dq.
template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream);

}  // namespace tk::flash_attn::sm90
