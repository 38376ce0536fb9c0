// run_fwd / run_bwd of flash_attn_sm80_launch.h on the emulator: the schedule of
// flash_attn_sm80_schedule.cuh (the GPU's kernels and grids), launched by emu::launch.
#include "flash_attn/flash_attn_sm80_ptx.cuh"  // the emulated one, before the kernels

#include "flash_attn/flash_attn_sm80_launch.h"
#include "flash_attn/flash_attn_sm80_schedule.cuh"

namespace tk::flash_attn::sm80 {

// The kernels' `extern __shared__` array: 227 KiB, the most a Hopper block may have.
alignas(16) unsigned char smem[232448];

// Runs a kernel of the schedule on the emulator, in place of a launch.
struct EmulatedLauncher {
  template <typename Kernel>
  static Status launch(Kernel kernel, int smem_bytes, dim3 grid, const Params& p, cudaStream_t) {
    if (smem_bytes > static_cast<int>(sizeof(smem))) {
      return Status::Error(StatusCode::kInvalidArgument, "emulator: shared memory too small");
    }
    emu::launch(kernel, grid, p);
    return Status::Ok();
  }
};

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream) {
  return schedule_fwd<EmulatedLauncher, T, kHeadDim>(p, stream);
}

template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream) {
  return schedule_bwd<EmulatedLauncher, T, kHeadDim>(p, stream);
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
