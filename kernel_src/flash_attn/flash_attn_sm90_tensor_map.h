// The shared-memory tile layout of the sm_90a FlashAttention kernels, the wgmma descriptors that
// read it, and the TMA descriptors (CUtensorMap) that write it, built on the host by
// cuTensorMapEncodeTiled, reached through the runtime's driver entry point so that the extension
// does not link libcuda. Framework-free.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "_common/status.h"

namespace tk::flash_attn::sm90 {

// The tile layout both sides agree on: TMA writes boxes of kChunkElements 16-bit columns (128
// bytes) with CU_TENSOR_MAP_SWIZZLE_128B, and wgmma reads them through 128-byte-swizzle
// descriptors; the swizzle repeats every kSwizzleBytes (8 rows), where every chunk starts.
inline constexpr int kChunkElements = 64;
inline constexpr int kSwizzleBytes = 1024;
// The shared memory one block may have on sm_90 (232448 bytes).
inline constexpr int kMaxBlockSmemBytes = 227 * 1024;

// Descriptor of a 128-byte-swizzled operand starting at `smem` (shared-memory address).
// K-major (A, and B of S = Q K^T): rows are M or N, 8-row groups 1024 bytes apart (stride byte
// offset); the leading byte offset is unused. N-major (B of O = P V, rows are K): 8-row groups
// along K 1024 bytes apart, and 64-column chunks along N `chunk_bytes` apart (leading byte
// offset). Offsets are encoded in 16-byte units; bits 62-63 = 1 select the 128-byte swizzle.
constexpr uint64_t smem_descriptor(uint32_t smem, uint32_t chunk_bytes) {
  return static_cast<uint64_t>((smem & 0x3FFFF) >> 4) |
         static_cast<uint64_t>(chunk_bytes >> 4) << 16 |
         static_cast<uint64_t>(kSwizzleBytes >> 4) << 32 | uint64_t{1} << 62;
}

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

// One input (q, k, v or dout) as encode_input takes it.
struct Input {
  const void* data;
  int heads;
  int rows;
  int64_t row_stride;
  int64_t head_stride;
  int64_t batch_stride;
};

// The maps of two inputs read in boxes of `box_rows` rows.
template <typename T, int kHeadDim>
Status encode_pair(CUtensorMap (&maps)[2], bool (&rows_first)[2], const Input (&inputs)[2],
                   int batch, int box_rows) {
  for (int t = 0; t < 2; ++t) {
    const Input& in = inputs[t];
    if (Status s = encode_input<T>(&maps[t], &rows_first[t], in.data, kHeadDim, in.heads,
                                   in.rows, batch, in.row_stride, in.head_stride,
                                   in.batch_stride, box_rows);
        !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

}  // namespace tk::flash_attn::sm90
