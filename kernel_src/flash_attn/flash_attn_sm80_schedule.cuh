// Which kernels the sm_80 forward and backward launch, on which grids and with how much dynamic
// shared memory: written once for the GPU launcher (flash_attn_sm80_launch.cuh) and for the CPU
// emulator of the tests (tests/flash_attn_emulation), which supply `Launcher`:
//   static Status Launcher::launch(kernel, int smem_bytes, dim3 grid, const Params&, stream)
// No launch syntax here, so a host compiler reads it too.
#pragma once

#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_bwd.cuh"
#include "flash_attn/flash_attn_sm80_fwd.cuh"

namespace tk::flash_attn::sm80 {

// One block per (tile of `tile` rows of the longest sequence, head, sequence).
inline dim3 grid_of(int rows, int tile, int heads, const Params& p) {
  return dim3((rows + tile - 1) / tile, heads, p.batch);
}

template <class Launcher, typename T, int kHeadDim>
Status schedule_fwd(const Params& p, cudaStream_t stream) {
  using Shape = FwdShape<kHeadDim>;
  return Launcher::launch(fwd_kernel<T, kHeadDim>, Shape::kSmemBytes,
                          grid_of(p.max_seqlen_q, Shape::kRows, p.heads_q, p), p, stream);
}

template <class Launcher, typename T, int kHeadDim>
Status schedule_bwd(const Params& p, cudaStream_t stream) {
  if (p.max_seqlen_q > 0) {
    const Status s = Launcher::launch(bwd_delta_kernel<T, kHeadDim>, 0,
                                      grid_of(p.max_seqlen_q, kDeltaRowsPerBlock, p.heads_q, p),
                                      p, stream);
    if (!s.ok()) return s;
  }
  if (p.max_seqlen_k > 0) {
    using Shape = DkDvShape<kHeadDim>;
    const Status s = Launcher::launch(bwd_dk_dv_kernel<T, kHeadDim>, Shape::kSmemBytes,
                                      grid_of(p.max_seqlen_k, Shape::kKeys, p.heads_k, p), p,
                                      stream);
    if (!s.ok()) return s;
  }
  if (p.max_seqlen_q > 0) {
    using Shape = DqShape<kHeadDim>;
    return Launcher::launch(bwd_dq_kernel<T, kHeadDim>, Shape::kSmemBytes,
                            grid_of(p.max_seqlen_q, Shape::kRows, p.heads_q, p), p, stream);
  }
  return Status::Ok();
}

}  // namespace tk::flash_attn::sm80
