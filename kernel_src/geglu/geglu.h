// Host API of the gated activations (GEGLU / SwiGLU) and the elementwise GELU: plain pointers
// and sizes, no torch, no CUDA headers.
//
//   geglu:  x [rows, 2 * hidden] -> y [rows, hidden],  y = act(a) * b
//           (a, b) = (x[:, :hidden], x[:, hidden:]), or the other way round with swap_halves
//           backward: da = dy * b * act'(a), db = dy * act(a), written into dx [rows, 2 * hidden]
//           at the same places as a and b in x
//   gelu:   y = act(x) elementwise over numel elements (act: kGeluTanh or kGelu)
//           backward: dx = dy * act'(x)
// act (activation.h): kGeluTanh 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))),
// kGelu 0.5 a (1 + erf(a / sqrt(2))), kSilu a * sigmoid(a). Every tensor is row-major and
// contiguous and all of one dtype; math is fp32 inside, each output rounded once.
#pragma once

#include <cstdint>

#include "_common/status.h"

namespace tk::geglu {

enum class Activation : int32_t { kGeluTanh = 0, kGelu = 1, kSilu = 2 };

struct FwdArgs {
  void* y = nullptr;          // [rows, hidden]
  const void* x = nullptr;    // [rows, 2 * hidden]
  int64_t rows = 0;
  int64_t hidden = 0;         // H: the width of y and of each half of x
  Activation activation = Activation::kGeluTanh;
  bool swap_halves = false;   // true: act is applied to the second half, b is the first
  DType dtype = DType::kFloat32;
};

struct BwdArgs {
  void* dx = nullptr;         // [rows, 2 * hidden]
  const void* dy = nullptr;   // [rows, hidden]
  const void* x = nullptr;    // [rows, 2 * hidden]
  int64_t rows = 0;
  int64_t hidden = 0;
  Activation activation = Activation::kGeluTanh;
  bool swap_halves = false;
  DType dtype = DType::kFloat32;
};

struct GeluFwdArgs {
  void* y = nullptr;
  const void* x = nullptr;
  int64_t numel = 0;
  Activation activation = Activation::kGeluTanh;  // kGeluTanh or kGelu
  DType dtype = DType::kFloat32;
};

struct GeluBwdArgs {
  void* dx = nullptr;
  const void* dy = nullptr;
  const void* x = nullptr;
  int64_t numel = 0;
  Activation activation = Activation::kGeluTanh;  // kGeluTanh or kGelu
  DType dtype = DType::kFloat32;
};

// CUDA (geglu.cu). `stream` is a cudaStream_t; the current device is the tensors' device.
Status fwd_cuda(const FwdArgs& args, void* stream);
Status bwd_cuda(const BwdArgs& args, void* stream);
Status gelu_fwd_cuda(const GeluFwdArgs& args, void* stream);
Status gelu_bwd_cuda(const GeluBwdArgs& args, void* stream);

// CPU (geglu_cpu.cpp): multi-threaded over rows (geglu) or element ranges (gelu).
Status fwd_cpu(const FwdArgs& args);
Status bwd_cpu(const BwdArgs& args);
Status gelu_fwd_cpu(const GeluFwdArgs& args);
Status gelu_bwd_cpu(const GeluBwdArgs& args);

}  // namespace tk::geglu
