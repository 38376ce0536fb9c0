// Host API of RoPE (rotary position embedding), 1D and 3D: plain pointers, sizes and strides,
// no torch, no CUDA headers.
//
// A tensor is addressed as [batch, seq, heads, head_dim] through element strides for batch,
// seq and head (the last dim has stride 1), so both layouts ("bshd", "bhsd") and views sliced
// out of a fused qkv projection are described without copies. Only the first rot_dim dims of a
// head are rotated; dims rot_dim..head_dim are copied unchanged (nothing to do in place).
//
// Pairs. rot_dim is split into bands (one for 1D; t, h, w for 3D, in that order along the head
// dim). Pair p of the rot_dim / 2 pairs lies in band a (which starts at pair P_a, covers
// elements E_a = 2 * P_a .. E_a + d_a) with local index i = p - P_a:
//   interleaved (GPT-J, Wan/HunyuanVideo complex pairs): elements (2p, 2p + 1)
//   rotate-half (GPT-NeoX / Llama):                       elements (E_a + i, E_a + d_a / 2 + i)
// Each pair (x1, x2) with angle theta_p becomes, in fp32,
//   y1 = x1 * cos - x2 * sin,   y2 = x2 * cos + x1 * sin,   sin negated when conjugate
// (rotation by -theta_p, the backward of the rotation by theta_p).
//
// Angles. 1D: cos / sin tables of rot_dim / 2 columns, row s of the sequence (per batch when the
// table has a batch stride), or row positions[b, s] when positions are given; fp32 or the data
// type. 3D: token s of a T x H x W grid is (t, h, w) = (s / (H*W), (s / W) % H, s % W); band a
// (t, h, w) has position idx_a * scale_a and pair i of the band the frequency
// theta^(-2i / d_a); angle = position * frequency, computed in the kernel.
#pragma once

#include "_common/status.h"

namespace tk::rope {

// One tensor to rotate. out may equal in (in place; then the strides are the same too).
struct Rows {
  void* out = nullptr;
  const void* in = nullptr;
  int64_t heads = 0;  // 0: no such tensor (k absent)
  int64_t in_stride_batch = 0;
  int64_t in_stride_seq = 0;
  int64_t in_stride_head = 0;
  int64_t out_stride_batch = 0;
  int64_t out_stride_seq = 0;
  int64_t out_stride_head = 0;
};

// What 1D and 3D share: the tensors (k only in 1D) and the rotation.
struct Common {
  Rows q;
  Rows k;
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t head_dim = 0;
  int64_t rot_dim = 0;  // even, 2 <= rot_dim <= head_dim
  bool interleaved = false;
  bool conjugate = false;
  DType dtype = DType::kFloat32;
};

// 1D: angles from cos / sin tables of rot_dim / 2 columns (last dim contiguous).
struct Args {
  Common x;
  const void* cos = nullptr;
  const void* sin = nullptr;
  bool table_fp32 = true;  // else the tables have the data type
  // Element strides. Without positions: row = s, batch stride 0 for a table shared by the batch.
  // With positions: row = positions[b, s], batch strides unused.
  int64_t cos_stride_batch = 0;
  int64_t cos_stride_row = 0;
  int64_t sin_stride_batch = 0;
  int64_t sin_stride_row = 0;
  const void* positions = nullptr;  // nullptr: row = s
  bool positions_int64 = true;      // else int32
  int64_t positions_stride_batch = 0;
  int64_t positions_stride_seq = 0;
  int64_t table_rows = 0;  // rows of the tables; positions outside [0, table_rows) are errors
};

// 3D: angles computed from the token's grid coordinates.
struct Args3d {
  Common x;  // x.k.heads == 0
  int64_t grid[3] = {0, 0, 0};   // T, H, W with T * H * W == seq
  int64_t split[3] = {0, 0, 0};  // band widths d_t, d_h, d_w: even, sum == rot_dim
  double theta = 10000.0;
  float scale[3] = {1.0f, 1.0f, 1.0f};
};

// CUDA (rope.cu). `stream` is a cudaStream_t; the current device is the tensors' device.
// Positions outside the table are the caller's contract there: they give NaN outputs (the
// table is never read out of bounds), not an error.
Status fwd_cuda(const Args& args, void* stream);
Status fwd3d_cuda(const Args3d& args, void* stream);

// CPU (rope_cpu.cpp): multi-threaded over tokens. Positions outside the table are an error.
Status fwd_cpu(const Args& args);
Status fwd3d_cpu(const Args3d& args);

}  // namespace tk::rope
