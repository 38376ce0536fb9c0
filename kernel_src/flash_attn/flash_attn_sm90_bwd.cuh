// The sm_90a FlashAttention backward on the same machinery as the forward (TMA copies into
// 128-byte-swizzled tiles, wgmma, a producer warp and two consumer warpgroups), in two forms
// after the sm_80 delta kernel (delta = rowsum(dout * out)):
//   dk/dv: one block per (128 keys, key head, sequence); K and V stay in shared memory, and the
//     (query head of the group, 64-query block) steps that see the keys stream Q and dout
//     through kStages stages. Per step a consumer warpgroup (64 keys) computes S^T = K Q^T and
//     dP^T = V dout^T, P^T from lse and dS^T = P^T (dP^T - delta) in registers, then
//     dV += P^T dout and dK += dS^T Q with P^T and dS^T as wgmma A fragments.
//   Accumulating (kWithDq; unless deterministic): the dk/dv kernel also writes each step's dS
//     (both warpgroups' keys) to shared memory and computes dQ = dS K for the step's 64 rows,
//     each warpgroup half of the head dim, which it stages in shared memory for one producer
//     thread to add into the fp32 dq_accum with one bulk reduction (the L2 does the adds): five
//     products per step instead of the seven of the two-kernel form. Then dq = dq_accum *
//     scale, rounded, one warp per row.
//   Two kernels (deterministic: no sums across blocks): dk/dv as above, then dq: one block
//     per (128 query rows, query head, sequence); Q and dout stay, K and V stream in 64-key
//     tiles: S = Q K^T, dP = dout V^T, dS = P (dP - delta), dQ += dS K.
// lse and delta of the streamed query rows are staged in shared memory by the producer warp.
// Head dims 64 and 128: at 256 the dK and dV accumulators alone would need 256 registers
// (flash_attn_sm90_bwd_wide.cuh splits them between the warpgroups).
// Framework-free: CUDA headers only.
#pragma once

#include <cuda.h>

#include "flash_attn/flash_attn_sm80_bwd.cuh"
#include "flash_attn/flash_attn_sm90.cuh"
#include "flash_attn/flash_attn_sm90_launch.h"

namespace tk::flash_attn::sm90 {

// Both backward kernels: a tile pair that stays (K and V, or Q and dout; kResident rows) and a
// pair that streams (kStreamed rows per step), each map as in FwdParams.
struct BwdParams {
  CUtensorMap resident[2];
  CUtensorMap streamed[2];
  Params base;
  bool resident_rows_first[2];
  bool streamed_rows_first[2];
};

// A backward block's (tile, head, sequence) on a grid_of grid (x tiles, y heads, z sequences).
// The hardware starts blocks in order of x + X * (y + Y * z). With a causal mask a key block's
// work falls with its tile and a query block's grows, so in that order the last heads' heaviest
// blocks start last and the grid's tail runs on few multiprocessors. Here that order walks
// groups of kOrderHeads heads (the heads of all sequences, head fastest) and, inside a group,
// the tiles heaviest first with the group's heads interleaved. A list-scheduling model (blocks
// placed in launch order on 132 multiprocessors, a block taking 2 + its steps) puts the
// makespan 2.8%-10.3% over ideal in the plain order at 4x16x4096x256, 4x32x4096x128 and
// 1x24x8192x128 causal (dk/dv and dq kernels), and within 0.2% in this one with 4 heads a group
// (2.6% with 2 at 4x32x4096x128); measured on an H100, 1.1%-4.9% faster on those causal rows
// (two same-run A/Bs, README). Groups, not all heads: the blocks running at once then share a
// few heads' streamed rows in the L2. Without a mask the blocks cost the same and the order only
// interleaves the group's heads.
struct GridBlock {
  int tile;
  int head;
  int sequence;
};

inline constexpr int kOrderHeads = 4;

// The grid has at most INT_MAX blocks (bwd_grid in flash_attn_sm90_schedule.cuh).
template <bool kHeaviestLastTile>
__device__ __forceinline__ GridBlock heaviest_first_block() {
  const int tiles = gridDim.x;
  const int heads = gridDim.y * gridDim.z;
  const int linear = blockIdx.x + tiles * (blockIdx.y + gridDim.y * blockIdx.z);
  const int group_first = linear / (tiles * kOrderHeads) * kOrderHeads;
  const int group_heads = min(kOrderHeads, heads - group_first);
  const int in_group = linear - group_first * tiles;
  const int rank = in_group / group_heads;
  const int head = group_first + in_group % group_heads;
  return {kHeaviestLastTile ? tiles - 1 - rank : rank, head % static_cast<int>(gridDim.y),
          head / static_cast<int>(gridDim.y)};
}

// Bytes of a backward block's shared memory as BwdSmem lays it out: the resident tiles, `stages`
// streamed stages, with_ds's dS stages and per-consumer dQ stages, lse and delta per streamed
// stage, every barrier BwdSmem places (used or not), and the slack that aligns the tiles to the
// swizzle period. Shared by BwdShape and WideBwdShape (flash_attn_sm90_bwd_wide.cuh).
constexpr int bwd_smem_bytes(int resident_bytes, int streamed_bytes, int streamed_rows,
                             int stages, int ds_stages, int ds_bytes, int consumers,
                             int dq_stage_bytes, bool with_ds) {
  return resident_bytes + stages * streamed_bytes +
         (with_ds ? ds_stages * ds_bytes + consumers * dq_stage_bytes : 0) +
         2 * stages * streamed_rows * 4 + 8 * (1 + 2 * stages + 2 * ds_stages + 2 * consumers) +
         kSwizzleBytes;
}

template <int kDim>
struct BwdShape {
  static constexpr int kHeadDim = kDim;
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kResident = 64 * kConsumers;
  static constexpr int kStreamed = 64;
  static constexpr int kResidentBytes = 2 * kResident * kHeadDim * 2;  // both tiles
  static constexpr int kStreamedBytes = 2 * kStreamed * kHeadDim * 2;  // both tiles, one stage
  // Each consumer's dQ of a step (kStreamed rows x kDqCols, fp32) goes through shared memory
  // to one producer-warpgroup thread, which adds it into dq_accum with a bulk reduction: the
  // consumers never wait on the sum.
  static constexpr int kDqCols = kHeadDim / 2;
  static constexpr int kDqStageBytes = kStreamed * kDqCols * 4;
  // The accumulating dk/dv kernel's dS tiles (kStreamed rows x kResident keys): a step's dS
  // is read one step after it is written, and three stages let either warpgroup run up to a
  // step ahead of the other.
  static constexpr int kDsStages = 3;
  static constexpr int kDsBytes = kStreamed * kResident * 2;
  static constexpr int bytes(bool with_ds, int stages) {
    return bwd_smem_bytes(kResidentBytes, kStreamedBytes, kStreamed, stages, kDsStages, kDsBytes,
                          kConsumers, kDqStageBytes, with_ds);
  }
  // Three streamed stages, so that a stage's refill has two steps' time to land, where they fit
  // beside the accumulating kernel's dS and dQ stages, else two (head dim 128; the accumulating
  // kernel measured the same with two and three on an H100).
  static constexpr int kStages = bytes(true, 3) <= kMaxBlockSmemBytes ? 3 : 2;
  static constexpr int smem_bytes(bool with_ds) { return bytes(with_ds, kStages); }
  static_assert(smem_bytes(true) <= kMaxBlockSmemBytes, "the tiles fit");
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
};

// Shared memory of a backward block of shape ShapeT (BwdShape, or WideBwdShape of
// flash_attn_sm90_bwd_wide.cuh), its tiles aligned to the swizzle period.
template <typename T, class ShapeT, bool kWithDs = false>
struct BwdSmem {
  using Shape = ShapeT;
  static constexpr int kHeadDim = Shape::kHeadDim;
  T* resident[2];   // [kChunks][kResident][64] each
  T* streamed[2];   // stage s of tile t at streamed[t] + s * kStreamed * kHeadDim
  T* ds;            // kWithDs: [kDsStages][kResident / 64][kStreamed][64], dS K-major
  float* dq;        // kWithDs: [kConsumers][kStreamed][kDqCols], pairs swizzled (dq_pair)
  float* lse;       // [kStages][kStreamed], log2 domain (dk/dv kernel)
  float* delta;     // [kStages][kStreamed]
  uint64_t* resident_full;
  uint64_t* full;      // [kStages]
  uint64_t* empty;     // [kStages]
  uint64_t* ds_full;   // kWithDs: [kDsStages], both warpgroups wrote their keys of dS
  uint64_t* ds_empty;  // kWithDs: [kDsStages], both warpgroups' dQ products read it
  uint64_t* dq_full;   // kWithDs: [kConsumers], the consumer wrote its dQ of a step
  uint64_t* dq_empty;  // kWithDs: [kConsumers], the writers added it into dq_accum

  __device__ __forceinline__ explicit BwdSmem(unsigned char* raw) {
    unsigned char* base =
        raw + (kSwizzleBytes - shared_address(raw) % kSwizzleBytes) % kSwizzleBytes;
    T* tiles = reinterpret_cast<T*>(base);
    resident[0] = tiles;
    resident[1] = resident[0] + Shape::kResident * kHeadDim;
    streamed[0] = resident[1] + Shape::kResident * kHeadDim;
    streamed[1] = streamed[0] + Shape::kStages * Shape::kStreamed * kHeadDim;
    ds = streamed[1] + Shape::kStages * Shape::kStreamed * kHeadDim;
    dq = reinterpret_cast<float*>(ds + (kWithDs ? Shape::kDsStages * Shape::kDsBytes / 2 : 0));
    lse = dq + (kWithDs ? Shape::kConsumers * Shape::kDqStageBytes / 4 : 0);
    delta = lse + Shape::kStages * Shape::kStreamed;
    resident_full = reinterpret_cast<uint64_t*>(delta + Shape::kStages * Shape::kStreamed);
    full = resident_full + 1;
    empty = full + Shape::kStages;
    ds_full = empty + Shape::kStages;
    ds_empty = ds_full + Shape::kDsStages;
    dq_full = ds_empty + Shape::kDsStages;
    dq_empty = dq_full + Shape::kConsumers;
  }

  __device__ __forceinline__ void init_barriers() {
    mbarrier_init(resident_full, 1);
#pragma unroll
    for (int s = 0; s < Shape::kStages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], 4 * Shape::kConsumers);
    }
    if constexpr (kWithDs) {
      // Lane 0 of every consumer warp arrives.
#pragma unroll
      for (int b = 0; b < Shape::kDsStages; ++b) {
        mbarrier_init(&ds_full[b], 4 * Shape::kConsumers);
        mbarrier_init(&ds_empty[b], 4 * Shape::kConsumers);
      }
#pragma unroll
      for (int c = 0; c < Shape::kConsumers; ++c) {
        mbarrier_init(&dq_full[c], 4);
        mbarrier_init(&dq_empty[c], 1);
      }
    }
    fence_barrier_init();
  }

  // zero_tail_rows of both resident tiles, or of both tiles of streamed stage s: rows
  // first_row .. of each.
  __device__ __forceinline__ void zero_resident_tails(int first_row, int consumer) {
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      zero_tail_rows<kHeadDim, Shape::kResident>(resident[t], first_row, consumer);
    }
  }

  __device__ __forceinline__ void zero_streamed_tails(int s, int first_row, int consumer) {
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      zero_tail_rows<kHeadDim, Shape::kStreamed>(streamed[t] + s * Shape::kStreamed * kHeadDim,
                                                 first_row, consumer);
    }
  }
};

// The producer warp of a backward block: copies the resident pair once, then per step the
// streamed pair at stream(step) = {head, row}. The whole warp also stages per-row values (the
// dk/dv kernel's lse and delta), which lane 0 publishes with the copy's barrier:
// fetch_rows(step, lane) loads them before the wait for the stage, so that their global-load
// latency overlaps the wait instead of delaying the refill, and returns the store into a stage,
// store(stage).
template <typename T, class Shape, bool kWithDs, class Stream, class FetchRows>
__device__ __forceinline__ void produce_bwd(const BwdParams& bp, BwdSmem<T, Shape, kWithDs>& sm,
                                            int resident_head, int resident_row, int batch,
                                            int steps, Stream stream, FetchRows fetch_rows) {
  constexpr int kHeadDim = Shape::kHeadDim;
  // With no steps the consumers wait for nothing: a copy still landing after the block exits
  // would write shared memory it no longer owns.
  if (steps == 0) return;
  const int lane = threadIdx.x % 32;
  if (lane == 0) {
    mbarrier_arrive_expect_tx(sm.resident_full, Shape::kResidentBytes);
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      load_tile<kHeadDim, Shape::kResident>(sm.resident[t], &bp.resident[t],
                                            bp.resident_rows_first[t], sm.resident_full,
                                            resident_head, resident_row, batch);
    }
  }
  for (int step = 0; step < steps; ++step) {
    const int s = step % Shape::kStages;
    const auto store_rows = fetch_rows(step, lane);
    mbarrier_wait(&sm.empty[s], ((step / Shape::kStages) & 1) ^ 1);
    store_rows(s);
    __syncwarp();
    if (lane == 0) {
      const auto [head, row] = stream(step);
      mbarrier_arrive_expect_tx(&sm.full[s], Shape::kStreamedBytes);
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        load_tile<kHeadDim, Shape::kStreamed>(
            sm.streamed[t] + s * Shape::kStreamed * kHeadDim, &bp.streamed[t],
            bp.streamed_rows_first[t], &sm.full[s], head, row, batch);
      }
    }
  }
}

struct HeadRow {
  int head;
  int row;
};

// The query steps of a dk/dv block (kKeys keys from n0 of key head hk): the (query head of the
// group, kRows-row query block) pairs whose rows see any of the keys. Step s takes query head
// hk * group + s / blocks and query block first_block + s % blocks.
template <int kKeys, int kRows>
struct KeySteps {
  int hk;
  int group;
  int first_block;
  int blocks;
  int steps;

  __device__ __forceinline__ KeySteps(const Params& p, const sm80::Sequence& seq,
                                      const sm80::Mask& mask, int n0, int key_head)
      : hk(key_head), group(p.group) {
    const int row_begin = mask.query_begin(n0);
    const int row_end = mask.query_end(min(n0 + kKeys, seq.k_len));
    first_block = row_begin / kRows;
    blocks = row_end > row_begin ? (row_end + kRows - 1) / kRows - first_block : 0;
    steps = blocks * group;
  }
  __device__ __forceinline__ int head(int step) const { return hk * group + step / blocks; }
  __device__ __forceinline__ int row0(int step) const {
    return (first_block + step % blocks) * kRows;
  }
};

// The producer warp of a dk/dv block: K and V of keys n0 .. once, then per step Q, dout and the
// step's lse and delta rows.
template <typename T, class Shape, bool kWithDs, class Steps>
__device__ __forceinline__ void produce_key_block(const BwdParams& bp,
                                                  BwdSmem<T, Shape, kWithDs>& sm,
                                                  const sm80::Sequence& seq, const Steps& plan,
                                                  int n0) {
  constexpr int kRows = Shape::kStreamed;
  const Params& p = bp.base;
  const auto stream = [&](int step) {
    return HeadRow{plan.head(step), static_cast<int>(seq.q_start) + plan.row0(step)};
  };
  const auto fetch_rows = [&](int step, int lane) {
    constexpr int kPerLane = kRows / 32;
    float lse[kPerLane];
    float delta[kPerLane];
#pragma unroll
    for (int r = 0; r < kPerLane; ++r) {
      sm80::row_stats(p, seq, plan.row0(step) + lane + 32 * r, plan.head(step), lse[r],
                      delta[r]);
    }
    return [&sm, lse, delta, lane](int s) {
      const int first = s * Shape::kStreamed + lane;
#pragma unroll
      for (int r = 0; r < kPerLane; ++r) {
        sm.lse[first + 32 * r] = lse[r];
        sm.delta[first + 32 * r] = delta[r];
      }
    };
  };
  produce_bwd(bp, sm, plan.hk, static_cast<int>(seq.k_start) + n0, static_cast<int>(seq.batch),
              plan.steps, stream, fetch_rows);
}

// The producer warpgroup of a dq block, launched to overlap the dk/dv kernel: thread 32 waits
// for that grid, so that this grid completes after it; warp 0 copies Q and dout of the block's
// rows once, then K and V of key tiles first_tile, first_tile + 1, ... (kStreamed keys each).
template <typename T, class Shape, bool kWithDs>
__device__ __forceinline__ void produce_query_block(const BwdParams& bp,
                                                    BwdSmem<T, Shape, kWithDs>& sm,
                                                    const sm80::QueryBlock& block, int steps) {
  if (threadIdx.x >= 32) {
    if (threadIdx.x == 32) wait_for_previous_grid();
    return;
  }
  const sm80::Sequence& seq = block.seq;
  const auto stream = [&](int step) {
    return HeadRow{block.hk,
                   static_cast<int>(seq.k_start) + (block.first_tile + step) * Shape::kStreamed};
  };
  const auto no_rows = [](int, int) { return [](int) {}; };
  produce_bwd(bp, sm, block.h, static_cast<int>(seq.q_start) + block.m0,
              static_cast<int>(seq.batch), steps, stream, no_rows);
}

// x = A_x B_x^T and y = A_y B_y^T (the scores and dP, or their transposes) for one warpgroup,
// issued together and waited for: 64 rows of the resident tiles at a_x / a_y against kBCols
// rows (all by default) of streamed stages of kBRows rows at b_x / b_y.
template <typename T, int kDepth, int kARows, int kBRows, int kBCols = kBRows>
__device__ __forceinline__ void two_products(float (&x)[kBCols / 8][4], uint32_t a_x,
                                             uint32_t b_x, float (&y)[kBCols / 8][4],
                                             uint32_t a_y, uint32_t b_y) {
  wgmma_fence();
  issue_a_bt<T, kDepth, kARows, kBRows, kBCols>(x, a_x, b_x);
  issue_a_bt<T, kDepth, kARows, kBRows, kBCols>(y, a_y, b_y);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(x);
  fence_registers(y);
}

// Byte offset of the 16-byte unit holding 16-bit element (row, col) of a tile of kTileRows rows
// as TMA writes it: chunks of 64 columns, each [kTileRows][128 bytes], the unit index within a
// row XOR'd with row % 8 (the 128-byte swizzle).
template <int kTileRows>
__device__ __forceinline__ int swizzled_unit(int row, int col) {
  return (col / 64) * kTileRows * 128 + row * 128 + (((col % 64) / 8) ^ (row % 8)) * 16;
}

// One warp's 16 rows (row0 ..) of a resident tile (kTileRows rows, 128-byte swizzled chunks of
// 64 columns) as wgmma A fragments over its kDepth columns, by ldmatrix.
template <int kDepth, int kTileRows, typename T>
__device__ __forceinline__ void load_a_fragments(uint32_t (&a)[kDepth / 16][4], const T* tile,
                                                 int row0, int lane) {
  const int m = lane / 8;
  const int row = row0 + 8 * (m % 2) + lane % 8;
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(tile) +
                        swizzled_unit<kTileRows>(row, 16 * kk + 8 * (m / 2));
    sm80::ldmatrix_x4(a[kk], bytes);
  }
}

// acc = A B^T for one warpgroup, A from registers (64 rows x kDepth), B kBRows rows of a
// K-major tile at shared address b_tile.
template <typename T, int kDepth, int kBRows>
__device__ __forceinline__ void issue_rs_bt(float (&acc)[kBRows / 8][4],
                                            const uint32_t (&a)[kDepth / 16][4], uint32_t b_tile) {
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    wgmma_rs_b_kmajor<T>(acc, a[kk], kmajor_step<kBRows>(b_tile, kk), kk > 0);
  }
}

// Writes one warp's 16 keys of dS^T (its dK A fragments: k-step kk holds query rows 16 kk ..
// 16 kk + 15) into a dS tile as dS, rows x keys, K-major and 128-byte swizzled like a TMA
// tile: one transposing store of four 8 x 8 matrices per k-step. key0 is the warp's first key
// within the tile's kKeys.
template <int kRows, int kKeys>
__device__ __forceinline__ void store_ds(uint32_t ds_tile, const uint32_t (&dsa)[kRows / 16][4],
                                         int key0, int lane) {
  // Fragment register m holds keys key0 + 8 (m % 2) .., rows 16 kk + 8 (m / 2) ..; lane l
  // addresses row l % 8 of matrix l / 8 of the transposed result.
  const int m = lane / 8;
  const int key = key0 + 8 * (m % 2);
#pragma unroll
  for (int kk = 0; kk < kRows / 16; ++kk) {
    const int row = 16 * kk + 8 * (m / 2) + lane % 8;
    stmatrix_x4_trans(ds_tile + swizzled_unit<kRows>(row, key), dsa[kk]);
  }
}

// acc (+)= A B for one warpgroup, both from shared memory: A 64 rows x kDepth of a K-major tile
// of kARows rows at a_tile, B kDepth rows x kCols columns (N-major) of a tile of kBRows rows
// from b_cols, the shared address of its element (0, first column); `accumulate` false
// overwrites acc. dQ = dS K (A the dS tile, B columns of the K tile) and the wide backward's
// products with P^T, dS^T or dS.
template <typename T, int kDepth, int kCols, int kARows, int kBRows>
__device__ __forceinline__ void issue_ss_b_nmajor(float (&acc)[kCols / 8][4], uint32_t a_tile,
                                                  uint32_t b_cols, bool accumulate) {
  // The descriptor's chunk stride is read only when B spans more than one 64-column chunk.
  constexpr uint32_t kChunkStride = kCols > 64 ? kBRows * 128 : 0;
#pragma unroll
  for (int kk = 0; kk < kDepth / 16; ++kk) {
    wgmma_ss_b_nmajor<T>(acc, kmajor_step<kARows>(a_tile, kk),
                         smem_descriptor(b_cols + kk * 16 * 128, kChunkStride),
                         accumulate || kk > 0);
  }
}

// Where float pair `pair` (columns 2 pair, + 1) of row `row` of a dQ stage is: pairs XOR'd
// with a multiple of 4 by row, so that the 8 rows one accumulator store touches fall in
// different banks (head dim 128; at 64, a 32-float row has room for 4 patterns: 2 rows per
// bank, still the 2 wavefronts 256 bytes take); a 16-byte quad (pairs 2q, 2q + 1) stays
// contiguous.
template <int kCols>
__device__ __forceinline__ int dq_pair_in_row(int row, int pair) {
  return pair ^ ((row % (kCols / 8)) * 4);
}

template <int kCols>
__device__ __forceinline__ int dq_pair(int row, int pair) {
  return row * (kCols / 2) + dq_pair_in_row<kCols>(row, pair);
}

// One warp's 16 rows (16 warp + g, + 8) of a dQ accumulator (columns 8n + 2t, + 1) into a
// stage of kRows x kCols floats.
template <int kCols>
__device__ __forceinline__ void stage_dq(float* stage, const float (&dq)[kCols / 8][4], int warp,
                                         int lane) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = 16 * warp + lane / 4 + 8 * half;
#pragma unroll
    for (int n = 0; n < kCols / 8; ++n) {
      reinterpret_cast<float2*>(stage)[dq_pair<kCols>(row, 4 * n + lane % 4)] =
          make_float2(dq[n][2 * half], dq[n][2 * half + 1]);
    }
  }
}

// The dQ writer, one thread: per step, each consumer's stage in turn is added into its half of
// the step's dq_accum tile by one bulk reduction (rows past the sequence land in the tile's
// padding) and handed back once the copy has read it.
template <int kHeadDim, class Smem, class Steps>
__device__ __forceinline__ void write_dq(const Params& p, const sm80::Sequence& seq,
                                         int sequence, Smem& sm, const Steps plan) {
  using Shape = BwdShape<kHeadDim>;
  static_assert(Shape::kStreamed == sm80::kDqAccumRows, "a step's rows are one dq_accum tile");
  for (int step = 0; step < plan.steps; ++step) {
    for (int c = 0; c < Shape::kConsumers; ++c) {
      mbarrier_wait(&sm.dq_full[c], step & 1);
      bulk_reduce_add(p.dq_accum + sm80::dq_accum_row(p, seq, sequence, plan.row0(step),
                                                      plan.head(step), c, kHeadDim),
                      shared_address(sm.dq + c * Shape::kStreamed * Shape::kDqCols),
                      Shape::kDqStageBytes);
      bulk_commit_group();
      bulk_wait_read<0>();
      mbarrier_arrive(&sm.dq_empty[c]);
    }
  }
  // The reductions complete before the block's shared memory is released.
  bulk_wait<0>();
}

// dq = dq_accum * softmax_scale in T, one warp per row on the delta kernel's grid: lane l
// converts columns 8 l .. 8 l + 7, a quad of pairs that dq_pair keeps together.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(sm80::kThreads) bwd_dq_convert_kernel(const Params p) {
  constexpr int kCols = BwdShape<kHeadDim>::kDqCols;
  const sm80::Sequence seq = sm80::sequence_of(p, blockIdx.z);
  const int h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  for (int r = threadIdx.x / 32; r < sm80::kDeltaRowsPerBlock; r += sm80::kWarps) {
    const int i = blockIdx.x * sm80::kDeltaRowsPerBlock + r;
    if (i >= seq.q_len) break;
    if (lane < kHeadDim / 8) {
      const int half = lane / (kCols / 8);
      const int pair = lane % (kCols / 8) * 4;
      const float* row =
          p.dq_accum + sm80::dq_accum_row(p, seq, blockIdx.z, i, h, half, kHeadDim);
      float values[8];
      to_floats(*reinterpret_cast<const Vec<float, 8>*>(
                    reinterpret_cast<const float2*>(row) +
                    dq_pair_in_row<kCols>(i % sm80::kDqAccumRows, pair)),
                values);
#pragma unroll
      for (int e = 0; e < 8; ++e) values[e] *= p.softmax_scale;
      *reinterpret_cast<Vec<T, 8>*>(static_cast<T*>(p.dq) +
                                    sm80::q_like_row(p, seq, i, h, kHeadDim) + lane * 8) =
          from_floats<T>(values);
    }
  }
}

template <typename T, int kHeadDim, bool kWithDq>
__global__ void __launch_bounds__(BwdShape<kHeadDim>::kThreads, 1)
    bwd_dk_dv_kernel(const __grid_constant__ BwdParams bp) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Compiled for another architecture: never launched there.
#else
  using Shape = BwdShape<kHeadDim>;
  constexpr int kKeys = Shape::kResident;
  constexpr int kRows = Shape::kStreamed;
  const Params& p = bp.base;
  extern __shared__ unsigned char smem_raw[];
  BwdSmem<T, Shape, kWithDq> sm(smem_raw);
  // The dq kernel reads none of this kernel's output: its blocks may take the multiprocessors
  // this grid's last blocks leave idle.
  allow_dependent_launch();

  const GridBlock block = heaviest_first_block<false>();
  const sm80::Sequence seq = sm80::sequence_of(p, block.sequence);
  const int n0 = block.tile * kKeys;
  if (n0 >= seq.k_len) return;
  const int hk = block.head;
  const sm80::Mask mask = sm80::mask_of(p, seq);
  const KeySteps<kKeys, kRows> plan(p, seq, mask, n0, hk);
  const int steps = plan.steps;

  if (threadIdx.x == 0) sm.init_barriers();
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    release_registers<Shape::kProducerRegisters>();
    if constexpr (kWithDq) {
      if (threadIdx.x == 32) write_dq<kHeadDim>(p, seq, block.sequence, sm, plan);
    }
    if (threadIdx.x < 32) produce_key_block(bp, sm, seq, plan, n0);
    return;
  }
  claim_registers<Shape::kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  const int warp_key0 = n0 + consumer * 64 + warp * 16;
  float dk[kHeadDim / 8][4] = {};
  float dv[kHeadDim / 8][4] = {};
  if (steps > 0) {
    mbarrier_wait(sm.resident_full, 0);
    sm.zero_resident_tails(static_cast<int>(seq.k_len) - n0, consumer);
  }
  const uint32_t k_rows = shared_address(sm.resident[0]) + consumer * 64 * 128;
  const uint32_t v_rows = shared_address(sm.resident[1]) + consumer * 64 * 128;
  // At head dim 64 the registers have room for this warp's 16 keys of K and V as A fragments
  // (16 each): S^T and dP^T then read only Q and dout from shared memory each step. At 128
  // (32 each) ptxas spills and serializes the wgmmas. Only with kWithDq: without it, ptxas
  // 13.0.88 packed P^T and dS^T into the K and V fragments' registers (SASS of the hd-64
  // kernel), so from the second step on S^T was computed from the last step's P^T (wrong dK and
  // dV on an H100 at any sequence of two or more query blocks; one block was right).
  constexpr bool kResidentInRegisters = kHeadDim <= 64 && kWithDq;
  constexpr int kFragSteps = kResidentInRegisters ? kHeadDim / 16 : 1;
  uint32_t k_frags[kFragSteps][4];
  uint32_t v_frags[kFragSteps][4];
  if constexpr (kResidentInRegisters) {
    if (steps > 0) {
      load_a_fragments<kHeadDim, kKeys>(k_frags, sm.resident[0], consumer * 64 + warp * 16, lane);
      load_a_fragments<kHeadDim, kKeys>(v_frags, sm.resident[1], consumer * 64 + warp * 16, lane);
    }
  }
  // kWithDq: this warpgroup's half of the head dim of dQ = dS K of a step, over all kKeys
  // keys, so it needs the other warpgroup's keys of dS too. It is issued one step late, after
  // the next step's dV and dK: waiting for the other warpgroup's dS (an mbarrier, not a
  // rendezvous) then lets either warpgroup run up to a step ahead, so that one's softmax
  // overlaps the other's products, and no dQ accumulator is live during the softmax (it
  // would not fit in the registers beside dK, dV, S^T and dP^T).
  const auto ds_stage = [](int step) { return step % Shape::kDsStages; };
  const auto ds_parity = [](int step) { return (step / Shape::kDsStages) & 1; };
  const auto ds_tile = [&](int step) {
    return shared_address(sm.ds + ds_stage(step) * kRows * kKeys);
  };
  constexpr int kDqCols = Shape::kDqCols;
  const int dq_col0 = consumer * kDqCols;
  const uint32_t k_cols =
      shared_address(sm.resident[0]) + (dq_col0 / 64) * kKeys * 128 + (dq_col0 % 64) * 2;
  // dQ of `step`: the product once both warpgroups wrote its dS, then (the dS stage free) to the
  // writers through this warpgroup's stage once they are done with the last step's. The
  // accumulator is local to it: one declared outside the loop would stay live through the
  // softmax (wgmma reads it) and would not fit beside dK, dV, S^T and dP^T.
  float* dq_stage = sm.dq + consumer * Shape::kStreamed * kDqCols;
  const auto sum_dq = [&](int step) {
    float dq[kDqCols / 8][4];
    mbarrier_wait(&sm.ds_full[ds_stage(step)], ds_parity(step));
    wgmma_fence();
    issue_ss_b_nmajor<T, kKeys, kDqCols, kRows, kKeys>(dq, ds_tile(step), k_cols, false);
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dq);
    if (lane == 0) mbarrier_arrive(&sm.ds_empty[ds_stage(step)]);
    mbarrier_wait(&sm.dq_empty[consumer], (step & 1) ^ 1);
    stage_dq<kDqCols>(dq_stage, dq, warp, lane);
    fence_async_shared();  // the bulk reduction reads the stage
    __syncwarp();
    if (lane == 0) mbarrier_arrive(&sm.dq_full[consumer]);
  };
  // step % blocks, kept as a counter: the division by a runtime value was about 30 instructions
  // per step on the consumers' path (SASS).
  int row_block = -1;
  for (int step = 0; step < steps; ++step) {
    const int s = step % Shape::kStages;
    if (++row_block == plan.blocks) row_block = 0;
    const int m0 = (plan.first_block + row_block) * kRows;
    const uint32_t q_stage = shared_address(sm.streamed[0] + s * kRows * kHeadDim);
    const uint32_t dout_stage = shared_address(sm.streamed[1] + s * kRows * kHeadDim);
    // C row = key (warp_key0 + g, + 8), C column = query row m0 + 8n + 2t (+ 1).
    float st[kRows / 8][4];
    float dpt[kRows / 8][4];
    mbarrier_wait(&sm.full[s], (step / Shape::kStages) & 1);
    sm.zero_streamed_tails(s, static_cast<int>(seq.q_len) - m0, consumer);
    if constexpr (kResidentInRegisters) {
      wgmma_fence();
      issue_rs_bt<T, kHeadDim, kRows>(st, k_frags, q_stage);
      issue_rs_bt<T, kHeadDim, kRows>(dpt, v_frags, dout_stage);
      wgmma_commit();
      wgmma_wait<0>();
      fence_registers(st);
      fence_registers(dpt);
      fence_fragments(k_frags);
      fence_fragments(v_frags);
    } else {
      two_products<T, kHeadDim, kKeys, kRows>(st, k_rows, q_stage, dpt, v_rows, dout_stage);
    }

    sm80::transposed_probs_to_ds<kRows>(st, dpt, sm.lse + s * kRows, sm.delta + s * kRows, mask,
                                        m0, warp_key0, lane, p.scale_log2);
    uint32_t pa[kRows / 16][4];
    uint32_t dsa[kRows / 16][4];
    a_fragments<T, kRows>(pa, st);
    a_fragments<T, kRows>(dsa, dpt);
    if constexpr (kWithDq) {
      mbarrier_wait(&sm.ds_empty[ds_stage(step)], ds_parity(step) ^ 1);
      store_ds<kRows, kKeys>(ds_tile(step), dsa, consumer * 64 + warp * 16, lane);
      fence_async_shared();
      __syncwarp();
      if (lane == 0) mbarrier_arrive(&sm.ds_full[ds_stage(step)]);
    }
    fence_registers(dv);
    fence_registers(dk);
    wgmma_fence();
    issue_p_b<T, kRows, kHeadDim, kRows>(dv, pa, dout_stage);
    issue_p_b<T, kRows, kHeadDim, kRows>(dk, dsa, q_stage);
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dv);
    fence_registers(dk);
    fence_fragments(pa);
    fence_fragments(dsa);
    if (lane == 0) mbarrier_arrive(&sm.empty[s]);
    if constexpr (kWithDq) {
      // After dV and dK are done, so that their A fragments are free for dq.
      if (step > 0) sum_dq(step - 1);
    }
  }
  if constexpr (kWithDq) {
    if (steps > 0) sum_dq(steps - 1);
  }

  if (warp_key0 >= seq.k_len) return;
  const int64_t pitch = static_cast<int64_t>(p.heads_k) * kHeadDim;
  const int64_t first = sm80::k_like_row(p, seq, warp_key0, hk, kHeadDim);
  const float dk_scale[2] = {p.softmax_scale, p.softmax_scale};
  const float dv_scale[2] = {1.0f, 1.0f};
  sm80::store_c_tiles<T, kHeadDim>(static_cast<T*>(p.dk) + first, pitch, seq.k_len - warp_key0,
                                   dk, dk_scale, lane);
  sm80::store_c_tiles<T, kHeadDim>(static_cast<T*>(p.dv) + first, pitch, seq.k_len - warp_key0,
                                   dv, dv_scale, lane);
#endif
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(BwdShape<kHeadDim>::kThreads, 1)
    bwd_dq_kernel(const __grid_constant__ BwdParams bp) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Compiled for another architecture: never launched there.
#else
  using Shape = BwdShape<kHeadDim>;
  constexpr int kRows = Shape::kResident;
  constexpr int kKeys = Shape::kStreamed;
  const Params& p = bp.base;
  extern __shared__ unsigned char smem_raw[];
  BwdSmem<T, Shape> sm(smem_raw);

  const GridBlock tile = heaviest_first_block<true>();
  const sm80::QueryBlock block =
      sm80::query_block<kRows, kKeys>(p, tile.tile, tile.head, tile.sequence);
  const sm80::Sequence& seq = block.seq;
  // Launched to overlap the dk/dv kernel (schedule_bwd): one thread of each block, otherwise
  // idle, waits for that grid, so that this grid completes after it. The stream's later work
  // waits for this grid and may read dk and dv.
  if (block.m0 >= seq.q_len) {
    if (threadIdx.x == 0) wait_for_previous_grid();
    return;
  }
  const int first_tile = block.first_tile;
  const int steps = block.end_tile - first_tile;

  if (threadIdx.x == 0) sm.init_barriers();
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    release_registers<Shape::kProducerRegisters>();
    produce_query_block(bp, sm, block, steps);
    return;
  }
  claim_registers<Shape::kConsumerRegisters>();

  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32;
  const int warp_row0 = block.m0 + consumer * 64 + warp * 16;
  float row_lse[2];
  float row_delta[2];
  sm80::load_row_stats(p, seq, warp_row0, block.h, lane, row_lse, row_delta);

  float dq[kHeadDim / 8][4] = {};
  if (steps > 0) {
    mbarrier_wait(sm.resident_full, 0);
    sm.zero_resident_tails(static_cast<int>(seq.q_len) - block.m0, consumer);
  }
  const uint32_t q_rows = shared_address(sm.resident[0]) + consumer * 64 * 128;
  const uint32_t dout_rows = shared_address(sm.resident[1]) + consumer * 64 * 128;
  for (int step = 0; step < steps; ++step) {
    const int s = step % Shape::kStages;
    const int j0 = (first_tile + step) * kKeys;
    const uint32_t k_stage = shared_address(sm.streamed[0] + s * kKeys * kHeadDim);
    const uint32_t v_stage = shared_address(sm.streamed[1] + s * kKeys * kHeadDim);
    // C row = query (warp_row0 + g, + 8), C column = key j0 + 8n + 2t (+ 1).
    float sc[kKeys / 8][4] = {};
    float dp[kKeys / 8][4] = {};
    mbarrier_wait(&sm.full[s], (step / Shape::kStages) & 1);
    sm.zero_streamed_tails(s, static_cast<int>(seq.k_len) - j0, consumer);
    two_products<T, kHeadDim, kRows, kKeys>(sc, q_rows, k_stage, dp, dout_rows, v_stage);

    sm80::scores_to_ds<kKeys>(sc, dp, block.mask, warp_row0, j0, lane, p.scale_log2, row_lse,
                              row_delta);
    uint32_t dsa[kKeys / 16][4];
    a_fragments<T, kKeys>(dsa, sc);
    fence_registers(dq);
    wgmma_fence();
    issue_p_b<T, kKeys, kHeadDim, kKeys>(dq, dsa, k_stage);
    wgmma_commit();
    wgmma_wait<0>();
    fence_registers(dq);
    fence_fragments(dsa);
    if (lane == 0) mbarrier_arrive(&sm.empty[s]);
  }

  if (warp_row0 >= seq.q_len) return;
  const float dq_scale[2] = {p.softmax_scale, p.softmax_scale};
  T* first = static_cast<T*>(p.dq) + sm80::q_like_row(p, seq, warp_row0, block.h, kHeadDim);
  sm80::store_c_tiles<T, kHeadDim>(first, static_cast<int64_t>(p.heads_q) * kHeadDim,
                                   seq.q_len - warp_row0, dq, dq_scale, lane);
#endif
}

}  // namespace tk::flash_attn::sm90
