// Programmatic dependent launch (sm_90+): a kernel launched with programmatic stream
// serialization may start while the previous kernel on the stream still runs, from when every
// block of that one has called allow_dependent_launch (or exited); it calls
// wait_for_previous_grid before reading anything the previous kernel writes. Also the launch
// helpers for launch attributes (this one, cooperative launch). Framework-free: CUDA headers
// only.
#pragma once

#include <cuda_runtime.h>

namespace tk {

// Lets the next kernel on the stream, launched with programmatic stream serialization, start
// once every block of this grid has run this (or exited). A no-op before sm_90 (and on AMD).
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(__HIP_PLATFORM_AMD__)
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Waits until the grid this one was launched after has completed and its writes are visible.
// Before sm_90 a kernel never starts before the previous one ends: a no-op there.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(__HIP_PLATFORM_AMD__)
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem_bytes, stream>>>(args...) with the given launch
// attributes (none: a plain launch).
template <typename... Params, typename... Args>
cudaError_t launch_kernel_with(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                               cudaStream_t stream, cudaLaunchAttribute* attributes,
                               unsigned num_attributes, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = attributes;
  config.numAttrs = num_attributes;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}

// Launches kernel<<<grid, block, smem_bytes, stream>>>(args...), with programmatic stream
// serialization when overlaps_previous (the kernel then calls wait_for_previous_grid before it
// reads the previous kernel's outputs).
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                          cudaStream_t stream, bool overlaps_previous, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  return launch_kernel_with(kernel, grid, block, smem_bytes, stream, &attribute,
                            overlaps_previous ? 1 : 0, static_cast<Args&&>(args)...);
}

// Launches kernel<<<grid, block, 0, stream>>>(args...) cooperatively: every block is resident at
// once, as a grid barrier (cooperative_groups::this_grid().sync()) needs, or the launch fails
// with cudaErrorCooperativeLaunchTooLarge.
template <typename... Params, typename... Args>
cudaError_t launch_cooperative_kernel(void (*kernel)(Params...), dim3 grid, dim3 block,
                                      cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeCooperative;
  attribute.val.cooperative = 1;
  return launch_kernel_with(kernel, grid, block, 0, stream, &attribute, 1,
                            static_cast<Args&&>(args)...);
}

}  // namespace tk
