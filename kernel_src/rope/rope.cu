// RoPE launchers: check the arguments, pick the access width and the launch shape, launch
// rope_kernel (rope.cuh). Framework-free: CUDA headers only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "_common/cuda_check.cuh"
#include "_common/vec.cuh"
#include "rope/bands.h"
#include "rope/rope.cuh"
#include "rope/rope.h"

namespace tk::rope {
namespace {

// Static shared memory limit of a block without opting in: the angle table of one token must
// fit, which bounds rot_dim at 12288.
constexpr int64_t kSharedBytes = 48 * 1024;

template <typename Fn>
Status visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      return fn(float{});
    case DType::kFloat16:
      return fn(__half{});
    default:
      return fn(__nv_bfloat16{});
  }
}

bool aligned(const void* pointer, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % static_cast<uintptr_t>(bytes) == 0;
}

bool rows_fit(const Rows& r, int access, int elem_bytes) {
  if (r.heads == 0) return true;
  const int64_t bytes = static_cast<int64_t>(access) * elem_bytes;
  if (!aligned(r.in, bytes) || !aligned(r.out, bytes)) return false;
  for (const int64_t stride : {r.in_stride_batch, r.in_stride_seq, r.in_stride_head,
                               r.out_stride_batch, r.out_stride_seq, r.out_stride_head}) {
    if (stride % access != 0) return false;
  }
  return true;
}

// Whether accesses of `access` elements keep every group whole and every access aligned.
bool access_fits(const Common& x, const Bands& bands, bool copy_tail, int access, int elem_bytes) {
  if (!rows_fit(x.q, access, elem_bytes) || !rows_fit(x.k, access, elem_bytes)) return false;
  if (x.interleaved) {
    // A group is access / 2 pairs, 2 * pair0 .. 2 * pair0 + access: whole when rot_dim allows.
    if (x.rot_dim % access != 0) return false;
  } else {
    // A group is `access` pairs inside one band half.
    for (int a = 0; a < bands.count; ++a) {
      if (bands.pairs[a] % access != 0) return false;
    }
  }
  return !copy_tail || (x.head_dim - x.rot_dim) % access == 0;
}

template <typename T>
int pick_access(const Common& x, const Bands& bands, bool copy_tail) {
  for (int access = kElemsPer16Bytes<T>; access > 1; access /= 2) {
    if (access_fits(x, bands, copy_tail, access, sizeof(T))) return access;
  }
  return 1;
}

template <typename T>
DeviceRows<T> device_rows(const Rows& r) {
  return {static_cast<T*>(r.out),    static_cast<const T*>(r.in), static_cast<int>(r.heads),
          r.in_stride_batch,         r.in_stride_seq,             r.in_stride_head,
          r.out_stride_batch,        r.out_stride_seq,            r.out_stride_head};
}

bool in_place(const Rows& r) { return r.heads == 0 || r.in == r.out; }

template <typename T>
Params<T> common_params(const Common& x, const Bands& bands) {
  Params<T> p{};
  p.q = device_rows<T>(x.q);
  p.k = device_rows<T>(x.k);
  p.tokens = x.batch * x.seq;
  p.seq = x.seq;
  p.head_dim = static_cast<int>(x.head_dim);
  p.rot_dim = static_cast<int>(x.rot_dim);
  p.num_pairs = static_cast<int>(x.rot_dim / 2);
  p.num_bands = bands.count;
  for (int a = 0; a < kMaxBandsDevice; ++a) {
    p.band_pair_start[a] = bands.pair_start[a];
    p.band_pairs[a] = bands.pairs[a];
  }
  p.sin_sign = x.conjugate ? -1.0f : 1.0f;
  p.copy_tail = x.rot_dim < x.head_dim && !(in_place(x.q) && in_place(x.k));
  return p;
}

// Launch shape: item_lanes threads over the pair groups of a head, head_lanes over the heads
// (about kUnroll heads each, so one unrolled step covers them), whole tokens per block.
struct Shape {
  int tokens_per_block;
  int item_lanes;
  int head_lanes;
  int threads;
  int64_t blocks;
  size_t shared_bytes;
};

Shape launch_shape(int groups, int total_heads, int heads_per_thread, int num_pairs,
                   int64_t tokens) {
  Shape s{};
  s.item_lanes = std::min(groups, kMaxBlockThreads);
  const int wanted_head_lanes = (total_heads + heads_per_thread - 1) / heads_per_thread;
  s.head_lanes = std::clamp(wanted_head_lanes, 1, kMaxBlockThreads / s.item_lanes);
  const int threads_per_token = s.item_lanes * s.head_lanes;
  const int64_t angle_bytes = static_cast<int64_t>(num_pairs) * sizeof(float2);
  int64_t per_block = std::max(1, kMaxBlockThreads / threads_per_token);
  per_block = std::min({per_block, kSharedBytes / angle_bytes, tokens});
  s.tokens_per_block = static_cast<int>(per_block);
  s.threads = s.tokens_per_block * threads_per_token;
  s.blocks = (tokens + per_block - 1) / per_block;
  s.shared_bytes = static_cast<size_t>(per_block * angle_bytes);
  return s;
}

template <typename T, int kAccess, bool kInterleaved>
void launch(Params<T> p, cudaStream_t stream) {
  constexpr int kPairs = kPairsPerGroup<kInterleaved, kAccess>;
  const Shape s = launch_shape(p.num_pairs / kPairs, p.q.heads + p.k.heads,
                               kUnroll<kInterleaved, kAccess>, p.num_pairs, p.tokens);
  p.tokens_per_block = s.tokens_per_block;
  p.item_lanes = s.item_lanes;
  p.head_lanes = s.head_lanes;
  rope_kernel<T, kAccess, kInterleaved>
      <<<static_cast<unsigned>(s.blocks), s.threads, s.shared_bytes, stream>>>(p);
}

// Instantiated for every power-of-two access width from 16 bytes down to one element.
template <typename T, int kAccess = kElemsPer16Bytes<T>>
void launch_width(int access, bool interleaved, const Params<T>& p, cudaStream_t stream) {
  if constexpr (kAccess > 1) {
    if (access < kAccess) return launch_width<T, kAccess / 2>(access, interleaved, p, stream);
  }
  if (interleaved) {
    launch<T, kAccess, true>(p, stream);
  } else {
    launch<T, kAccess, false>(p, stream);
  }
}

template <typename T>
Status run(Params<T> p, const Common& x, const Bands& bands, cudaStream_t stream) {
  // A block takes at least one token; the grid has at most 2^31 - 1 blocks.
  if (p.tokens > INT32_MAX) return invalid("rope: batch * seq must be < 2^31");
  const int64_t angle_bytes = static_cast<int64_t>(p.num_pairs) * sizeof(float2);
  if (angle_bytes > kSharedBytes) return invalid("rope: rot_dim must be <= 12288");
  const int access = pick_access<T>(x, bands, p.copy_tail);
  launch_width<T>(access, x.interleaved, p, stream);
  return check_last_launch();
}

}  // namespace

Status fwd_cuda(const Args& args, void* stream) {
  if (Status s = check_args(args); !s.ok()) return s;
  if (!has_work(args.x)) return Status::Ok();
  const Bands bands = one_band(args.x.rot_dim);
  return visit_dtype(args.x.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    Params<T> p = common_params<T>(args.x, bands);
    p.from_grid = false;
    p.table = {args.cos,
               args.sin,
               args.table_fp32 || args.x.dtype == DType::kFloat32,
               args.cos_stride_batch,
               args.cos_stride_row,
               args.sin_stride_batch,
               args.sin_stride_row,
               args.positions,
               args.positions_int64,
               args.positions_stride_batch,
               args.positions_stride_seq,
               args.table_rows};
    return run(p, args.x, bands, static_cast<cudaStream_t>(stream));
  });
}

Status fwd3d_cuda(const Args3d& args, void* stream) {
  if (Status s = check_args(args); !s.ok()) return s;
  if (!has_work(args.x)) return Status::Ok();
  const Bands bands = grid_bands(args.split);
  return visit_dtype(args.x.dtype, [&](auto type_tag) {
    using T = decltype(type_tag);
    Params<T> p = common_params<T>(args.x, bands);
    p.from_grid = true;
    p.grid.height = static_cast<int>(args.grid[1]);
    p.grid.width = static_cast<int>(args.grid[2]);
    for (int a = 0; a < kMaxBandsDevice; ++a) p.grid.scale[a] = args.scale[a];
    // log2l, not log2: glibc 2.29 re-versioned log2, and variants must load on glibc 2.28.
    p.grid.log2_theta = static_cast<double>(log2l(static_cast<long double>(args.theta)));
    return run(p, args.x, bands, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace tk::rope
