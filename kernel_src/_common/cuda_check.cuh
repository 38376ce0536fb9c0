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

// A property of the current device that launchers ask for on every call: query(device, &value)
// runs once per device (for the first 64) and its positive result is cached.
template <class Query>
inline Status cached_per_device(int* value, Query query) {
  constexpr int kCachedDevices = 64;
  static std::atomic<int> cache[kCachedDevices] = {};
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return status_from(err);
  if (device < kCachedDevices) {
    *value = cache[device].load(std::memory_order_relaxed);
    if (*value > 0) return Status::Ok();
  }
  if (Status s = query(device, value); !s.ok()) return s;
  if (device < kCachedDevices) cache[device].store(*value, std::memory_order_relaxed);
  return Status::Ok();
}

inline Status current_multiprocessor_count(int* count) {
  return cached_per_device(count, [](int device, int* value) {
    return status_from(cudaDeviceGetAttribute(value, cudaDevAttrMultiProcessorCount, device));
  });
}

// The current device's compute capability as 10 * major + minor (90 for sm_90).
inline Status current_compute_capability(int* capability) {
  return cached_per_device(capability, [](int device, int* value) {
    int major = 0;
    int minor = 0;
    if (Status s = status_from(
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
        !s.ok()) {
      return s;
    }
    if (Status s = status_from(
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
        !s.ok()) {
      return s;
    }
    *value = 10 * major + minor;
    return Status::Ok();
  });
}

}  // namespace tk
