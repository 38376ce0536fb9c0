// The sm_80 FlashAttention launchers, declared for the dispatcher (flash_attn_cuda.cu) without
// the kernels (defined in flash_attn_sm80_launch.cuh): each (T, head dim) is compiled once, in
// its own generated file under instantiations/ (generate_instantiations.py), so the kernels
// build in parallel.
#pragma once

#include <cuda_runtime.h>

#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_params.h"

namespace tk::flash_attn::sm80 {

// T = __half or __nv_bfloat16; kHeadDim one of 64, 96, 128, 192, 256. The caller has checked
// the arguments and that the grid is not empty (batch, heads and max_seqlen_q at least 1).
template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream);

// Needs p.delta (fp32, lse's shape) as scratch. max_seqlen_q or max_seqlen_k may be 0.
template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream);

}  // namespace tk::flash_attn::sm80
