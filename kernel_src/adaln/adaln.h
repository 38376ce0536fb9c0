// Host API of AdaLN (adaptive LayerNorm / RMSNorm with scale, shift and a gated residual):
// plain pointers and sizes, no torch, no CUDA headers.
//
// Per row r = (sample b, token s) of x [batch, seq, hidden]:
//   forward:  z = x                          (plain)
//             z = round(x + gate * branch)   (gated: rounded to the dtype, written to z_out)
//             layer: mean = mean(z), rstd = 1 / sqrt(mean((z - mean)^2) + eps)
//             rms:   mean = 0 (stored as 0), rstd = 1 / sqrt(mean(z^2) + eps)
//             xhat = (z - mean) * rstd;  n = xhat * weight
//             y = n * (1 + scale) + shift
//   backward: dn = dy * (1 + scale);  g = dn * weight
//             dz = rstd * (g - mean(g) - xhat * mean(g * xhat)) + dz_in   (layer)
//             dz = rstd * (g - xhat * mean(g * xhat)) + dz_in             (rms)
//             dx = dz;  dbranch = dz * gate;  dgate = dz * branch
//             dscale = dy * n;  dshift = dy;  dweight = sum over all rows of dn * xhat
//             (dscale, dshift, dgate summed over seq when that tensor is per sample)
// scale, shift and gate are each either per sample ([batch, hidden]: row b serves every token
// of sample b) or per token ([batch, seq, hidden]). Every tensor is row-major and contiguous;
// x, branch, gate, scale, shift, weight and all their gradients share one dtype; mean and rstd
// are fp32 [batch * seq]. Math is fp32 inside. Pointers to empty tensors may be null (as
// PyTorch's are), hence the explicit `gated` flags. Per-sample and weight gradients are sums over
// rows done in two deterministic passes (per-block partial rows in the workspace, then a fixed-
// order sum), never with atomics.
#pragma once

#include "_common/status.h"

namespace tk::adaln {

enum class Norm : int32_t { kRms = 0, kLayer = 1 };

struct FwdArgs {
  void* y = nullptr;
  void* z_out = nullptr;           // receives z (gated)
  float* mean = nullptr;
  float* rstd = nullptr;
  const void* x = nullptr;
  const void* branch = nullptr;    // gated only
  const void* gate = nullptr;      // gated only
  const void* scale = nullptr;
  const void* shift = nullptr;
  const void* weight = nullptr;    // nullptr: no affine weight
  bool gated = false;              // z = x + gate * branch; branch, gate and z_out required
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t hidden = 0;
  bool scale_per_token = false;
  bool shift_per_token = false;
  bool gate_per_token = false;
  float eps = 1e-6f;
  Norm norm = Norm::kRms;
  DType dtype = DType::kFloat32;
};

struct BwdArgs {
  void* dx = nullptr;
  void* dscale = nullptr;          // scale's shape
  // [batch, hidden]; or, shift_per_token, [batch, seq, hidden] or null: a per-token shift's
  // gradient is dy itself, which callers (autograd) can pass on instead of a copy.
  void* dshift = nullptr;
  void* dweight = nullptr;         // nullptr: dweight not wanted (or no weight)
  void* dbranch = nullptr;         // gated only (with dgate)
  void* dgate = nullptr;           // gated only: gate's shape
  float* workspace = nullptr;      // fp32 scratch of bwd_workspace_floats_*(args) elements
  const void* dy = nullptr;
  const void* dz = nullptr;        // nullptr, or the gradient of z_out, added to dx
  const void* z = nullptr;         // the normalized input: x, or z_out when gated
  const void* branch = nullptr;    // gated only (with gate)
  const void* gate = nullptr;
  const void* scale = nullptr;
  const void* weight = nullptr;    // nullptr: no affine weight
  const float* mean = nullptr;
  const float* rstd = nullptr;
  bool gated = false;              // branch, gate, dbranch and dgate required
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t hidden = 0;
  bool scale_per_token = false;
  bool shift_per_token = false;
  bool gate_per_token = false;
  Norm norm = Norm::kRms;
  DType dtype = DType::kFloat32;
};

// CUDA (adaln.cu). `stream` is a cudaStream_t; the current device is the tensors' device.
Status fwd_cuda(const FwdArgs& args, void* stream);
Status bwd_cuda(const BwdArgs& args, void* stream);
// fp32 elements of BwdArgs::workspace that bwd_cuda needs for these args on the current device
// (pointers, sizes, flags and dtype must already be set; workspace itself is not read).
int64_t bwd_workspace_floats_cuda(const BwdArgs& args);

// CPU (adaln_cpu.cpp): multi-threaded over rows.
Status fwd_cpu(const FwdArgs& args);
Status bwd_cpu(const BwdArgs& args);
int64_t bwd_workspace_floats_cpu(const BwdArgs& args);

}  // namespace tk::adaln
