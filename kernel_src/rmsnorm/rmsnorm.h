// Host API of RMSNorm: plain pointers and sizes, no torch, no CUDA headers.
//
//   forward:  z = x (+ residual)                 (z written to residual_out when fused)
//             rstd = 1 / sqrt(mean(z^2) + eps)   (fp32, one per row)
//             y = z * rstd (* weight)
//   backward: g = dy (* weight)
//             dz = rstd * (g - z * rstd^2 * mean(g * z))  (+ dresidual when given)
//             dweight = sum over rows of dy * z * rstd
// Every tensor is row-major and contiguous: [rows, hidden] for x, y, residual, residual_out,
// dy, dx, dresidual; [hidden] for weight and dweight; [rows] fp32 for rstd. x, y, residual,
// weight and their gradients share one dtype. Math is fp32 inside.
#pragma once

#include "_common/status.h"

namespace tk::rmsnorm {

struct FwdArgs {
  void* y = nullptr;
  float* rstd = nullptr;
  const void* x = nullptr;
  const void* weight = nullptr;        // nullptr: no affine weight
  const void* residual = nullptr;      // nullptr: plain RMSNorm; else z = x + residual
  void* residual_out = nullptr;        // receives z; required iff residual != nullptr
  int64_t rows = 0;
  int64_t hidden = 0;
  float eps = 1e-6f;
  DType dtype = DType::kFloat32;
};

struct BwdArgs {
  void* dx = nullptr;
  void* dweight = nullptr;             // nullptr: dweight not wanted (or no weight)
  float* workspace = nullptr;          // fp32 scratch of bwd_workspace_floats(...) elements
  const void* dy = nullptr;
  const void* z = nullptr;             // the normalized input: x, or x + residual when fused
  const void* weight = nullptr;        // nullptr: no affine weight
  const float* rstd = nullptr;
  const void* dresidual = nullptr;     // nullptr, or the gradient of residual_out, added to dx
  int64_t rows = 0;
  int64_t hidden = 0;
  DType dtype = DType::kFloat32;
};

// CUDA (rmsnorm.cu). `stream` is a cudaStream_t; the current device is the tensors' device.
Status fwd_cuda(const FwdArgs& args, void* stream);
Status bwd_cuda(const BwdArgs& args, void* stream);
// fp32 elements of BwdArgs::workspace that bwd_cuda needs on the current device
// (0 when dweight is not wanted).
int64_t bwd_workspace_floats_cuda(int64_t rows, int64_t hidden, bool want_dweight);

// CPU (rmsnorm_cpu.cpp): multi-threaded over rows.
Status fwd_cpu(const FwdArgs& args);
Status bwd_cpu(const BwdArgs& args);
int64_t bwd_workspace_floats_cpu(int64_t rows, int64_t hidden, bool want_dweight);

}  // namespace tk::rmsnorm
