// The sm_90a FlashAttention launchers, declared for the dispatcher (flash_attn_cuda.cu)
// without the kernels (defined in flash_attn_sm90_launch.cuh, instantiated per (T, head dim) under
// instantiations/ by generate_instantiations.py).
#pragma once

#include <cuda_runtime.h>

#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_params.h"

namespace tk::flash_attn::sm90 {

using sm80::Params;

// Head dims with a sm_90a forward (multiples of the 64-element swizzle atom) and backward (whose
// dK and dV accumulators fit in registers).
constexpr bool has_fwd(int head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 256;
}
constexpr bool has_bwd(int head_dim) { return head_dim == 64 || head_dim == 128; }
// The backward's two forms, measured on an H100 (bf16, same-command A/B):
// - two kernels, dk/dv then dq (seven matrix products per step, no atomics, deterministic): at
//   head dim 128 1.24x-1.33x faster than the accumulating form (4x32x4096x128: 7685 -> 6198 us;
//   apart, the dk/dv and dq kernels each run at about 676 TFLOP/s), so the only form there;
// - accumulating, one dk/dv kernel that also sums dQ with fp32 atomics (five products): head
//   dim 64 when not deterministic. There the two-kernel form gave wrong dK and dV on an H100
//   (ptxas reused the K/V fragment registers; bwd_dk_dv_kernel now keeps those fragments in
//   registers only when it sums dQ) and is not yet measured without them, so the deterministic
//   backward at 64 runs the sm_80 kernels.
constexpr bool accumulates_dq(int head_dim) { return head_dim == 64; }
// Whether the sm_90a backward runs for this head dim: not where its only form sums with atomics
// and the caller asks for a deterministic backward.
constexpr bool has_bwd(int head_dim, bool deterministic) {
  return has_bwd(head_dim) && !(deterministic && accumulates_dq(head_dim));
}

// T = __half or __nv_bfloat16; kHeadDim one of has_fwd's. The caller has checked the arguments,
// that the grid is not empty and that the GPU is sm_90 (the code is sm_90a SASS only).
template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream);

// As sm80::run_bwd (p.delta is scratch), for has_bwd's head dims, with rows in both q and k.
template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream);

}  // namespace tk::flash_attn::sm90
