// The sm_90a FlashAttention forward launcher declared in flash_attn_sm90_launch.h: builds the
// three TMA descriptors (cuTensorMapEncodeTiled, reached through the runtime's driver entry
// point, so the extension does not link libcuda), opts in to the shared memory and launches on
// the caller's stream. Included only by the generated instantiations/*.cu. Framework-free.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "_common/cuda_check.cuh"
#include "_common/status.h"
#include "flash_attn/flash_attn_sm80_launch.cuh"
#include "flash_attn/flash_attn_sm90_fwd.cuh"
#include "flash_attn/flash_attn_sm90_launch.h"

namespace tk::flash_attn::sm90 {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                 const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                 const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// cuTensorMapEncodeTiled as of the CUDA 12.0 driver API, looked up once.
inline EncodeTiled encode_tiled() {
  static const EncodeTiled function = [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult found;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000,
                                         cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      return EncodeTiled{nullptr};
    }
    return reinterpret_cast<EncodeTiled>(pointer);
  }();
  return function;
}

// A 4-D map over one input (element strides from Params; varlen: batch 1, `rows` all rows),
// read in boxes of 64 head-dim elements x `box_rows` rows of one head, 128-byte swizzled.
// `rows_first` is set when the row stride is the smaller of the two, which then comes first.
template <typename T>
Status encode_input(CUtensorMap* map, bool* rows_first, const void* data, int head_dim,
                    int heads, int rows, int batch, int64_t row_stride, int64_t head_stride,
                    int64_t batch_stride, int box_rows) {
  const EncodeTiled encode = encode_tiled();
  if (encode == nullptr) {
    return Status::Error(StatusCode::kCudaError,
                         "flash_attn: the CUDA driver has no cuTensorMapEncodeTiled (needs 12.0+)");
  }
  *rows_first = row_stride < head_stride;
  const int64_t inner_stride = *rows_first ? row_stride : head_stride;
  const int64_t outer_stride = *rows_first ? head_stride : row_stride;
  const int inner = *rows_first ? rows : heads;
  const int outer = *rows_first ? heads : rows;
  const int inner_box = *rows_first ? box_rows : 1;
  const int outer_box = *rows_first ? 1 : box_rows;
  // A batch of one (varlen) still needs a stride past the last row: the byte size of the rest.
  const int64_t last_stride =
      batch > 1 ? batch_stride : (outer_stride * outer > 0 ? outer_stride * outer : inner_stride);
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(inner),
                              static_cast<cuuint64_t>(outer), static_cast<cuuint64_t>(batch)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(inner_stride) * sizeof(T),
                                 static_cast<cuuint64_t>(outer_stride) * sizeof(T),
                                 static_cast<cuuint64_t>(last_stride) * sizeof(T)};
  const cuuint32_t box[4] = {static_cast<cuuint32_t>(kChunkElements),
                             static_cast<cuuint32_t>(inner_box),
                             static_cast<cuuint32_t>(outer_box), 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type = std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                             : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const CUresult result =
      encode(map, type, 4, const_cast<void*>(data), dims, strides, box, element_strides,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return invalid("flash_attn: the copy engine cannot address this q, k or v (the sm_90 "
                   "forward needs 16-byte aligned data and strides); pass contiguous tensors");
  }
  return Status::Ok();
}

template <typename T, int kHeadDim>
Status run_fwd(const Params& p, cudaStream_t stream) {
  using Shape = FwdShape<kHeadDim>;
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
  const auto kernel = fwd_kernel<T, kHeadDim>;
  if (Status s = sm80::allow_shared_memory(kernel, Shape::kSmemBytes); !s.ok()) return s;
  const dim3 grid = sm80::grid_of(p.max_seqlen_q, Shape::kRows, p.heads_q, p);
  kernel<<<grid, Shape::kThreads, Shape::kSmemBytes, stream>>>(fp);
  return check_last_launch();
}

}  // namespace tk::flash_attn::sm90
