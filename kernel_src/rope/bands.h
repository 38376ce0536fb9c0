// Host-side facts shared by the CUDA and CPU launchers of RoPE: the band table and the argument
// checks. Framework-free, no CUDA headers.
#pragma once

#include <climits>
#include <cstdint>

#include "_common/status.h"
#include "rope/rope.h"

namespace tk::rope {

inline constexpr int kMaxBands = 3;

// The bands of rot_dim, in pairs: band a covers pairs [pair_start[a], pair_start[a] + pairs[a]).
// 1D has one band (the whole rot_dim); 3D has t, h, w.
struct Bands {
  int count = 0;
  int pair_start[kMaxBands] = {0, 0, 0};
  int pairs[kMaxBands] = {0, 0, 0};
};

inline Bands one_band(int64_t rot_dim) {
  Bands bands;
  bands.count = 1;
  bands.pairs[0] = static_cast<int>(rot_dim / 2);
  return bands;
}

inline Bands grid_bands(const int64_t (&split)[3]) {
  Bands bands;
  bands.count = kMaxBands;
  int start = 0;
  for (int a = 0; a < kMaxBands; ++a) {
    bands.pair_start[a] = start;
    bands.pairs[a] = static_cast<int>(split[a] / 2);
    start += bands.pairs[a];
  }
  return bands;
}

inline bool rows_present(const Rows& rows) { return rows.heads > 0; }

inline Status check_rows(const Rows& rows, bool has_work, const char* missing_message) {
  if (rows.heads < 0 || rows.heads > INT_MAX) return invalid("rope: heads must be in [0, 2^31)");
  if (has_work && rows.heads > 0 && (rows.in == nullptr || rows.out == nullptr)) {
    return invalid(missing_message);
  }
  return Status::Ok();
}

inline Status check_common(const Common& x) {
  if (x.dtype != DType::kFloat32 && x.dtype != DType::kFloat16 && x.dtype != DType::kBFloat16) {
    return Status::Error(StatusCode::kUnsupportedDType,
                         "rope: dtype must be float32, float16 or bfloat16");
  }
  if (x.batch < 0 || x.seq < 0) return invalid("rope: batch and seq must be >= 0");
  if (x.head_dim < 1 || x.head_dim > INT_MAX) return invalid("rope: head_dim must be in [1, 2^31)");
  if (x.rot_dim < 2 || x.rot_dim % 2 != 0 || x.rot_dim > x.head_dim) {
    return invalid("rope: rot_dim must be even, >= 2 and <= head_dim");
  }
  const bool has_work = x.batch > 0 && x.seq > 0;
  if (Status s = check_rows(x.q, has_work, "rope: q and q_out must not be null"); !s.ok()) return s;
  if (Status s = check_rows(x.k, has_work, "rope: k and k_out must not be null"); !s.ok()) return s;
  if (x.q.heads + x.k.heads > INT_MAX) return invalid("rope: too many heads");
  return Status::Ok();
}

inline bool has_work(const Common& x) {
  return x.batch > 0 && x.seq > 0 && x.q.heads + x.k.heads > 0;
}

inline Status check_args(const Args& args) {
  if (Status s = check_common(args.x); !s.ok()) return s;
  if (!has_work(args.x)) return Status::Ok();
  if (args.cos == nullptr || args.sin == nullptr) return invalid("rope: cos and sin must not be null");
  if (args.positions != nullptr && args.table_rows < 1) {
    return invalid("rope: with positions the tables need at least one row");
  }
  return Status::Ok();
}

inline Status check_args(const Args3d& args) {
  if (Status s = check_common(args.x); !s.ok()) return s;
  if (args.x.k.heads != 0) return invalid("rope3d: takes one tensor (k.heads must be 0)");
  for (int a = 0; a < 3; ++a) {
    if (args.grid[a] < 1 || args.grid[a] > INT_MAX) return invalid("rope3d: grid sizes must be >= 1");
    if (args.split[a] < 0 || args.split[a] % 2 != 0) return invalid("rope3d: split entries must be even and >= 0");
  }
  if (args.split[0] + args.split[1] + args.split[2] != args.x.rot_dim) {
    return invalid("rope3d: split must sum to rot_dim");
  }
  // The product is formed only while it stays <= seq, so it cannot overflow.
  int64_t product = 1;
  for (int a = 0; a < 3; ++a) {
    if (args.grid[a] > args.x.seq / product) return invalid("rope3d: grid product must equal seq");
    product *= args.grid[a];
  }
  if (product != args.x.seq) return invalid("rope3d: grid product must equal seq");
  if (!(args.theta > 0.0)) return invalid("rope3d: theta must be > 0");
  return Status::Ok();
}

}  // namespace tk::rope
