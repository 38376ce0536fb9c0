// Host-side CUDA runtime helpers that report failures as tk::Status. Framework-free.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

#include "_common/status.h"

namespace tk {

inline Status status_from(cudaError_t err) {
  if (err == cudaSuccess) return Status::Ok();
  return Status::Error(StatusCode::kCudaError, cudaGetErrorString(err));
}

// Call right after a kernel launch: reports a bad launch configuration or an earlier
// asynchronous error that is still pending.
inline Status check_last_launch() { return status_from(cudaGetLastError()); }

// Multiprocessor count of the current device; launchers ask on every call, so it is queried
// once per device and cached.
inline Status current_multiprocessor_count(int* count) {
  constexpr int kCachedDevices = 64;
  static std::atomic<int> cache[kCachedDevices] = {};
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return status_from(err);
  if (device < kCachedDevices) {
    *count = cache[device].load(std::memory_order_relaxed);
    if (*count > 0) return Status::Ok();
  }
  const cudaError_t err =
      cudaDeviceGetAttribute(count, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return status_from(err);
  if (device < kCachedDevices) cache[device].store(*count, std::memory_order_relaxed);
  return Status::Ok();
}

}  // namespace tk
