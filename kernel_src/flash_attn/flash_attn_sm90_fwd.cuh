// The sm_90a FlashAttention forward: warpgroup MMA (wgmma) fed by the tensor memory accelerator
// (TMA), with producer/consumer warp specialization. A query block is kRows rows of one query
// head and sequence; a block walks work units of one or two query blocks (unit_block), one unit
// per block or, persistent, units blockIdx.x, + gridDim.x, ... (flash_attn_sm90_schedule.cuh),
// where the last units may be shared out in equal runs of key tiles instead (for_each_piece),
// a query block split between two blocks merging its halves (merge_split).
// Warpgroups:
//   warpgroup 0, the producer: one thread issues the TMA copies of the Q tile and of the K and V
//     tiles through kStages shared-memory stages, each stage guarded by a "full" mbarrier (the
//     copy landed) and an "empty" one (both consumers are done with it); it keeps 24 registers.
//     It runs ahead across query blocks: the next one's Q once the consumers' last Q K^T of the
//     current one is done, its K and V as stages free.
//   warpgroups 1.., the consumers: 64 query rows each, the rest of the registers. Per key
//     tile j: S_j = Q K_j^T (wgmma, both operands in shared memory) is issued together with
//     O += P_{j-1} V_{j-1} (P in registers as wgmma A fragments), so the mask and online
//     softmax of S_j (registers; a wgmma accumulator row is laid out like an mma.sync C tile)
//     run while the tensor cores do P V of the previous tile; O is rescaled once that is done.
// Scores stay unscaled until the exponent: exp2(s * scale * log2 e - max * scale * log2 e) is one
// FFMA per score.
// The mask, sequence and key-tile range logic is the sm_80 kernels' (flash_attn_sm80.cuh).
// Framework-free: CUDA headers only.
#pragma once

#include <cuda.h>

#include "flash_attn/flash_attn_sm90.cuh"
#include "flash_attn/flash_attn_sm90_launch.h"

namespace tk::flash_attn::sm90 {

// The host API's arguments plus one TMA descriptor per input. Each map is 4-D, innermost
// first: (head_dim, a, b, batch) where (a, b) is (heads, rows) or (rows, heads), whichever puts
// the smaller stride first; `rows_first` says which. Varlen maps have batch 1.
struct FwdParams {
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;
  Params base;
  // Work units (unit_block): `units` of `unit_items` query blocks each (1, or 2 for paired
  // row tiles), `unit_tiles` units per (query head, sequence), of `row_tiles` row tiles.
  int row_tiles;
  int unit_tiles;
  int unit_items;
  int units;
  // Units split_unit .. units - 1 (one query block of split_tiles key tiles each; split_unit ==
  // units: none) are not walked whole but shared out as one run of split_steps key-tile steps
  // in equal parts, part b to block b (for_each_piece). A block's part is at least one unit
  // long, so a query block is cut at most once: its first tiles end one block's part, the rest
  // start the next's, and the boundary between blocks b and b + 1 is split slot b. Per slot and
  // consumer warp, split_flags holds {halves that have finished, whether the first one's state
  // is stored} and split_state that state (merge_split); the flags are zeroed before every
  // launch.
  int split_unit;
  int split_tiles;
  int split_steps;  // (units - split_unit) * split_tiles
  int* split_flags;
  float* split_state;
  bool q_rows_first;
  bool k_rows_first;
  bool v_rows_first;
};

// Which key tiles of its query block a piece of work covers.
enum class Part { kWhole, kFirst, kSecond };

// Named barriers 1 .. kConsumers hand the tensor cores from one consumer warpgroup to the next
// (0 is __syncthreads).
inline constexpr int kTurnBarrier = 1;

// The key tiles of a head dim, with a mask (kDefaultKeys) and without (fwd_keys).
template <int kHeadDim>
inline constexpr int kDefaultKeys = fwd_keys(kHeadDim, true);
inline constexpr int kWideKeys = fwd_keys(128, false);

template <int kHeadDim, int kKeysPerTile = kDefaultKeys<kHeadDim>>
struct FwdShape {
  static constexpr int kConsumers = fwd_consumers(kHeadDim);
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kRows = 64 * kConsumers;
  static constexpr int kKeys = kKeysPerTile;
  static constexpr int kQBytes = kRows * kHeadDim * 2;
  static constexpr int kKvBytes = kKeys * kHeadDim * 2;  // one K or V tile
  // Tiles, barriers, and slack to align the tiles to the swizzle period.
  static constexpr int smem_bytes(int stages) {
    return kQBytes + 2 * stages * kKvBytes + 8 * (2 + 4 * stages) + kSwizzleBytes;
  }
  // Three K/V stages where they fit in the 227 KiB a block may have (hd 128 with 128-key tiles:
  // 32 KiB Q + 3 x 64 KiB), else two.
  static constexpr int kStages = smem_bytes(3) <= kMaxBlockSmemBytes ? 3 : 2;
  static constexpr int kSmemBytes = smem_bytes(kStages);
  // Per thread: the producer keeps 24 registers and the consumers share the rest of the 64K
  // of a multiprocessor (setmaxnreg counts in multiples of 8): 24 + 2 x 240, 24 + 3 x 160.
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = kConsumers == 2 ? 240 : 160;
};

// Online softmax over one tile of unscaled scores s (rows g and g + 8 of the warp): updates the
// running max (unscaled) and the per-thread partial sum, replaces s by
// p = exp2((s - max) * scale_log2), and returns in `rescale` the factor by which O must shrink.
template <int kKeys>
__device__ __forceinline__ void online_softmax(float (&s)[kKeys / 8][4], float (&row_max)[2],
                                               float (&row_sum)[2], float (&rescale)[2],
                                               float scale_log2) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    // The tile's max as a tree, log2(kKeys / 8) deep: a running fmaxf is a chain of kKeys / 8
    // dependent FMNMX (22 at 176 keys in the SASS) that every exponent of the row waits for.
    float m[kKeys / 8];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) m[n] = fmaxf(s[n][2 * half], s[n][2 * half + 1]);
#pragma unroll
    for (int stride = 1; stride < kKeys / 8; stride *= 2) {
#pragma unroll
      for (int i = 0; i + stride < kKeys / 8; i += 2 * stride) m[i] = fmaxf(m[i], m[i + stride]);
    }
    const float new_max = fmaxf(row_max[half], sm80::quad_max(m[0]));
    // -inf while every key seen so far is masked for the row: subtract 0 instead, so that the
    // masked scores give exp2(-inf) = 0 rather than NaN.
    const float base = new_max == -INFINITY ? 0.0f : new_max * scale_log2;
    rescale[half] = sm80::exp2_ftz(row_max[half] * scale_log2 - base);
    row_max[half] = new_max;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      s[n][2 * half] = sm80::exp2_ftz(fmaf(s[n][2 * half], scale_log2, -base));
      s[n][2 * half + 1] = sm80::exp2_ftz(fmaf(s[n][2 * half + 1], scale_log2, -base));
      sum += s[n][2 * half] + s[n][2 * half + 1];
    }
    row_sum[half] = row_sum[half] * rescale[half] + sum;
  }
}

// A tile width as a type, for the generic lambdas that take one.
template <int kCols>
struct Width {
  static constexpr int kValue = kCols;
};

template <int kTiles>
__device__ __forceinline__ void scale_rows(float (&o)[kTiles][4], const float (&factor)[2]) {
#pragma unroll
  for (int n = 0; n < kTiles; ++n) {
    o[n][0] *= factor[0];
    o[n][1] *= factor[0];
    o[n][2] *= factor[1];
    o[n][3] *= factor[1];
  }
}

// Query block `member` of work unit `unit`. Units are numbered as the blocks of a grid of (units
// per head, query heads, sequences) would be, fastest first, so blocks at work together read the
// same K and V. With unit_items 1 a unit is one row tile; causal (or right-windowed) rows see more
// keys the later they are, and those run the longest row tiles first (the one-block-per-unit grid
// of packed sequences hands them out in that order). With unit_items 2 (a mask, persistent grid)
// unit j pairs the row tile with the j-th most keys with the one with the j-th fewest: causal
// row tiles r and row_tiles - 1 - r see row_tiles + 1 key tiles together, so every unit costs
// about the same and a fixed stride over units stays balanced. An odd count's middle row tile
// is alone: its second member is past the last row tile (m0 >= q_len, skipped).
template <int kRows, int kKeys>
__device__ __forceinline__ sm80::QueryBlock unit_block(const FwdParams& fp, int unit, int member) {
  const Params& p = fp.base;
  const int x = unit % fp.unit_tiles;
  const int rest = unit / fp.unit_tiles;
  const int last = fp.row_tiles - 1;
  int row_tile = p.window_right < sm80::kUnbounded ? last - x : x;
  if (fp.unit_items == 2) row_tile = member == 0 ? last - x : (x == last - x ? fp.row_tiles : x);
  return sm80::query_block<kRows, kKeys>(p, row_tile, rest % p.heads_q, rest / p.heads_q);
}

// Where this block's part of the shared steps starts (part = blockIdx.x) or ends (blockIdx.x + 1),
// as split_unit + the step. fwd_split_plan keeps split_steps * blocks within an int.
__device__ __forceinline__ int split_boundary(const FwdParams& fp, int part) {
  return fp.split_unit + fp.split_steps * part / static_cast<int>(gridDim.x);
}

// The work of this block, in order, as (query block, cursor): the query blocks of units
// blockIdx.x, + gridDim.x, ... below split_unit, whole; then this block's part of the shared
// steps as pieces (a second half first, whole query blocks, a first half last: a part is at
// least one and less than two query blocks long), each the query block with its key tiles
// narrowed to the piece's. The cursor is the unit, or split_unit + the piece's first step. All of
// it follows from kernel parameters and blockIdx, so the compiler keeps it in uniform registers;
// and one call of `body` in the code: the consumers' body is the whole main loop.
template <int kRows, int kKeys, class Body>
__device__ __forceinline__ void for_each_piece(const FwdParams& fp, Body&& body) {
  const int part = static_cast<int>(blockIdx.x);
  int cursor = part < fp.split_unit ? part : split_boundary(fp, part);
  for (int member = 0; cursor < split_boundary(fp, part + 1);) {
    const bool shared = cursor >= fp.split_unit;
    const int step = cursor - fp.split_unit;
    sm80::QueryBlock block = unit_block<kRows, kKeys>(
        fp, shared ? fp.split_unit + step / fp.split_tiles : cursor, member);
    if (shared) {  // an unmasked query block: key tiles 0 .. split_tiles - 1
      block.first_tile = step % fp.split_tiles;
      block.end_tile = min(fp.split_tiles, block.first_tile + split_boundary(fp, part + 1) - cursor);
    }
    body(block, cursor);
    if (shared) {
      cursor += block.end_tile - block.first_tile;
    } else if (++member == fp.unit_items) {
      member = 0;
      cursor += gridDim.x;
      if (cursor >= fp.split_unit) cursor = split_boundary(fp, part);
    }
  }
}

// Which part of its query block the piece of `block` (narrowed by for_each_piece at `cursor`)
// is, and for a half its split slot (the boundary after block b's part is slot b).
__device__ __forceinline__ Part split_part(const FwdParams& fp, const sm80::QueryBlock& block,
                                           int cursor, int* slot) {
  if (cursor < fp.split_unit) return Part::kWhole;
  const Part part = block.first_tile > 0                 ? Part::kSecond
                    : block.end_tile < fp.split_tiles    ? Part::kFirst
                                                         : Part::kWhole;
  *slot = static_cast<int>(blockIdx.x) - (part == Part::kSecond ? 1 : 0);
  return part;
}

// Both halves of a split query block call this, per consumer warp, once their key tiles are done.
// The first to arrive stores its O, max and sum (split_state) and returns false; the second waits
// until they are published (its block is running: no wait on a block yet to start) and merges
// them into its own, returning true. Whichever half is second, the merge evaluates the same
// expressions with the first half's terms first, so the result does not depend on the order.
template <int kHeadDim, int kConsumers>
__device__ __forceinline__ bool merge_split(const FwdParams& fp, int slot, Part part,
                                            int consumer, int warp, int lane,
                                            float (&o)[kHeadDim / 8][4], float (&row_max)[2],
                                            float (&row_sum)[2]) {
  constexpr int kFloats = fwd_split_floats(kHeadDim);
  constexpr int kMax = kHeadDim / 2;
  const int at = (slot * kConsumers + consumer) * 4 + warp;
  int* flags = fp.split_flags + 2 * at;
  // Value v of lane l at state[v * 32 + l]: a warp's stores and loads are coalesced.
  float* state = fp.split_state + static_cast<int64_t>(at) * kFloats * 32 + lane;
  if (warp_count_arrival(&flags[0], lane) == 0) {
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) store_state(state + (4 * n + i) * 32, o[n][i]);
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      store_state(state + (kMax + half) * 32, row_max[half]);
      store_state(state + (kMax + 2 + half) * 32, row_sum[half]);
    }
    warp_publish(&flags[1], lane);
    return false;
  }
  warp_wait_published(&flags[1]);
  const bool first_is_mine = part == Part::kFirst;
  const float scale_log2 = fp.base.scale_log2;
  float factor_first[2], factor_second[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float stored_max = load_state(state + (kMax + half) * 32);
    const float stored_sum = load_state(state + (kMax + 2 + half) * 32);
    const float max_first = first_is_mine ? row_max[half] : stored_max;
    const float max_second = first_is_mine ? stored_max : row_max[half];
    const float sum_first = first_is_mine ? row_sum[half] : stored_sum;
    const float sum_second = first_is_mine ? stored_sum : row_sum[half];
    // As online_softmax: a max of -inf (no allowed key yet) scales by exp2(-inf) = 0.
    const float new_max = fmaxf(max_first, max_second);
    const float base = new_max == -INFINITY ? 0.0f : new_max * scale_log2;
    factor_first[half] = sm80::exp2_ftz(max_first * scale_log2 - base);
    factor_second[half] = sm80::exp2_ftz(max_second * scale_log2 - base);
    row_max[half] = new_max;
    row_sum[half] = fmaf(sum_first, factor_first[half], sum_second * factor_second[half]);
  }
#pragma unroll
  for (int n = 0; n < kHeadDim / 8; ++n) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float stored = load_state(state + (4 * n + i) * 32);
      const float first = first_is_mine ? o[n][i] : stored;
      const float second = first_is_mine ? stored : o[n][i];
      o[n][i] = fmaf(first, factor_first[i / 2], second * factor_second[i / 2]);
    }
  }
  return true;
}

template <typename T, int kHeadDim, int kKeysPerTile>
__global__ void __launch_bounds__(FwdShape<kHeadDim, kKeysPerTile>::kThreads, 1)
    fwd_kernel(const __grid_constant__ FwdParams fp) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Compiled for another architecture: never launched there (flash_attn_cuda.cu dispatches
  // here only on sm_90 with sm_90a code in the build).
#else
  using Shape = FwdShape<kHeadDim, kKeysPerTile>;
  constexpr int kRows = Shape::kRows;
  constexpr int kKeys = Shape::kKeys;
  constexpr int kStages = Shape::kStages;
  const Params& p = fp.base;

  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem =
      smem_raw + (kSwizzleBytes - shared_address(smem_raw) % kSwizzleBytes) % kSwizzleBytes;
  T* q_tile = reinterpret_cast<T*>(smem);             // [kChunks][kRows][64]
  T* k_tiles = q_tile + kRows * kHeadDim;             // [kStages][kChunks][kKeys][64]
  T* v_tiles = k_tiles + kStages * kKeys * kHeadDim;  // [kStages][kChunks][kKeys][64]
  uint64_t* q_full = reinterpret_cast<uint64_t*>(v_tiles + kStages * kKeys * kHeadDim);
  uint64_t* q_empty = q_full + 1;
  uint64_t* k_full = q_empty + 1;
  uint64_t* v_full = k_full + kStages;
  uint64_t* k_empty = v_full + kStages;
  uint64_t* v_empty = k_empty + kStages;

  if (threadIdx.x == 0) {
    mbarrier_init(q_full, 1);
    // Lane 0 of every consumer warp arrives once its part of the wgmma reading the tile is done.
    mbarrier_init(q_empty, 4 * Shape::kConsumers);
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&k_full[s], 1);
      mbarrier_init(&v_full[s], 1);
      mbarrier_init(&k_empty[s], 4 * Shape::kConsumers);
      mbarrier_init(&v_empty[s], 4 * Shape::kConsumers);
    }
    fence_barrier_init();
  }
  __syncthreads();

  // Producer and consumers walk the same query blocks and count the same loads: `loaded_tiles`
  // K (and V) tiles and `loaded_queries` Q tiles so far, which give each copy its stage and phase.
  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    release_registers<Shape::kProducerRegisters>();
    if (threadIdx.x != 0) return;
    int loaded_tiles = 0;
    int loaded_queries = 0;
    for_each_piece<kRows, kKeys>(fp, [&](const sm80::QueryBlock& block, int) {
      const sm80::Sequence& seq = block.seq;
      if (block.m0 >= seq.q_len || block.first_tile >= block.end_tile) return;
      const int batch = static_cast<int>(seq.batch);
      // The Q tile is free once the consumers' last Q K^T of the previous query block is done.
      mbarrier_wait(q_empty, (loaded_queries & 1) ^ 1);
      mbarrier_arrive_expect_tx(q_full, Shape::kQBytes);
      load_tile<kHeadDim, kRows>(q_tile, &fp.q_map, fp.q_rows_first, q_full, block.h,
                                 static_cast<int>(seq.q_start) + block.m0, batch);
      ++loaded_queries;
      // Tile j's K is read at consumer step j and its V at step j + 1: K runs one tile ahead.
      const auto load = [&](uint64_t* empty, uint64_t* full, T* tiles, const CUtensorMap* map,
                            bool rows_first, int tile) {
        const int it = loaded_tiles + tile - block.first_tile;
        const int s = it % kStages;
        mbarrier_wait(&empty[s], ((it / kStages) & 1) ^ 1);
        mbarrier_arrive_expect_tx(&full[s], Shape::kKvBytes);
        load_tile<kHeadDim, kKeys>(tiles + s * kKeys * kHeadDim, map, rows_first, &full[s],
                                   block.hk, static_cast<int>(seq.k_start) + tile * kKeys, batch);
      };
      for (int tile = block.first_tile; tile < block.end_tile; ++tile) {
        load(k_empty, k_full, k_tiles, &fp.k_map, fp.k_rows_first, tile);
        if (tile > block.first_tile) {
          load(v_empty, v_full, v_tiles, &fp.v_map, fp.v_rows_first, tile - 1);
        }
      }
      load(v_empty, v_full, v_tiles, &fp.v_map, fp.v_rows_first, block.end_tile - 1);
      loaded_tiles += block.end_tile - block.first_tile;
    });
    return;
  }
  claim_registers<Shape::kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  const float scale_log2 = p.scale_log2;
  // This warpgroup's 64 rows of each Q chunk.
  const uint32_t q_rows = shared_address(q_tile) + consumer * 64 * 128;
  const auto k_stage = [&](int s) { return shared_address(k_tiles + s * kKeys * kHeadDim); };
  const auto v_stage = [&](int s) { return shared_address(v_tiles + s * kKeys * kHeadDim); };

  // The consumers take turns issuing their matrix products (warpgroup c waits for c - 1), so
  // that one's softmax runs while the tensor cores work for another. Consumer 0 starts; every
  // issue hands the turn on, and consumer 0 takes the last consumer's final hand-over after its
  // last query block, so each named barrier ends the block with as many arrivals as waits.
  const auto take_turn = [&] { named_barrier_sync(kTurnBarrier + consumer, 256); };
  const auto pass_turn = [&] {
    named_barrier_arrive(kTurnBarrier + (consumer + 1) % Shape::kConsumers, 256);
  };
  if (consumer == Shape::kConsumers - 1) named_barrier_arrive(kTurnBarrier, 256);

  int loaded_tiles = 0;
  int loaded_queries = 0;
  for_each_piece<kRows, kKeys>(fp, [&](const sm80::QueryBlock& block, int cursor) {
    const sm80::Sequence& seq = block.seq;
    if (block.m0 >= seq.q_len) return;
    const int first_tile = block.first_tile;
    const int end_tile = block.end_tile;
    const int warp_row0 = block.m0 + consumer * 64 + warp * 16;
    float o[kHeadDim / 8][4] = {};
    float row_max[2] = {-INFINITY, -INFINITY};
    float row_sum[2] = {0.0f, 0.0f};
    if (first_tile < end_tile) {
      // Scores of `tile` (complete in s): masked where needed, turned into probabilities.
      float rescale[2];
      // s is the first kCols keys of the tile (all of it, or the last tile narrowed).
      const auto softmax = [&](auto& s, int tile) {
        constexpr int kCols = 8 * static_cast<int>(sizeof(s) / sizeof(s[0]));
        const int j0 = tile * kKeys;
        if (!block.mask.all_allowed(warp_row0, 16, j0, kCols)) {
          mask_rows<kCols>(s, block.mask, warp_row0 + lane / 4, j0 + 2 * (lane % 4));
        }
        online_softmax<kCols>(s, row_max, row_sum, rescale, scale_log2);
      };
      // Once the scores of the query block's last tile are in, Q is not read again.
      const auto release_keys = [&](int s, int tile) {
        if (lane != 0) return;
        mbarrier_arrive(&k_empty[s]);
        if (tile == end_tile - 1) mbarrier_arrive(q_empty);
      };

      float sc[kKeys / 8][4] = {};
      uint32_t pa[kKeys / 16][4];
      const int first = loaded_tiles % kStages;
      mbarrier_wait(q_full, loaded_queries & 1);
      mbarrier_wait(&k_full[first], (loaded_tiles / kStages) & 1);
      take_turn();
      wgmma_fence();
      issue_a_bt<T, kHeadDim, kRows, kKeys>(sc, q_rows, k_stage(first));
      wgmma_commit();
      pass_turn();
      wgmma_wait<0>();
      fence_registers(sc);
      release_keys(first, first_tile);
      softmax(sc, first_tile);
      a_fragments<T, kKeys>(pa, sc);

      // Tile `tile` after the first: its scores (the first kCols keys) issued with P V of the
      // previous tile, then its softmax while that product runs.
      const auto step = [&](int tile, auto& scores) {
        constexpr int kCols = 8 * static_cast<int>(sizeof(scores) / sizeof(scores[0]));
        const int it = loaded_tiles + tile - first_tile;
        const int s = it % kStages;
        const int prev = (it - 1) % kStages;
        mbarrier_wait(&k_full[s], (it / kStages) & 1);
        mbarrier_wait(&v_full[prev], ((it - 1) / kStages) & 1);
        take_turn();
        wgmma_fence();
        issue_a_bt<T, kHeadDim, kRows, kKeys, kCols>(scores, q_rows, k_stage(s));
        wgmma_commit();
        fence_registers(o);
        wgmma_fence();
        issue_p_b<T, kKeys, kHeadDim, kKeys>(o, pa, v_stage(prev));
        wgmma_commit();
        pass_turn();

        wgmma_wait<1>();  // the scores; P V of the previous tile may still run
        fence_registers(scores);
        release_keys(s, tile);
        softmax(scores, tile);

        wgmma_wait<0>();
        fence_registers(o);
        fence_fragments(pa);
        if (lane == 0) mbarrier_arrive(&v_empty[prev]);
        // Once the running max settles most tiles leave it unchanged: no 64-register multiply.
        if (rescale[0] != 1.0f || rescale[1] != 1.0f) scale_rows(o, rescale);
      };
      // O += P V of the last tile, P the first kDepth keys.
      const auto last_p_v = [&](auto& p_last) {
        constexpr int kDepth = 16 * static_cast<int>(sizeof(p_last) / sizeof(p_last[0]));
        const int it_last = loaded_tiles + end_tile - 1 - first_tile;
        const int last = it_last % kStages;
        mbarrier_wait(&v_full[last], (it_last / kStages) & 1);
        // Only the last tile can run past the sequence's end; its K rows there are masked.
        zero_tail_rows<kHeadDim, kKeys>(v_tiles + last * kKeys * kHeadDim,
                                        static_cast<int>(seq.k_len) - (end_tile - 1) * kKeys,
                                        consumer);
        take_turn();
        fence_registers(o);
        wgmma_fence();
        issue_p_b<T, kDepth, kHeadDim, kKeys>(o, p_last, v_stage(last));
        wgmma_commit();
        pass_turn();
        wgmma_wait<0>();
        fence_registers(o);
        fence_fragments(p_last);
        if (lane == 0) mbarrier_arrive(&v_empty[last]);
      };
      // The last tile of the 176-key kernel (no mask: its keys end at k_len) is computed 64 or
      // 128 keys wide where its keys fit: 4096 keys are 23 x 176 + 48. With all 176, the tensor
      // pipe was busy 3.1% more cycles than cuDNN's 128-key kernel at 4x32x4096x128 (Nsight
      // Compute, H100), the keys past 4096. The first tile keeps its width.
      const auto narrow_last = [&](auto width) {
        constexpr int kCols = decltype(width)::kValue;
        float sn[kCols / 8][4] = {};
        uint32_t pn[kCols / 16][4];
        step(end_tile - 1, sn);
        a_fragments<T, kCols>(pn, sn);
        last_p_v(pn);
      };
      int narrow_keys = 0;
      if constexpr (kKeys == kWideKeys) {
        const int last_keys = static_cast<int>(seq.k_len) - (end_tile - 1) * kKeys;
        if (end_tile - first_tile >= 2) narrow_keys = last_keys <= 64 ? 64 : last_keys <= 128 ? 128 : 0;
      }
      const int full_end = narrow_keys > 0 ? end_tile - 1 : end_tile;
      for (int tile = first_tile + 1; tile < full_end; ++tile) {
        step(tile, sc);
        a_fragments<T, kKeys>(pa, sc);
      }
      if (narrow_keys == 64) {
        narrow_last(Width<64>{});
      } else if (narrow_keys == 128) {
        narrow_last(Width<128>{});
      } else {
        last_p_v(pa);
      }
      loaded_tiles += end_tile - first_tile;
      ++loaded_queries;
    }

    int slot = 0;
    const Part part = split_part(fp, block, cursor, &slot);
    if (part != Part::kWhole &&
        !merge_split<kHeadDim, Shape::kConsumers>(fp, slot, part, consumer, warp, lane, o, row_max,
                                                  row_sum)) {
      return;
    }
    // A row with no allowed key has sum 0: out 0, lse -inf.
    float inverse[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float sum = sm80::quad_sum(row_sum[half]);
      inverse[half] = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int i = warp_row0 + lane / 4 + 8 * half;
      if (lane % 4 == 0 && i < seq.q_len) {
        p.lse[sm80::lse_index(p, seq, i, block.h)] =
            sum > 0.0f ? (row_max[half] * scale_log2 + log2f(sum)) * sm80::kLn2 : -INFINITY;
      }
    }
    if (warp_row0 < seq.q_len) {
      T* out = static_cast<T*>(p.out) + sm80::q_like_row(p, seq, warp_row0, block.h, kHeadDim);
      sm80::store_c_tiles<T, kHeadDim>(out, static_cast<int64_t>(p.heads_q) * kHeadDim,
                                       seq.q_len - warp_row0, o, inverse, lane);
    }
  });
  if (consumer == 0) take_turn();
#endif
}

}  // namespace tk::flash_attn::sm90
