// Host-side helpers every CUDA launcher uses: grid arithmetic and pointer alignment. No CUDA
// headers.
#pragma once

#include <climits>
#include <cstdint>
#include <initializer_list>

#include "_common/status.h"

namespace tk {

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// gridDim.x is at most 2^31 - 1: a kernel that walks its rows with a grid stride still covers
// them all from a capped grid (a grid that must not be capped is checked by its launcher).
inline unsigned grid_size(int64_t blocks) {
  return static_cast<unsigned>(blocks < INT_MAX ? blocks : INT_MAX);
}

inline bool all_aligned(std::initializer_list<const void*> pointers, int64_t bytes) {
  for (const void* pointer : pointers) {
    if (reinterpret_cast<uintptr_t>(pointer) % bytes != 0) return false;
  }
  return true;
}

// Widest access (16, 8, 4 or 2 bytes, at least one element) that every pointer and the row
// length in bytes allow. Null pointers count as aligned.
inline int common_vector_bytes(std::initializer_list<const void*> pointers, int64_t row_bytes,
                               int elem_bytes) {
  for (int bytes = 16; bytes > elem_bytes; bytes /= 2) {
    if (row_bytes % bytes == 0 && all_aligned(pointers, bytes)) return bytes;
  }
  return elem_bytes;
}

}  // namespace tk
