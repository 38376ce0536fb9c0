// run_fwd / run_bwd of flash_attn_sm80_launch.h and flash_attn_sm90_launch.h on the emulator:
// the schedules of flash_attn_sm80_schedule.cuh and flash_attn_sm90_schedule.cuh (the GPU's
// kernels and grids), launched by emu::launch; and the CUDA runtime and driver calls the
// launchers make, answered for an emulated GPU of capability TK_EMULATED_SM (80 or 90;
// default 80), so that flash_attn_cuda.cu picks the kernels that GPU would run.
#include "flash_attn/flash_attn_sm80_ptx.cuh"  // the emulated ones, before the kernels
#include "flash_attn/flash_attn_sm90_ptx.cuh"
#include "flash_attn/flash_attn_sm90_wgmma.cuh"

#include <cstdlib>
#include <cstring>

#include "flash_attn/flash_attn_sm80_launch.h"
#include "flash_attn/flash_attn_sm80_schedule.cuh"
#include "flash_attn/flash_attn_sm90_launch.h"
#include "flash_attn/flash_attn_sm90_schedule.cuh"

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
    emu::launch(kernel, grid, kThreads, p);
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

namespace tk::flash_attn::sm90 {

alignas(1024) unsigned char smem_raw[232448];

struct EmulatedLauncher {
  template <typename Kernel, typename KernelParams>
  static Status launch(Kernel kernel, int smem_bytes, dim3 grid, int threads,
                       const KernelParams& params, cudaStream_t, bool = false) {
    if (smem_bytes > static_cast<int>(sizeof(smem_raw))) {
      return Status::Error(StatusCode::kInvalidArgument, "emulator: shared memory too small");
    }
    emu::launch(kernel, grid, threads, params);
    return Status::Ok();
  }

  static Status zero(void* bytes, int64_t count, cudaStream_t) {
    std::memset(bytes, 0, static_cast<size_t>(count));
    return Status::Ok();
  }
};

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream) {
  return sm90::schedule_fwd<EmulatedLauncher, T, kHeadDim>(p, stream);
}

template <typename T, int kHeadDim>
Status run_bwd(const Params& p, cudaStream_t stream) {
  return sm90::schedule_bwd<EmulatedLauncher, T, kHeadDim>(p, stream);
}

template Status run_fwd<__half, 64>(const Params&, cudaStream_t);
template Status run_fwd<__half, 128>(const Params&, cudaStream_t);
template Status run_fwd<__half, 192>(const Params&, cudaStream_t);
template Status run_fwd<__half, 256>(const Params&, cudaStream_t);
template Status run_fwd<__nv_bfloat16, 64>(const Params&, cudaStream_t);
template Status run_fwd<__nv_bfloat16, 128>(const Params&, cudaStream_t);
template Status run_fwd<__nv_bfloat16, 192>(const Params&, cudaStream_t);
template Status run_fwd<__nv_bfloat16, 256>(const Params&, cudaStream_t);
template Status run_bwd<__half, 64>(const Params&, cudaStream_t);
template Status run_bwd<__half, 128>(const Params&, cudaStream_t);
template Status run_bwd<__nv_bfloat16, 64>(const Params&, cudaStream_t);
template Status run_bwd<__nv_bfloat16, 128>(const Params&, cudaStream_t);
template Status run_bwd<__half, 256>(const Params&, cudaStream_t);
template Status run_bwd<__nv_bfloat16, 256>(const Params&, cudaStream_t);

// cuTensorMapEncodeTiled for the emulated TMA: keeps what tma_load_4d reads.
CUresult encode_tiled_emulated(CUtensorMap* map, CUtensorMapDataType, cuuint32_t rank,
                               void* data, const cuuint64_t* dims, const cuuint64_t* strides,
                               const cuuint32_t* box, const cuuint32_t*, CUtensorMapInterleave,
                               CUtensorMapSwizzle, CUtensorMapL2promotion,
                               CUtensorMapFloatOOBfill) {
  if (rank != 4) return CUDA_ERROR_INVALID_VALUE;
  EmulatedTensorMap m{static_cast<const unsigned char*>(data),
                      {dims[0], dims[1], dims[2], dims[3]},
                      {2, strides[0], strides[1], strides[2]},
                      {box[0], box[1], box[2], box[3]}};
  std::memset(map, 0, sizeof(*map));
  std::memcpy(map, &m, sizeof(m));
  return CUDA_SUCCESS;
}

}  // namespace tk::flash_attn::sm90

// Two multiprocessors: a persistent grid then gives its blocks several work items each, even at
// the tests' small shapes.
inline constexpr int kEmulatedMultiprocessors = 2;

extern "C" {

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
  const char* sm = std::getenv("TK_EMULATED_SM");
  const int capability = sm != nullptr ? std::atoi(sm) : 80;
  switch (attribute) {
    case cudaDevAttrComputeCapabilityMajor:
      *value = capability / 10;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = capability % 10;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = kEmulatedMultiprocessors;
      return cudaSuccess;
    default:
      return cudaErrorInvalidValue;
  }
}

const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** function, unsigned int,
                                             unsigned long long,
                                             cudaDriverEntryPointQueryResult* status) {
  const bool known = std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0;
  *function = known ? reinterpret_cast<void*>(&tk::flash_attn::sm90::encode_tiled_emulated)
                    : nullptr;
  if (status != nullptr) {
    *status = known ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
  }
  return cudaSuccess;
}

}  // extern "C"
