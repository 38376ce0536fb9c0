// The sm_90a FlashAttention launchers, declared for the dispatcher (flash_attn_cuda.cu)
// without the kernels (defined in flash_attn_sm90_launch.cuh, instantiated per (T, head dim) under
// instantiations/ by generate_instantiations.py).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_params.h"

namespace tk::flash_attn::sm90 {

using sm80::Params;

// Head dims with a sm_90a forward (multiples of the 64-element swizzle atom) and backward (192
// has none: the wide form's halves, 96 columns, would split a 64-column chunk).
constexpr bool has_fwd(int head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 192 || head_dim == 256;
}
constexpr bool has_bwd(int head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 256;
}
// Whether the backward of a head dim sums dQ across key blocks, where not deterministic: up to
// 128, whose dK and dV accumulators fit one warpgroup's registers. The backward has three forms
// (flash_attn_sm90_bwd.cuh, flash_attn_sm90_bwd_wide.cuh); run_bwd picks by p.dq_accum:
// - given dq_accum (sums_dq and not deterministic): one dk/dv kernel that also computes dQ
//   (five matrix products per step) and adds it into dq_accum with bulk reductions, in an order
//   that varies between runs. On an H100 (bf16, same-command A/B) 1.15x-1.21x faster than the
//   two kernels at head dim 128 (4x32x4096x128: 6352 -> 5301 us) and 1.30x-1.34x faster than
//   the same kernel summing with 16-byte atomics at 64 (2x16x16384x64: 16424 -> 12275 us);
// - null: two kernels, dk/dv then dq (seven products, no sums across blocks; deterministic);
// - head dim 256: two kernels whose consumer warpgroups each hold half the head dim of the
//   accumulators and exchange halves of P^T and dS^T (or dS) through shared memory.
constexpr bool sums_dq(int head_dim) { return head_dim <= 128; }

// The forward's shape choices (FwdShape, flash_attn_sm90_fwd.cuh), here for the host: consumer
// warpgroups of 64 query rows each (head dim 64 has half the matrix work per score of 128, so a
// third keeps the tensor cores fed while the others run their softmax), and keys per tile (head
// dim 256 takes 64, its O accumulator already 128 registers per thread; without a mask head dim
// 128 takes 176, FlashAttention-3's tile, for less of the per-tile softmax bookkeeping per score).
constexpr int fwd_consumers(int head_dim) { return head_dim == 64 ? 3 : 2; }
constexpr int fwd_keys(int head_dim, bool masked) {
  return head_dim == 128 && !masked ? 176 : head_dim <= 128 ? 128 : 64;
}

// The forward's work units (unit_block in flash_attn_sm90_fwd.cuh) and grid. With one length for
// every sequence one block per multiprocessor walks units blockIdx.x, + gridDim.x, ...
// (persistent); masked, a unit pairs a long and a short row tile (unit_items 2) so that units
// cost about the same. Packed sequences: one block per query block.
struct FwdUnits {
  int64_t row_tiles = 0;   // per (query head, sequence), of 64 * fwd_consumers rows
  int64_t unit_items = 1;
  int64_t unit_tiles = 0;  // units per (query head, sequence)
  int64_t units = 0;
  int64_t blocks = 0;
};

// Params' windows clamped (kUnbounded: none) as the kernels read them.
inline bool fwd_masked(const Params& p) {
  return p.window_left < sm80::kUnbounded || p.window_right < sm80::kUnbounded;
}

inline FwdUnits fwd_units(const Params& p, int head_dim, int multiprocessors) {
  FwdUnits u;
  const int rows = 64 * fwd_consumers(head_dim);
  const bool persistent = p.cu_seqlens_q == nullptr;
  u.row_tiles = (static_cast<int64_t>(p.max_seqlen_q) + rows - 1) / rows;
  u.unit_items = persistent && fwd_masked(p) ? 2 : 1;
  u.unit_tiles = (u.row_tiles + u.unit_items - 1) / u.unit_items;
  u.units = u.unit_tiles * p.heads_q * p.batch;  // batch: the sequences, packed or not
  u.blocks = persistent ? std::min<int64_t>(u.units, multiprocessors) : u.units;
  return u;
}

// The split query blocks (FwdParams::split_unit): when the persistent grid over unmasked query
// blocks of `tiles` key tiles each would leave a last round with fewer query blocks than blocks,
// those of the last two rounds are shared out in equal runs of key tiles. Splitting a query
// block costs a second Q load, first tile and state hand-over: not below kMinSplitTiles tiles.
inline constexpr int64_t kMinSplitTiles = 4;

// Floats a consumer thread hands over for a split query block: O's accumulator fragments, then
// the running max and partial sum of its two rows.
constexpr int fwd_split_floats(int head_dim) { return head_dim / 2 + 4; }

struct FwdSplitPlan {
  int64_t split_unit = 0;  // the first unit shared out; == the units: none
  int64_t tiles = 0;       // key tiles of every query block (when split)
  int64_t flag_bytes = 0;  // the workspace: per split slot (the boundary between two blocks'
  int64_t bytes = 0;       // parts) and consumer warp two int flags, 16-byte aligned, then 32
                           // threads' state
};

inline FwdSplitPlan fwd_split_plan(const Params& p, int head_dim, const FwdUnits& u) {
  FwdSplitPlan plan;
  plan.split_unit = u.units;
  if (p.cu_seqlens_q != nullptr || fwd_masked(p)) return plan;
  const int keys = fwd_keys(head_dim, false);
  const int64_t tiles = (static_cast<int64_t>(p.seqlen_k) + keys - 1) / keys;
  if (u.units <= u.blocks || u.units % u.blocks == 0 || tiles < kMinSplitTiles) return plan;
  const int64_t split_unit = (u.units / u.blocks - 1) * u.blocks;
  // The kernel counts the shared steps, times the blocks, in an int.
  if ((u.units - split_unit) * tiles * u.blocks > INT_MAX) return plan;
  const int64_t warps = (u.blocks - 1) * fwd_consumers(head_dim) * 4;
  plan.split_unit = split_unit;
  plan.tiles = tiles;
  plan.flag_bytes = (warps * 2 * 4 + 15) / 16 * 16;
  plan.bytes = plan.flag_bytes + warps * 32 * fwd_split_floats(head_dim) * 4;
  return plan;
}

// T = __half or __nv_bfloat16; kHeadDim one of has_fwd's. The caller has checked the arguments,
// that the grid is not empty and that the GPU is sm_90 (the code is sm_90a SASS only).
template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream);

// As sm80::run_bwd (p.delta is scratch), for has_bwd's head dims, with rows in both q and k;
// p.dq_accum is set only where sums_dq.
template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream);

}  // namespace tk::flash_attn::sm90
