// The sm_80 FlashAttention launchers declared in flash_attn_sm80_launch.h: shared-memory opt-in,
// grid shapes and the kernel launches on the caller's stream. Included only by the generated
// instantiations/*.cu. Framework-free: CUDA headers only.
#pragma once

#include <cuda_runtime.h>

#include "_common/cuda_check.cuh"
#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_bwd.cuh"
#include "flash_attn/flash_attn_sm80_fwd.cuh"
#include "flash_attn/flash_attn_sm80_launch.h"

namespace tk::flash_attn::sm80 {

// Lets a kernel use `bytes` of dynamic shared memory (above 48 KiB it must opt in), or says
// that this GPU has less than that per block.
template <typename Kernel>
Status allow_shared_memory(Kernel kernel, int bytes) {
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return status_from(err);
  int limit = 0;
  if (const cudaError_t err =
          cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
      err != cudaSuccess) {
    return status_from(err);
  }
  if (bytes > limit) {
    return Status::Error(StatusCode::kInvalidArgument,
                         "flash_attn: this head_dim needs more shared memory per block than this "
                         "GPU allows (sm_86/sm_89 allow 99 KiB); use the Triton variant");
  }
  return status_from(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream) {
  using Shape = FwdShape<kHeadDim>;
  const auto kernel = fwd_kernel<T, kHeadDim>;
  if (Status s = allow_shared_memory(kernel, Shape::kSmemBytes); !s.ok()) return s;
  const dim3 grid((p.max_seqlen_q + Shape::kRows - 1) / Shape::kRows, p.heads_q, p.batch);
  kernel<<<grid, kThreads, Shape::kSmemBytes, stream>>>(p);
  return check_last_launch();
}

template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream) {
  if (p.max_seqlen_q > 0) {
    const dim3 grid((p.max_seqlen_q + kDeltaRowsPerBlock - 1) / kDeltaRowsPerBlock, p.heads_q,
                    p.batch);
    bwd_delta_kernel<T, kHeadDim><<<grid, kThreads, 0, stream>>>(p);
    if (Status s = check_last_launch(); !s.ok()) return s;
  }
  if (p.max_seqlen_k > 0) {
    using Shape = DkDvShape<kHeadDim>;
    const auto kernel = bwd_dk_dv_kernel<T, kHeadDim>;
    if (Status s = allow_shared_memory(kernel, Shape::kSmemBytes); !s.ok()) return s;
    const dim3 grid((p.max_seqlen_k + Shape::kKeys - 1) / Shape::kKeys, p.heads_k, p.batch);
    kernel<<<grid, kThreads, Shape::kSmemBytes, stream>>>(p);
    if (Status s = check_last_launch(); !s.ok()) return s;
  }
  if (p.max_seqlen_q > 0) {
    using Shape = DqShape<kHeadDim>;
    const auto kernel = bwd_dq_kernel<T, kHeadDim>;
    if (Status s = allow_shared_memory(kernel, Shape::kSmemBytes); !s.ok()) return s;
    const dim3 grid((p.max_seqlen_q + Shape::kRows - 1) / Shape::kRows, p.heads_q, p.batch);
    kernel<<<grid, kThreads, Shape::kSmemBytes, stream>>>(p);
    if (Status s = check_last_launch(); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace tk::flash_attn::sm80
