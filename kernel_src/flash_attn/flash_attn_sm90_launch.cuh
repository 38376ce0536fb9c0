// The sm_90a FlashAttention launchers declared in flash_attn_sm90_launch.h: the schedule of
// flash_attn_sm90_schedule.cuh, run with the shared-memory opt-in and launches on the caller's
// stream. Included only by the generated instantiations/*.cu. Framework-free: CUDA headers only.
#pragma once

#include <cuda_runtime.h>

#include "_common/cuda_check.cuh"
#include "_common/dependent_launch.cuh"
#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_launch.cuh"
#include "flash_attn/flash_attn_sm90_launch.h"
#include "flash_attn/flash_attn_sm90_schedule.cuh"

namespace tk::flash_attn::sm90 {

struct GpuLauncher {
  // overlaps_previous: programmatic stream serialization, so that the kernel may start while
  // the previous one on the stream still runs (from when that one allows it,
  // allow_dependent_launch); the kernel must not read what the previous one writes.
  template <typename Kernel, typename KernelParams>
  static Status launch(Kernel kernel, int smem_bytes, dim3 grid, int threads,
                       const KernelParams& params, cudaStream_t stream,
                       bool overlaps_previous = false) {
    if (smem_bytes > 0) {
      if (Status s = sm80::allow_shared_memory(kernel, smem_bytes); !s.ok()) return s;
    }
    return status_from(launch_kernel(kernel, grid, dim3(threads), static_cast<size_t>(smem_bytes),
                                     stream, overlaps_previous, params));
  }

  static Status zero(void* device_bytes, int64_t bytes, cudaStream_t stream) {
    return status_from(cudaMemsetAsync(device_bytes, 0, static_cast<size_t>(bytes), stream));
  }
};

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream) {
  return sm90::schedule_fwd<GpuLauncher, T, kHeadDim>(p, stream);
}

template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream) {
  return sm90::schedule_bwd<GpuLauncher, T, kHeadDim>(p, stream);
}

}  // namespace tk::flash_attn::sm90
