// Framework-free types shared by every kernel's host API: the element type enum and the
// status a launcher returns. Included by .cu, CPU .cpp and the torch binding alike.
#pragma once

#include <cstdint>

namespace tk {

enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

enum class StatusCode : int32_t {
  kOk = 0,
  kInvalidArgument = 1,   // a size, pointer or alignment the launcher cannot handle
  kUnsupportedDType = 2,
  kCudaError = 3,         // a CUDA runtime call or kernel launch failed; message says which
};

// `message` always points to a string with static storage duration (a literal or
// cudaGetErrorString's result), so a Status can be returned by value and kept.
struct Status {
  StatusCode code = StatusCode::kOk;
  const char* message = "ok";

  bool ok() const { return code == StatusCode::kOk; }
  static Status Ok() { return {}; }
  static Status Error(StatusCode code, const char* message) { return {code, message}; }
};

// The launchers' argument errors.
inline Status invalid(const char* message) {
  return Status::Error(StatusCode::kInvalidArgument, message);
}

inline int64_t dtype_size(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

}  // namespace tk
