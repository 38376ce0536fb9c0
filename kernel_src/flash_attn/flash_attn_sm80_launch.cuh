// The sm_80 FlashAttention launchers declared in flash_attn_sm80_launch.h: the schedule of
// flash_attn_sm80_schedule.cuh, run with the shared-memory opt-in and launches on the caller's
// stream. Included only by the generated instantiations/*.cu. Framework-free: CUDA headers only.
#pragma once

#include <cuda_runtime.h>

#include "_common/cuda_check.cuh"
#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_launch.h"
#include "flash_attn/flash_attn_sm80_schedule.cuh"

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

// The GPU side of schedule_fwd / schedule_bwd: opt in to the shared memory, launch on the
// caller's stream, report the launch error.
struct GpuLauncher {
  template <typename Kernel>
  static Status launch(Kernel kernel, int smem_bytes, dim3 grid, const Params& p,
                       cudaStream_t stream) {
    if (smem_bytes > 0) {
      if (Status s = allow_shared_memory(kernel, smem_bytes); !s.ok()) return s;
    }
    kernel<<<grid, kThreads, smem_bytes, stream>>>(p);
    return check_last_launch();
  }
};

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream) {
  return schedule_fwd<GpuLauncher, T, kHeadDim>(p, stream);
}

template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream) {
  return schedule_bwd<GpuLauncher, T, kHeadDim>(p, stream);
}

}  // namespace tk::flash_attn::sm80
