// Exact attention forward and backward on the CPU: tiled, online softmax, fp32 math, OpenMP.
//
// Forward: one task per (sequence, query head, block of kFwdBlockRows queries). The task walks the
// keys its rows may see in blocks of kBlockKeys (converted to fp32 once per block and reused by
// every row of the task) and keeps, per row, the running max m, the running sum l and the
// unnormalized output: no [Sq, Sk] score matrix is ever formed. Every product (the block's
// scores Q K^T with K held transposed, P V, dP, and the gradient updates dQ += dS K,
// dV += P^T dout, dK += dS^T Q) is a register-tiled block product (gemm), so each vector load
// feeds several FMAs.
//
// Backward, deterministic for any thread count (every output element is written by one task,
// summing in a fixed order, and the form below depends on the problem only): first
// delta[i] = dot(dout[i], out[i]) for every (query head, row); then, with at least
// kMinKeyHeadTasks (sequence, key head) pairs, one task per pair walking its key blocks in
// order, each block's dK and dV over the group's query heads and the rows that see it, and
// dQ += dS K into the task's fp32 dQ (five products per step); with fewer pairs, two passes
// that recompute the scores (seven products per step) but parallelize within a head:
//   dq: one task per (sequence, query head, block of rows), walking key blocks in order;
//   dk, dv: one task per (sequence, key head, block of keys), walking the group's query heads
//   and then the blocks of rows that see the block, in order.
// Probabilities are recomputed from lse. Window bounds make every row's allowed keys one
// contiguous range [key_begin(i), key_end(i)), so no mask is evaluated per element.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "_common/cpu_convert.h"
#include "_common/cpu_math.h"
#include "_common/status.h"
#include "flash_attn/flash_attn.h"

namespace tk::flash_attn {
namespace {

using cpu::BFloat16;
using cpu::Float16;
using cpu::from_float;
using cpu::to_float;

using cpu::exp_approx;

// The task bodies (fwd_block, bwd_dq_block, bwd_dkdv_block) are TK_CPU_CLONES (per x86-64
// level; the v4 clone took the fp32 forward+backward [1, 1024, 8, 64] from 80.9 to 47.3 ms
// against v3 on a 2-core AVX-512 machine); the vector helpers they call are TK_CPU_INLINE. The
// softmax exponents (at most about 0) go through exp_approx.

constexpr int64_t kBlockRows = 64;
// The forward's row blocks are twice as tall: each key block is loaded (K transposed) once per
// 128 rows instead of 64 (2-core AVX-512 machine, fp32 [1, 1024, 8, 64]: 15.3 -> 13.6 ms; the
// backward with 128 was 1.3x slower).
constexpr int64_t kFwdBlockRows = 128;
constexpr int64_t kBlockKeys = 64;
// Below this many score elements (rows x keys x heads) a launch runs on the calling thread.
constexpr int64_t kMinWorkForThreads = 1 << 16;
// The backward runs one task per (sequence, key head) from this many of them: enough to keep
// the threads of a small machine busy (2 cores: [1, 2048, 8, 128] fp32 forward+backward
// 358 -> 257 ms against the per-block tasks).
constexpr int64_t kMinKeyHeadTasks = 8;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// One sequence: its batch index (addressing of the batched layout; 0 in varlen) and where its
// rows start in the varlen layout (0 in batched).
struct Sequence {
  int64_t b = 0;
  int64_t q_start = 0;
  int64_t q_len = 0;
  int64_t k_start = 0;
  int64_t k_len = 0;
};

// The allowed key range of each query row, and the inverse: the rows that see a key range.
struct Window {
  int64_t left;
  int64_t right;
  int64_t diag;  // k_len - q_len: causal aligned to the bottom right
  int64_t q_len;
  int64_t k_len;

  int64_t key_begin(int64_t i) const { return left < 0 ? 0 : std::max<int64_t>(0, i + diag - left); }
  int64_t key_end(int64_t i) const {
    return right < 0 ? k_len : std::min(k_len, i + diag + right + 1);
  }
  // Rows i with [key_begin(i), key_end(i)) meeting [n0, n1), n0 < n1.
  int64_t query_begin(int64_t n0) const {
    return right < 0 ? 0 : std::max<int64_t>(0, n0 - diag - right);
  }
  int64_t query_end(int64_t n1) const {
    return left < 0 ? q_len : std::min(q_len, n1 - diag + left);
  }
};

Window window_of(const Problem& p, const Sequence& s) {
  return {p.window_left, effective_window_right(p.causal, p.window_right), s.k_len - s.q_len,
          s.q_len, s.k_len};
}

int64_t blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// Element offsets: strided inputs, and the contiguous out/dq ([rows, heads, head_dim]), dk/dv
// and lse/delta ([batch, heads_q, seqlen_q] or [heads_q, total_q]).
int64_t strided(const Strides& s, int64_t b, int64_t row, int64_t head) {
  return b * s.batch + row * s.row + head * s.head;
}

int64_t lse_index(const Problem& p, const Sequence& s, int64_t head, int64_t i) {
  return (s.b * p.heads_q + head) * p.seqlen_q + s.q_start + i;
}

int64_t q_row_offset(const Problem& p, const Sequence& s, int64_t head, int64_t i) {
  return ((s.b * p.seqlen_q + s.q_start + i) * p.heads_q + head) * p.head_dim;
}

int64_t k_row_offset(const Problem& p, const Sequence& s, int64_t head, int64_t j) {
  return ((s.b * p.seqlen_k + s.k_start + j) * p.heads_k + head) * p.head_dim;
}

// The row as floats: the input itself when T is float, else converted into `buffer`.
template <typename T>
TK_CPU_INLINE const float* row_as_float(const T* row, float* buffer, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return row;
  } else {
#pragma omp simd
    for (int64_t d = 0; d < n; ++d) buffer[d] = to_float(row[d]);
    return buffer;
  }
}

template <typename T>
TK_CPU_INLINE void store_row(T* out, const float* values, float scale, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d) out[d] = from_float<T>(values[d] * scale);
}

TK_CPU_INLINE float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t d = 0; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// Rows [first, first + count) of one head of a strided [.., rows, heads, head_dim] tensor,
// transposed into one fp32 key block: t[d * kBlockKeys + r].
template <typename T>
TK_CPU_INLINE void load_rows_transposed(const T* base, const Strides& strides,
                                        const Sequence& s, int64_t start, int64_t head,
                                        int64_t first, int64_t count, int64_t head_dim,
                                        float* t) {
  for (int64_t r = 0; r < count; ++r) {
    const T* row = base + strided(strides, s.b, start + first + r, head);
    for (int64_t d = 0; d < head_dim; ++d) t[d * kBlockKeys + r] = to_float(row[d]);
  }
}

// c = (accumulate ? c : 0) + a b for rows [0, rows) (a multiple of kTileRows) and columns
// [0, cols) (a multiple of 16) over `depth`: a [rows][lda], b [depth][ldb], c [rows][ldc], fp32
// row-major. Each kTileRows x kCols tile of c stays in registers while the depth loop streams a
// and b, so each loaded b vector feeds kTileRows FMAs (an axpy per row feeds 1). Where the
// x86-64-v4 clone runs (AVX-512, 32 vector registers) tiles are 4 x 64, sixteen accumulators,
// enough to cover the FMA latency; elsewhere 4 x 16 (4 x 64 would need 32 of AVX2's 16
// registers). On a 2-core AVX-512 machine, fp32 [1, 1024, 8, 64], 4 x 16 -> 4 x 64: forward
// 17.8 -> 15.9 ms, backward 36.1 -> 30.4 ms; 8 x 32 tiles were 1.6x slower than 4 x 16, 8 x 16
// 2.2x (the tile left the registers).
constexpr int64_t kTileRows = 4;
constexpr int64_t kTileCols = 16;
constexpr int64_t kWideTileCols = 64;

// kATransposed: a is stored [depth][lda], a(r, k) at a[k * lda + r].
template <int64_t kCols, bool kATransposed>
TK_CPU_INLINE void gemm_tiles(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                              int64_t ldc, int64_t rows, int64_t col_begin, int64_t col_end,
                              int64_t depth, bool accumulate) {
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
    for (int64_t c0 = col_begin; c0 < col_end; c0 += kCols) {
      float tile[kTileRows][kCols];
      for (int64_t r = 0; r < kTileRows; ++r) {
#pragma omp simd
        for (int64_t j = 0; j < kCols; ++j) {
          tile[r][j] = accumulate ? c[(r0 + r) * ldc + c0 + j] : 0.0f;
        }
      }
      for (int64_t k = 0; k < depth; ++k) {
        const float* b_row = b + k * ldb + c0;
#pragma GCC unroll 4
        for (int64_t r = 0; r < kTileRows; ++r) {
          const float a_rk = kATransposed ? a[k * lda + r0 + r] : a[(r0 + r) * lda + k];
#pragma omp simd
          for (int64_t j = 0; j < kCols; ++j) tile[r][j] += a_rk * b_row[j];
        }
      }
      for (int64_t r = 0; r < kTileRows; ++r) {
#pragma omp simd
        for (int64_t j = 0; j < kCols; ++j) c[(r0 + r) * ldc + c0 + j] = tile[r][j];
      }
    }
  }
}

template <bool kATransposed = false>
TK_CPU_INLINE void gemm(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                        int64_t ldc, int64_t rows, int64_t cols, int64_t depth, bool accumulate) {
  const int64_t wide = cpu::runs_x86_64_v4() ? cols / kWideTileCols * kWideTileCols : 0;
  gemm_tiles<kWideTileCols, kATransposed>(a, lda, b, ldb, c, ldc, rows, 0, wide, depth,
                                          accumulate);
  gemm_tiles<kTileCols, kATransposed>(a, lda, b, ldb, c, ldc, rows, wide, cols, depth,
                                      accumulate);
}

// c (+)= a^T b with a stored [depth][lda] (its rows are c's depth): gemm reading a transposed.
TK_CPU_INLINE void gemm_at(const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                           int64_t ldc, int64_t rows, int64_t cols, int64_t depth,
                           bool accumulate) {
  gemm<true>(a, lda, b, ldb, c, ldc, rows, cols, depth, accumulate);
}

// Rows [first, first + count) of one head as a contiguous fp32 block [padded][head_dim], rows
// past count zero.
template <typename T>
TK_CPU_INLINE void load_block(const T* base, const Strides& strides, const Sequence& s,
                              int64_t start, int64_t head, int64_t first, int64_t count,
                              int64_t padded, int64_t head_dim, float* block) {
  for (int64_t r = 0; r < count; ++r) {
    const T* row = base + strided(strides, s.b, start + first + r, head);
#pragma omp simd
    for (int64_t d = 0; d < head_dim; ++d) block[r * head_dim + d] = to_float(row[d]);
  }
  std::fill(block + count * head_dim, block + padded * head_dim, 0.0f);
}

// Per-thread buffers of every pass.
struct Workspace {
  explicit Workspace(int64_t head_dim)
      : q(kFwdBlockRows * head_dim), dout(kBlockRows * head_dim), k(kBlockKeys * head_dim),
        k_t(head_dim * kBlockKeys), v_t(head_dim * kBlockKeys),
        acc(std::max(kFwdBlockRows, kBlockKeys) * head_dim), acc2(kBlockKeys * head_dim),
        m(kFwdBlockRows), l(kFwdBlockRows), probs(kFwdBlockRows * kBlockKeys),
        dprobs(kBlockRows * kBlockKeys) {}

  std::vector<float> q, dout, k, k_t, v_t, acc, acc2, m, l, probs, dprobs;

  // The forward's K^T and V of one (sequence, key head) in fp32, K^T in key blocks
  // [block][head_dim][kBlockKeys] and V [keys][head_dim]. A key block's scores read one
  // contiguous [head_dim][kBlockKeys] of K^T: with K^T [head_dim][keys] their rows were 8 KB
  // apart at 2048 keys (fp32 forward, 2 cores, both builds in one process, 4 alternating rounds:
  // [1, 2048, 8, 128] 101.0 -> 91.5 ms, causal 57.4 -> 52.1, window (300, 0) 24.9 -> 23.5,
  // [1, 1024, 8, 64] 13.3 -> 12.9). Both are made once for the query blocks of that head this
  // thread takes in a row instead of once per query block and key block (fp32 forward on 2
  // cores, four runs each: [1, 1024, 8, 64] 14.4-14.8 -> 13.2-13.6 ms for K^T alone, causal
  // 8.1-8.4 -> 7.9-8.0, [1, 2048, 8, 128] 102.4-103.6 -> 99.9-100.5); fp32 V read in place
  // instead (rows heads * head_dim apart) made that forward 1.07x-1.12x slower. The keys past
  // the last are zero. held_b, held_k_start and held_kv_head say which (sequence, key head) is
  // held: indices, not addresses, since K may be broadcast over heads or batch (stride 0) while
  // V is not.
  std::vector<float> head_k_t, head_v;
  int64_t held_b = -1;
  int64_t held_k_start = -1;
  int64_t held_kv_head = -1;

  template <typename T>
  void hold_head(const FwdArgs& a, const Sequence& s, int64_t kv_head) {
    if (s.b == held_b && s.k_start == held_k_start && kv_head == held_kv_head) return;
    const int64_t head_dim = a.problem.head_dim;
    head_k_t.assign(static_cast<size_t>(blocks(s.k_len, kBlockKeys) * head_dim * kBlockKeys),
                    0.0f);
    for (int64_t n0 = 0; n0 < s.k_len; n0 += kBlockKeys) {
      load_rows_transposed(static_cast<const T*>(a.k), a.k_strides, s, s.k_start, kv_head, n0,
                           std::min(kBlockKeys, s.k_len - n0), head_dim,
                           head_k_t.data() + n0 * head_dim);
    }
    head_v.resize(static_cast<size_t>(s.k_len * head_dim));
    load_block(static_cast<const T*>(a.v), a.v_strides, s, s.k_start, kv_head, 0, s.k_len,
               s.k_len, head_dim, head_v.data());
    held_b = s.b;
    held_k_start = s.k_start;
    held_kv_head = kv_head;
  }
};

// ---------------------------------------------------------------- sequences and checks

Status check_problem(const Problem& p) {
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    return Status::Error(StatusCode::kUnsupportedDType, "flash_attn: unknown dtype");
  }
  return check_problem_shape(p);
}

Status check_cu_seqlens(const int32_t* cu, int64_t batch, int64_t total, int64_t max_seqlen,
                        const char* not_monotonic, const char* wrong_ends, const char* too_long) {
  if (cu[0] != 0 || cu[batch] != total) return Status::Error(StatusCode::kInvalidArgument, wrong_ends);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = static_cast<int64_t>(cu[b + 1]) - cu[b];
    if (length < 0) return Status::Error(StatusCode::kInvalidArgument, not_monotonic);
    if (length > max_seqlen) return Status::Error(StatusCode::kInvalidArgument, too_long);
  }
  return Status::Ok();
}

Status sequences_of(const Problem& p, std::vector<Sequence>& out) {
  out.assign(static_cast<size_t>(p.batch), Sequence{});
  if (p.cu_seqlens_q == nullptr) {
    for (int64_t b = 0; b < p.batch; ++b) out[b] = {b, 0, p.seqlen_q, 0, p.seqlen_k};
    return Status::Ok();
  }
  if (Status status = check_cu_seqlens(
          p.cu_seqlens_q, p.batch, p.seqlen_q, p.max_seqlen_q,
          "flash_attn: cu_seqlens_q must be non-decreasing",
          "flash_attn: cu_seqlens_q must start at 0 and end at total_q (q.shape[0])",
          "flash_attn: max_seqlen_q is smaller than a sequence of cu_seqlens_q");
      !status.ok()) {
    return status;
  }
  if (Status status = check_cu_seqlens(
          p.cu_seqlens_k, p.batch, p.seqlen_k, p.max_seqlen_k,
          "flash_attn: cu_seqlens_k must be non-decreasing",
          "flash_attn: cu_seqlens_k must start at 0 and end at total_k (k.shape[0])",
          "flash_attn: max_seqlen_k is smaller than a sequence of cu_seqlens_k");
      !status.ok()) {
    return status;
  }
  for (int64_t b = 0; b < p.batch; ++b) {
    out[b] = {0, p.cu_seqlens_q[b], static_cast<int64_t>(p.cu_seqlens_q[b + 1]) - p.cu_seqlens_q[b],
              p.cu_seqlens_k[b], static_cast<int64_t>(p.cu_seqlens_k[b + 1]) - p.cu_seqlens_k[b]};
  }
  return Status::Ok();
}

int64_t longest(const std::vector<Sequence>& seqs, bool keys) {
  int64_t n = 0;
  for (const Sequence& s : seqs) n = std::max(n, keys ? s.k_len : s.q_len);
  return n;
}

// Tasks are (sequence, head, block) flattened; blocks past a sequence's end are empty tasks.
struct TaskGrid {
  int64_t heads;
  int64_t blocks_per_seq;
  int64_t count;
};

TaskGrid task_grid(const std::vector<Sequence>& seqs, int64_t heads, int64_t longest_len,
                   int64_t block) {
  const int64_t per_seq = blocks(longest_len, block);
  return {heads, per_seq, static_cast<int64_t>(seqs.size()) * heads * per_seq};
}

bool use_threads(const Problem& p) {
  return p.seqlen_q * std::max<int64_t>(p.seqlen_k, 1) * p.heads_q >= kMinWorkForThreads;
}

// ---------------------------------------------------------------- forward

template <typename T>
TK_CPU_CLONES void fwd_block(const FwdArgs& a, const Sequence& s, int64_t head, int64_t r0,
                             Workspace& ws) {
  const Problem& p = a.problem;
  const int64_t D = p.head_dim;
  const int64_t kv_head = head / (p.heads_q / p.heads_k);
  const Window w = window_of(p, s);
  const int64_t rows = std::min(kFwdBlockRows, s.q_len - r0);
  const float scale = p.softmax_scale;
  float* acc = ws.acc.data();
  float* m = ws.m.data();
  float* l = ws.l.data();

  // The products run on whole register tiles: rows rounded up, the padding rows zero.
  const int64_t tile_rows = (rows + kTileRows - 1) / kTileRows * kTileRows;
  float* q = ws.q.data();      // [tile_rows][D]
  ws.hold_head<T>(a, s, kv_head);
  const float* k_t = ws.head_k_t.data();  // [key block][D][kBlockKeys]
  const float* v = ws.head_v.data();      // [keys][D]
  float* probs = ws.probs.data();  // [tile_rows][kBlockKeys]
  load_block(static_cast<const T*>(a.q), a.q_strides, s, s.q_start, head, r0, rows, tile_rows,
             D, q);
  std::fill(acc, acc + tile_rows * D, 0.0f);
  std::fill(m, m + rows, kNegInf);
  std::fill(l, l + rows, 0.0f);

  // key_begin and key_end are non-decreasing in i: the block's union range, walked in whole
  // key blocks of k_t (keys outside a row's range get probability 0 below).
  const int64_t keys_begin = w.key_begin(r0) / kBlockKeys * kBlockKeys;
  const int64_t keys_end = w.key_end(r0 + rows - 1);
  for (int64_t n0 = keys_begin; n0 < keys_end; n0 += kBlockKeys) {
    const int64_t n1 = std::min(n0 + kBlockKeys, keys_end);
    const int64_t keys = n1 - n0;
    // Scores of every row against the whole block (keys past the sequence's end are zero).
    gemm(q, D, k_t + n0 * D, kBlockKeys, probs, kBlockKeys, tile_rows, kBlockKeys, D, false);
    for (int64_t r = 0; r < tile_rows; ++r) {
      float* row = probs + r * kBlockKeys;
      const int64_t i = r0 + r;
      const int64_t j0 = r < rows ? std::max(n0, w.key_begin(i)) - n0 : 0;
      const int64_t j1 = r < rows ? std::min(n1, w.key_end(i)) - n0 : 0;
      if (j0 >= j1) {
        std::fill(row, row + kBlockKeys, 0.0f);
        continue;
      }
      float block_max = kNegInf;
#pragma omp simd reduction(max : block_max)
      for (int64_t j = j0; j < j1; ++j) block_max = std::max(block_max, row[j] * scale);
      // block_max is finite (at least one key), so m_new is too and alpha is 0 on the first block.
      const float m_new = std::max(m[r], block_max);
      const float alpha = std::exp(m[r] - m_new);
      float* acc_row = acc + r * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) acc_row[d] *= alpha;
      float sum = 0.0f;
      std::fill(row, row + j0, 0.0f);
#pragma omp simd reduction(+ : sum)
      for (int64_t j = j0; j < j1; ++j) {
        row[j] = exp_approx(row[j] * scale - m_new);
        sum += row[j];
      }
      std::fill(row + j1, row + kBlockKeys, 0.0f);
      m[r] = m_new;
      l[r] = l[r] * alpha + sum;
    }
    gemm(probs, kBlockKeys, v + n0 * D, D, acc, D, tile_rows, D, keys, true);
  }

  T* out = static_cast<T*>(a.out);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r0 + r;
    const bool empty = l[r] == 0.0f;
    store_row(out + q_row_offset(p, s, head, i), acc + r * D, empty ? 0.0f : 1.0f / l[r], D);
    a.lse[lse_index(p, s, head, i)] = empty ? kNegInf : m[r] + std::log(l[r]);
  }
}

template <typename T>
void fwd_typed(const FwdArgs& a, const std::vector<Sequence>& seqs) {
  const Problem& p = a.problem;
  const TaskGrid grid = task_grid(seqs, p.heads_q, longest(seqs, false), kFwdBlockRows);
#pragma omp parallel if (use_threads(p))
  {
    Workspace ws(p.head_dim);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < grid.count; ++task) {
      const int64_t block = task % grid.blocks_per_seq;
      const int64_t head = (task / grid.blocks_per_seq) % grid.heads;
      const Sequence& s = seqs[task / (grid.blocks_per_seq * grid.heads)];
      if (block * kFwdBlockRows >= s.q_len) continue;
      fwd_block<T>(a, s, head, block * kFwdBlockRows, ws);
    }
  }
}

// ---------------------------------------------------------------- backward

// delta[i] = dot(dout[i], out[i]) in the lse layout.
template <typename T>
void bwd_delta(const BwdArgs& a, const std::vector<Sequence>& seqs, float* delta) {
  const Problem& p = a.problem;
  const int64_t D = p.head_dim;
  const TaskGrid grid = task_grid(seqs, p.heads_q, longest(seqs, false), kBlockRows);
#pragma omp parallel if (use_threads(p))
  {
    std::vector<float> dout_buffer(D), out_buffer(D);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < grid.count; ++task) {
      const int64_t block = task % grid.blocks_per_seq;
      const int64_t head = (task / grid.blocks_per_seq) % grid.heads;
      const Sequence& s = seqs[task / (grid.blocks_per_seq * grid.heads)];
      const int64_t end = std::min(s.q_len, (block + 1) * kBlockRows);
      for (int64_t i = block * kBlockRows; i < end; ++i) {
        const float* dout = row_as_float(
            static_cast<const T*>(a.dout) + strided(a.dout_strides, s.b, s.q_start + i, head),
            dout_buffer.data(), D);
        const float* out = row_as_float(static_cast<const T*>(a.out) + q_row_offset(p, s, head, i),
                                        out_buffer.data(), D);
        delta[lse_index(p, s, head, i)] = dot(dout, out, D);
      }
    }
  }
}

template <typename T>
TK_CPU_CLONES void bwd_dq_block(const BwdArgs& a, const Sequence& s, int64_t head, int64_t r0,
                                const float* delta, Workspace& ws) {
  const Problem& p = a.problem;
  const int64_t D = p.head_dim;
  const int64_t kv_head = head / (p.heads_q / p.heads_k);
  const Window w = window_of(p, s);
  const int64_t rows = std::min(kBlockRows, s.q_len - r0);
  const float scale = p.softmax_scale;
  const int64_t tile_rows = (rows + kTileRows - 1) / kTileRows * kTileRows;
  float* dq = ws.acc.data();
  float* q = ws.q.data();          // [tile_rows][D]
  float* dout = ws.dout.data();    // [tile_rows][D]
  float* k = ws.k.data();          // [kBlockKeys][D]
  float* k_t = ws.k_t.data();      // [D][kBlockKeys]
  float* v_t = ws.v_t.data();      // [D][kBlockKeys]
  float* probs = ws.probs.data();  // [tile_rows][kBlockKeys]: scores, then dS
  float* dp = ws.dprobs.data();    // [tile_rows][kBlockKeys]

  load_block(static_cast<const T*>(a.q), a.q_strides, s, s.q_start, head, r0, rows, tile_rows,
             D, q);
  load_block(static_cast<const T*>(a.dout), a.dout_strides, s, s.q_start, head, r0, rows,
             tile_rows, D, dout);
  std::fill(dq, dq + tile_rows * D, 0.0f);

  const int64_t keys_begin = w.key_begin(r0);
  const int64_t keys_end = w.key_end(r0 + rows - 1);
  for (int64_t n0 = keys_begin; n0 < keys_end; n0 += kBlockKeys) {
    const int64_t n1 = std::min(n0 + kBlockKeys, keys_end);
    const int64_t keys = n1 - n0;
    const T* k_in = static_cast<const T*>(a.k);
    load_block(k_in, a.k_strides, s, s.k_start, kv_head, n0, keys, kBlockKeys, D, k);
    load_rows_transposed(k_in, a.k_strides, s, s.k_start, kv_head, n0, keys, D, k_t);
    load_rows_transposed(static_cast<const T*>(a.v), a.v_strides, s, s.k_start, kv_head, n0,
                         keys, D, v_t);
    // Columns past `keys` are stale and outside every row's range: set to 0 below.
    gemm(q, D, k_t, kBlockKeys, probs, kBlockKeys, tile_rows, kBlockKeys, D, false);
    gemm(dout, D, v_t, kBlockKeys, dp, kBlockKeys, tile_rows, kBlockKeys, D, false);
    for (int64_t r = 0; r < tile_rows; ++r) {
      float* ds = probs + r * kBlockKeys;
      const int64_t i = r0 + r;
      const int64_t j0 = r < rows ? std::max(n0, w.key_begin(i)) - n0 : 0;
      const int64_t j1 = r < rows ? std::min(n1, w.key_end(i)) - n0 : 0;
      if (j0 >= j1) {
        std::fill(ds, ds + kBlockKeys, 0.0f);
        continue;
      }
      const float lse = a.lse[lse_index(p, s, head, i)];
      const float delta_i = delta[lse_index(p, s, head, i)];
      const float* dp_row = dp + r * kBlockKeys;
      std::fill(ds, ds + j0, 0.0f);
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        ds[j] = exp_approx(ds[j] * scale - lse) * (dp_row[j] - delta_i);
      }
      std::fill(ds + j1, ds + kBlockKeys, 0.0f);
    }
    gemm(probs, kBlockKeys, k, D, dq, D, tile_rows, D, keys, true);
  }
  T* dq_out = static_cast<T*>(a.dq);
  for (int64_t r = 0; r < rows; ++r) {
    store_row(dq_out + q_row_offset(p, s, head, r0 + r), dq + r * D, scale, D);
  }
}

// dK and dV of one key block (all query heads of its group); with `dq_acc` (the task's fp32 dQ
// of those heads, [group][dq_rows][D], rows padded to whole tiles) also dQ += dS K into it.
template <typename T>
TK_CPU_CLONES void bwd_dkdv_block(const BwdArgs& a, const Sequence& s, int64_t kv_head,
                                  int64_t n0, const float* delta, Workspace& ws,
                                  float* dq_acc = nullptr, int64_t dq_rows = 0) {
  const Problem& p = a.problem;
  const int64_t D = p.head_dim;
  const int64_t group = p.heads_q / p.heads_k;
  const Window w = window_of(p, s);
  const int64_t keys = std::min(kBlockKeys, s.k_len - n0);
  const int64_t n1 = n0 + keys;
  const float scale = p.softmax_scale;
  float* dk = ws.acc.data();            // [kBlockKeys][D]
  float* dv = ws.acc2.data();           // [kBlockKeys][D]
  float* q = ws.q.data();               // [kBlockRows][D]
  float* dout = ws.dout.data();         // [kBlockRows][D]
  float* k_t = ws.k_t.data();           // [D][kBlockKeys]
  float* v_t = ws.v_t.data();           // [D][kBlockKeys]
  float* probs = ws.probs.data();       // [kBlockRows][kBlockKeys]: scores, then P
  float* dp = ws.dprobs.data();         // [kBlockRows][kBlockKeys]: dP, then dS

  load_rows_transposed(static_cast<const T*>(a.k), a.k_strides, s, s.k_start, kv_head, n0, keys,
                       D, k_t);
  load_rows_transposed(static_cast<const T*>(a.v), a.v_strides, s, s.k_start, kv_head, n0, keys,
                       D, v_t);
  float* k = ws.k.data();  // [kBlockKeys][D], for dQ
  if (dq_acc != nullptr) {
    load_block(static_cast<const T*>(a.k), a.k_strides, s, s.k_start, kv_head, n0, keys,
               kBlockKeys, D, k);
  }
  std::fill(dk, dk + kBlockKeys * D, 0.0f);
  std::fill(dv, dv + kBlockKeys * D, 0.0f);

  // For each query head of the group, the rows that see the block, kBlockRows at a time.
  const int64_t rows_begin = w.query_begin(n0);
  const int64_t rows_end = w.query_end(n1);
  for (int64_t head = kv_head * group; head < (kv_head + 1) * group; ++head) {
    for (int64_t m0 = rows_begin; m0 < rows_end; m0 += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, rows_end - m0);
      const int64_t tile_rows = (rows + kTileRows - 1) / kTileRows * kTileRows;
      load_block(static_cast<const T*>(a.q), a.q_strides, s, s.q_start, head, m0, rows,
                 tile_rows, D, q);
      load_block(static_cast<const T*>(a.dout), a.dout_strides, s, s.q_start, head, m0, rows,
                 tile_rows, D, dout);
      gemm(q, D, k_t, kBlockKeys, probs, kBlockKeys, tile_rows, kBlockKeys, D, false);
      gemm(dout, D, v_t, kBlockKeys, dp, kBlockKeys, tile_rows, kBlockKeys, D, false);
      // P and dS in place, 0 outside each row's keys (columns past `keys` included). The
      // products below read them transposed where they need P^T and dS^T (storing those
      // transposed was a strided scatter per element).
      for (int64_t r = 0; r < tile_rows; ++r) {
        const int64_t i = m0 + r;
        const int64_t j0 = r < rows ? std::max(n0, w.key_begin(i)) - n0 : 0;
        const int64_t j1 = r < rows ? std::min(n1, w.key_end(i)) - n0 : 0;
        const float lse = r < rows ? a.lse[lse_index(p, s, head, i)] : 0.0f;
        const float delta_i = r < rows ? delta[lse_index(p, s, head, i)] : 0.0f;
        float* p_row = probs + r * kBlockKeys;
        float* ds_row = dp + r * kBlockKeys;
#pragma omp simd
        for (int64_t j = 0; j < kBlockKeys; ++j) {
          const bool allowed = j >= j0 && j < j1;
          const float prob = allowed ? exp_approx(p_row[j] * scale - lse) : 0.0f;
          ds_row[j] = allowed ? prob * (ds_row[j] - delta_i) : 0.0f;
          p_row[j] = prob;
        }
      }
      gemm_at(probs, kBlockKeys, dout, D, dv, D, kBlockKeys, D, tile_rows, true);
      gemm_at(dp, kBlockKeys, q, D, dk, D, kBlockKeys, D, tile_rows, true);
      if (dq_acc != nullptr) {
        // Rows past `rows` of the tile have dS 0: they add 0 to the next rows (or the padding).
        float* dq = dq_acc + ((head - kv_head * group) * dq_rows + m0) * D;
        gemm(dp, kBlockKeys, k, D, dq, D, tile_rows, D, keys, true);
      }
    }
  }
  T* dk_out = static_cast<T*>(a.dk);
  T* dv_out = static_cast<T*>(a.dv);
  for (int64_t r = 0; r < keys; ++r) {
    store_row(dk_out + k_row_offset(p, s, kv_head, n0 + r), dk + r * D, scale, D);
    store_row(dv_out + k_row_offset(p, s, kv_head, n0 + r), dv + r * D, 1.0f, D);
  }
}

// All of one (sequence, key head): its key blocks in order, each adding dS K into the fp32 dQ
// of the group's query heads (five block products per step instead of the seven of separate
// dq and dk/dv tasks; sequential, so the sums keep their order), then dQ stored.
template <typename T>
void bwd_kv_head(const BwdArgs& a, const Sequence& s, int64_t kv_head, const float* delta,
                 Workspace& ws, std::vector<float>& dq_acc) {
  const Problem& p = a.problem;
  const int64_t D = p.head_dim;
  const int64_t group = p.heads_q / p.heads_k;
  const int64_t dq_rows = s.q_len + kTileRows;
  dq_acc.assign(static_cast<size_t>(group * dq_rows * D), 0.0f);
  for (int64_t n0 = 0; n0 < s.k_len; n0 += kBlockKeys) {
    bwd_dkdv_block<T>(a, s, kv_head, n0, delta, ws, dq_acc.data(), dq_rows);
  }
  T* dq_out = static_cast<T*>(a.dq);
  for (int64_t h = 0; h < group; ++h) {
    const int64_t head = kv_head * group + h;
    for (int64_t i = 0; i < s.q_len; ++i) {
      store_row(dq_out + q_row_offset(p, s, head, i), dq_acc.data() + (h * dq_rows + i) * D,
                p.softmax_scale, D);
    }
  }
}

template <typename T>
void bwd_typed(const BwdArgs& a, const std::vector<Sequence>& seqs) {
  const Problem& p = a.problem;
  const int64_t lse_batches = p.cu_seqlens_q == nullptr ? p.batch : 1;
  std::vector<float> delta(static_cast<size_t>(lse_batches * p.heads_q * p.seqlen_q));
  bwd_delta<T>(a, seqs, delta.data());

  // One task per (sequence, key head) when there are at least kMinKeyHeadTasks of them; else dq
  // and dk/dv tasks per block (seven products per step, but parallel within a head). The
  // choice depends on the problem only, so the bits do not depend on the thread count.
  const int64_t kv_tasks = static_cast<int64_t>(seqs.size()) * p.heads_k;
  if (kv_tasks >= kMinKeyHeadTasks) {
#pragma omp parallel if (use_threads(p))
    {
      Workspace ws(p.head_dim);
      std::vector<float> dq_acc;
#pragma omp for schedule(dynamic)
      for (int64_t task = 0; task < kv_tasks; ++task) {
        bwd_kv_head<T>(a, seqs[task / p.heads_k], task % p.heads_k, delta.data(), ws, dq_acc);
      }
    }
    return;
  }

  const TaskGrid dq_grid = task_grid(seqs, p.heads_q, longest(seqs, false), kBlockRows);
  const TaskGrid kv_grid = task_grid(seqs, p.heads_k, longest(seqs, true), kBlockKeys);
#pragma omp parallel if (use_threads(p))
  {
    Workspace ws(p.head_dim);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < dq_grid.count; ++task) {
      const int64_t block = task % dq_grid.blocks_per_seq;
      const int64_t head = (task / dq_grid.blocks_per_seq) % dq_grid.heads;
      const Sequence& s = seqs[task / (dq_grid.blocks_per_seq * dq_grid.heads)];
      if (block * kBlockRows >= s.q_len) continue;
      bwd_dq_block<T>(a, s, head, block * kBlockRows, delta.data(), ws);
    }
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < kv_grid.count; ++task) {
      const int64_t block = task % kv_grid.blocks_per_seq;
      const int64_t kv_head = (task / kv_grid.blocks_per_seq) % kv_grid.heads;
      const Sequence& s = seqs[task / (kv_grid.blocks_per_seq * kv_grid.heads)];
      if (block * kBlockKeys >= s.k_len) continue;
      bwd_dkdv_block<T>(a, s, kv_head, block * kBlockKeys, delta.data(), ws);
    }
  }
}

// Rows of q (and out, lse, dq) and of k (v, dk, dv) over all sequences.
int64_t query_rows(const Problem& p) {
  return p.cu_seqlens_q != nullptr ? p.seqlen_q : p.batch * p.seqlen_q;
}

int64_t key_rows(const Problem& p) {
  return p.cu_seqlens_k != nullptr ? p.seqlen_k : p.batch * p.seqlen_k;
}

template <typename Fn>
void dispatch(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: fn(float{}); break;
    case DType::kFloat16: fn(Float16{}); break;
    case DType::kBFloat16: fn(BFloat16{}); break;
  }
}

}  // namespace

Status fwd_cpu(const FwdArgs& args) {
  if (Status status = check_problem(args.problem); !status.ok()) return status;
  std::vector<Sequence> seqs;
  if (Status status = sequences_of(args.problem, seqs); !status.ok()) return status;
  if (query_rows(args.problem) > 0 &&
      (args.out == nullptr || args.lse == nullptr || args.q == nullptr)) {
    return Status::Error(StatusCode::kInvalidArgument, "flash_attn: out, lse and q must not be null");
  }
  dispatch(args.problem.dtype, [&](auto tag) { fwd_typed<decltype(tag)>(args, seqs); });
  return Status::Ok();
}

Status bwd_cpu(const BwdArgs& args) {
  if (Status status = check_problem(args.problem); !status.ok()) return status;
  std::vector<Sequence> seqs;
  if (Status status = sequences_of(args.problem, seqs); !status.ok()) return status;
  if (query_rows(args.problem) > 0 && key_rows(args.problem) > 0 &&
      (args.dq == nullptr || args.dk == nullptr || args.dv == nullptr || args.dout == nullptr ||
       args.q == nullptr || args.k == nullptr || args.v == nullptr || args.out == nullptr ||
       args.lse == nullptr)) {
    return Status::Error(StatusCode::kInvalidArgument,
                         "flash_attn: backward tensors must not be null");
  }
  dispatch(args.problem.dtype, [&](auto tag) { bwd_typed<decltype(tag)>(args, seqs); });
  return Status::Ok();
}

}  // namespace tk::flash_attn
