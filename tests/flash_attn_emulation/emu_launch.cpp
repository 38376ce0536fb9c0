// run_fwd / run_bwd of flash_attn_sm80_launch.h on the emulator: the same kernels and grids as
// flash_attn_sm80_launch.cuh, launched by emu::launch.
#include "flash_attn/flash_attn_sm80_ptx.cuh"  // the emulated one, before the kernels

#include "flash_attn/flash_attn_sm80_bwd.cuh"
#include "flash_attn/flash_attn_sm80_fwd.cuh"
#include "flash_attn/flash_attn_sm80_launch.h"

namespace tk::flash_attn::sm80 {

// The kernels' `extern __shared__` array: 227 KiB, the most a Hopper block may have.
alignas(16) unsigned char smem[232448];

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t) {
  using Shape = FwdShape<kHeadDim>;
  static_assert(Shape::kSmemBytes <= sizeof(smem));
  emu::launch(fwd_kernel<T, kHeadDim>,
              dim3((p.max_seqlen_q + Shape::kRows - 1) / Shape::kRows, p.heads_q, p.batch), p);
  return Status::Ok();
}

template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t) {
  using DkDv = DkDvShape<kHeadDim>;
  using Dq = DqShape<kHeadDim>;
  static_assert(DkDv::kSmemBytes <= sizeof(smem) && Dq::kSmemBytes <= sizeof(smem));
  if (p.max_seqlen_q > 0) {
    emu::launch(bwd_delta_kernel<T, kHeadDim>,
                dim3((p.max_seqlen_q + kDeltaRowsPerBlock - 1) / kDeltaRowsPerBlock, p.heads_q,
                     p.batch),
                p);
  }
  if (p.max_seqlen_k > 0) {
    emu::launch(bwd_dk_dv_kernel<T, kHeadDim>,
                dim3((p.max_seqlen_k + DkDv::kKeys - 1) / DkDv::kKeys, p.heads_k, p.batch), p);
  }
  if (p.max_seqlen_q > 0) {
    emu::launch(bwd_dq_kernel<T, kHeadDim>,
                dim3((p.max_seqlen_q + Dq::kRows - 1) / Dq::kRows, p.heads_q, p.batch), p);
  }
  return Status::Ok();
}

#define TK_EMULATE(T, D)                                          \
  template Status run_fwd<T, D>(const Params&, cudaStream_t); \
  template Status run_bwd<T, D>(const Params&, cudaStream_t);
TK_EMULATE(__half, 64)
TK_EMULATE(__half, 96)
TK_EMULATE(__half, 128)
TK_EMULATE(__half, 192)
TK_EMULATE(__half, 256)
TK_EMULATE(__nv_bfloat16, 64)
TK_EMULATE(__nv_bfloat16, 96)
TK_EMULATE(__nv_bfloat16, 128)
TK_EMULATE(__nv_bfloat16, 192)
TK_EMULATE(__nv_bfloat16, 256)

}  // namespace tk::flash_attn::sm80
