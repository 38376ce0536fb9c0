// Which sm_90a FlashAttention kernels run on which grids, with which TMA descriptors, threads
// and dynamic shared memory: written once for the GPU launcher (flash_attn_sm90_launch.cuh) and
// for the CPU emulator of the tests (tests/flash_attn_emulation), which supply `Launcher`:
//   static Status Launcher::launch(kernel, int smem_bytes, dim3 grid, int threads,
//                                  const KernelParams&, cudaStream_t,
//                                  bool overlaps_previous = false)
//   static Status Launcher::zero(void* device_bytes, int64_t bytes, cudaStream_t)
// No launch syntax here, so a host compiler reads it too.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>

#include "_common/cuda_check.cuh"
#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_schedule.cuh"
#include "flash_attn/flash_attn_sm90_bwd.cuh"
#include "flash_attn/flash_attn_sm90_bwd_wide.cuh"
#include "flash_attn/flash_attn_sm90_fwd.cuh"
#include "flash_attn/flash_attn_sm90_tensor_map.h"

namespace tk::flash_attn::sm90 {

// FwdParams' units, grid and split query blocks (fwd_units, fwd_split_plan). The persistent
// grid's producer loads the next query block's Q and K while the consumers finish the current
// one, where a grid of one block per query block paid that latency and the O store once per
// block. The split needs p.fwd_split, fwd_split_plan's bytes; *split_flag_bytes (0: no split)
// are the flags to zero before the launch.
inline Status plan_fwd_units(const Params& p, int head_dim, int multiprocessors, FwdParams* fp,
                             int* blocks, int64_t* split_flag_bytes) {
  const FwdUnits u = fwd_units(p, head_dim, multiprocessors);
  if (u.units > INT_MAX) return invalid("flash_attn: too many query blocks for one grid");
  fp->row_tiles = static_cast<int>(u.row_tiles);
  fp->unit_items = static_cast<int>(u.unit_items);
  fp->unit_tiles = static_cast<int>(u.unit_tiles);
  fp->units = static_cast<int>(u.units);
  *blocks = static_cast<int>(u.blocks);
  const FwdSplitPlan split = fwd_split_plan(p, head_dim, u);
  fp->split_unit = fp->units;
  fp->split_tiles = 1;
  fp->split_steps = 0;
  fp->split_flags = nullptr;
  fp->split_state = nullptr;
  *split_flag_bytes = 0;
  if (split.bytes > 0 && p.fwd_split != nullptr) {
    fp->split_unit = static_cast<int>(split.split_unit);
    fp->split_tiles = static_cast<int>(split.tiles);
    fp->split_steps = static_cast<int>((u.units - split.split_unit) * split.tiles);
    fp->split_flags = static_cast<int*>(p.fwd_split);
    fp->split_state =
        reinterpret_cast<float*>(static_cast<unsigned char*>(p.fwd_split) + split.flag_bytes);
    *split_flag_bytes = split.flag_bytes;
  }
  return Status::Ok();
}

template <class Launcher, typename T, int kHeadDim, int kKeys>
Status schedule_fwd_tiles(const Params& p, int multiprocessors, cudaStream_t stream) {
  using Shape = FwdShape<kHeadDim, kKeys>;
  FwdParams fp;
  fp.base = p;
  const bool varlen = p.cu_seqlens_q != nullptr;
  const int batch = varlen ? 1 : p.batch;
  if (Status s = encode_input<T>(&fp.q_map, &fp.q_rows_first, p.q, kHeadDim, p.heads_q,
                                 p.seqlen_q, batch, p.q_row, p.q_head, p.q_batch, Shape::kRows);
      !s.ok()) {
    return s;
  }
  if (Status s = encode_input<T>(&fp.k_map, &fp.k_rows_first, p.k, kHeadDim, p.heads_k,
                                 p.seqlen_k, batch, p.k_row, p.k_head, p.k_batch, Shape::kKeys);
      !s.ok()) {
    return s;
  }
  if (Status s = encode_input<T>(&fp.v_map, &fp.v_rows_first, p.v, kHeadDim, p.heads_k,
                                 p.seqlen_k, batch, p.v_row, p.v_head, p.v_batch, Shape::kKeys);
      !s.ok()) {
    return s;
  }
  int blocks = 0;
  int64_t split_flag_bytes = 0;
  if (Status s = plan_fwd_units(p, kHeadDim, multiprocessors, &fp, &blocks, &split_flag_bytes);
      !s.ok()) {
    return s;
  }
  if (split_flag_bytes > 0) {
    if (Status s = Launcher::zero(fp.split_flags, split_flag_bytes, stream); !s.ok()) return s;
  }
  return Launcher::launch(fwd_kernel<T, kHeadDim, kKeys>, Shape::kSmemBytes, dim3(blocks),
                          Shape::kThreads, fp, stream);
}

// Head dim 128 without a mask (no causal, no window) takes the wide key tiles.
template <class Launcher, typename T, int kHeadDim>
Status schedule_fwd(const Params& p, cudaStream_t stream) {
  int multiprocessors = 0;
  if (Status s = current_multiprocessor_count(&multiprocessors); !s.ok()) return s;
  if constexpr (kHeadDim == 128) {
    if (p.window_left >= sm80::kUnbounded && p.window_right >= sm80::kUnbounded) {
      return schedule_fwd_tiles<Launcher, T, kHeadDim, kWideKeys>(p, multiprocessors, stream);
    }
  }
  return schedule_fwd_tiles<Launcher, T, kHeadDim, kDefaultKeys<kHeadDim>>(p, multiprocessors,
                                                                            stream);
}

// The backward's inputs as TMA sources, and the two tile pairs of each kernel: dk/dv keeps K
// and V (resident rows) and streams Q and dout (streamed rows); dq the other way round.
struct BwdInputs {
  Input q, dout, k, v;
  int batch;

  explicit BwdInputs(const Params& p)
      : q{p.q, p.heads_q, p.seqlen_q, p.q_row, p.q_head, p.q_batch},
        dout{p.dout, p.heads_q, p.seqlen_q, p.dout_row, p.dout_head, p.dout_batch},
        k{p.k, p.heads_k, p.seqlen_k, p.k_row, p.k_head, p.k_batch},
        v{p.v, p.heads_k, p.seqlen_k, p.v_row, p.v_head, p.v_batch},
        batch(p.cu_seqlens_q != nullptr ? 1 : p.batch) {}

  template <typename T, int kHeadDim>
  Status encode(const Params& p, bool dk_dv, int resident_rows, int streamed_rows,
                BwdParams* bp) const {
    bp->base = p;
    const Input resident[2] = {dk_dv ? k : q, dk_dv ? v : dout};
    const Input streamed[2] = {dk_dv ? q : k, dk_dv ? dout : v};
    if (Status s = encode_pair<T, kHeadDim>(bp->resident, bp->resident_rows_first, resident,
                                            batch, resident_rows);
        !s.ok()) {
      return s;
    }
    return encode_pair<T, kHeadDim>(bp->streamed, bp->streamed_rows_first, streamed, batch,
                                    streamed_rows);
  }
};

template <class Launcher, typename T, int kHeadDim>
Status launch_bwd_delta(const Params& p, cudaStream_t stream) {
  const dim3 delta_blocks =
      sm80::grid_of(p.max_seqlen_q, sm80::kDeltaRowsPerBlock, p.heads_q, p);
  return Launcher::launch(sm80::bwd_delta_kernel<T, kHeadDim>, 0, delta_blocks, sm80::kThreads,
                          p, stream);
}

// A dk/dv or dq grid: one block per (tile of `tile` rows, head, sequence), whose blocks
// heaviest_first_block (flash_attn_sm90_bwd.cuh) numbers in an int.
inline Status bwd_grid(int rows, int tile, int heads, const Params& p, dim3* grid) {
  *grid = sm80::grid_of(rows, tile, heads, p);
  if (static_cast<int64_t>(grid->x) * grid->y * grid->z > INT_MAX) {
    return invalid("flash_attn: too many blocks for one backward grid (over 2^31 - 1 tiles x "
                   "heads x sequences)");
  }
  return Status::Ok();
}

// The wide head dims' two kernels (flash_attn_sm90_bwd_wide.cuh); p.dq_accum is not used.
template <class Launcher, typename T, int kHeadDim>
Status schedule_wide_bwd(const Params& p, cudaStream_t stream) {
  using Shape = WideBwdShape<kHeadDim>;
  if (Status s = launch_bwd_delta<Launcher, T, kHeadDim>(p, stream); !s.ok()) return s;
  const BwdInputs inputs(p);
  BwdParams dk_dv;
  if (Status s = inputs.encode<T, kHeadDim>(p, true, Shape::kResident, Shape::kStreamed, &dk_dv);
      !s.ok()) {
    return s;
  }
  dim3 key_blocks;
  if (Status s = bwd_grid(p.max_seqlen_k, Shape::kResident, p.heads_k, p, &key_blocks); !s.ok()) {
    return s;
  }
  if (Status s = Launcher::launch(bwd_dk_dv_wide_kernel<T, kHeadDim>, Shape::smem_bytes(),
                                  key_blocks, Shape::kThreads, dk_dv, stream);
      !s.ok()) {
    return s;
  }
  BwdParams dq;
  if (Status s = inputs.encode<T, kHeadDim>(p, false, Shape::kResident, Shape::kStreamed, &dq);
      !s.ok()) {
    return s;
  }
  dim3 query_blocks;
  if (Status s = bwd_grid(p.max_seqlen_q, Shape::kResident, p.heads_q, p, &query_blocks);
      !s.ok()) {
    return s;
  }
  return Launcher::launch(bwd_dq_wide_kernel<T, kHeadDim>, Shape::smem_bytes(), query_blocks,
                          Shape::kThreads, dq, stream, /*overlaps_previous=*/true);
}

template <class Launcher, typename T, int kHeadDim>
Status schedule_bwd(const Params& p, cudaStream_t stream) {
  if constexpr (!sums_dq(kHeadDim)) {
    return schedule_wide_bwd<Launcher, T, kHeadDim>(p, stream);
  } else {
    using Shape = BwdShape<kHeadDim>;
    if (Status s = launch_bwd_delta<Launcher, T, kHeadDim>(p, stream); !s.ok()) return s;
    const BwdInputs inputs(p);
    BwdParams dk_dv;
    if (Status s =
            inputs.encode<T, kHeadDim>(p, true, Shape::kResident, Shape::kStreamed, &dk_dv);
        !s.ok()) {
      return s;
    }
    dim3 key_blocks;
    if (Status s = bwd_grid(p.max_seqlen_k, Shape::kResident, p.heads_k, p, &key_blocks);
        !s.ok()) {
      return s;
    }
    // The workspace is there exactly where the caller wants dQ summed (not deterministic).
    if (p.dq_accum != nullptr) {
      if (Status s = Launcher::launch(bwd_dk_dv_kernel<T, kHeadDim, true>,
                                      Shape::smem_bytes(true), key_blocks, Shape::kThreads,
                                      dk_dv, stream);
          !s.ok()) {
        return s;
      }
      return Launcher::launch(
          bwd_dq_convert_kernel<T, kHeadDim>, 0,
          sm80::grid_of(p.max_seqlen_q, sm80::kDeltaRowsPerBlock, p.heads_q, p),
          sm80::kThreads, p, stream);
    }
    if (Status s = Launcher::launch(bwd_dk_dv_kernel<T, kHeadDim, false>,
                                    Shape::smem_bytes(false), key_blocks, Shape::kThreads, dk_dv,
                                    stream);
        !s.ok()) {
      return s;
    }
    BwdParams dq;
    if (Status s = inputs.encode<T, kHeadDim>(p, false, Shape::kResident, Shape::kStreamed, &dq);
        !s.ok()) {
      return s;
    }
    dim3 query_blocks;
    if (Status s = bwd_grid(p.max_seqlen_q, Shape::kResident, p.heads_q, p, &query_blocks);
        !s.ok()) {
      return s;
    }
    // Overlapping the dk/dv kernel's last blocks (it writes nothing the dq kernel reads).
    return Launcher::launch(bwd_dq_kernel<T, kHeadDim>, Shape::smem_bytes(false), query_blocks,
                            Shape::kThreads, dq, stream, /*overlaps_previous=*/true);
  }
}

}  // namespace tk::flash_attn::sm90
