// What the sm_80 FlashAttention kernels read: the host API's arguments flattened into one
// struct passed by value, with the mask bounds already clamped. No CUDA headers.
#pragma once

#include <cstdint>

namespace tk::flash_attn::sm80 {

// A window bound that never binds. Sequence lengths are below kUnbounded, so every mask
// comparison (j - i against k_len - q_len -/+ a bound) stays inside int32.
inline constexpr int kUnbounded = 1 << 30;

inline constexpr float kLog2e = 1.4426950408889634f;

struct Params {
  // Inputs: any row/head/batch strides (in elements, multiples of 8: rows are copied with
  // 16-byte cp.async); batch strides are 0 in the varlen layout.
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* dout = nullptr;
  int64_t q_batch = 0, q_row = 0, q_head = 0;
  int64_t k_batch = 0, k_row = 0, k_head = 0;
  int64_t v_batch = 0, v_row = 0, v_head = 0;
  int64_t dout_batch = 0, dout_row = 0, dout_head = 0;

  // Contiguous tensors: out, dq [.., rows, heads_q, head_dim]; dk, dv [.., rows, heads_k,
  // head_dim]; lse, delta [batch, heads_q, seqlen_q] or [heads_q, total_q] (fp32).
  void* out = nullptr;    // out and lse: written by the forward, read by the backward
  float* lse = nullptr;
  float* delta = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  // fp32 in the layout below, or null: the sm_90a backward that sums dQ over key blocks
  // accumulates here (zeroed by the delta kernel) and then rounds into dq.
  float* dq_accum = nullptr;
  // The sm_90a forward's workspace for split query blocks (sm90::fwd_split_plan's bytes), or
  // null: none is split.
  void* fwd_split = nullptr;

  // Device pointers, or null for the batched layout. Trusted: not read on the host.
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  int batch = 0;
  int seqlen_q = 0;      // batched: every sequence's length; varlen: total rows
  int seqlen_k = 0;
  int max_seqlen_q = 0;  // the grid covers this many rows (keys) per sequence
  int max_seqlen_k = 0;
  int heads_q = 0;
  int heads_k = 0;
  int group = 1;         // heads_q / heads_k
  int window_left = kUnbounded;   // causal already folded into window_right
  int window_right = kUnbounded;
  float softmax_scale = 1.0f;
  float scale_log2 = 1.0f;        // softmax_scale * log2(e): scores go through exp2
};

// dq_accum: per (block of kDqAccumRows query rows of a sequence, query head) one tile of
// kDqAccumRows x head_dim floats, the head dim's two halves one after the other ([2][rows][head_dim
// / 2], the order of pairs in a row is the sm_90a kernel's), so that a consumer warpgroup's half
// of a step's dQ is one contiguous run, added by one bulk reduction. Rows past a sequence's end
// in its last block are padding, added to and never read. Batched sequence b starts at block
// b * ceil(seqlen_q / kDqAccumRows); varlen sequence b at block q_start / kDqAccumRows + b,
// where sequence b - 1's blocks have ended (floor(a / n) + ceil(l / n) <= floor((a + l) / n) + 1).
inline constexpr int kDqAccumRows = 64;

constexpr int64_t dq_accum_blocks_per_sequence(int64_t seqlen_q) {
  return (seqlen_q + kDqAccumRows - 1) / kDqAccumRows;
}

// The first tile of sequence b (q_start: its first row in the varlen layout).
constexpr int64_t dq_accum_first_block(bool varlen, int64_t seqlen_q, int64_t b, int64_t q_start) {
  return varlen ? q_start / kDqAccumRows + b : b * dq_accum_blocks_per_sequence(seqlen_q);
}

// Floats of dq_accum (seqlen_q: the total rows when varlen): its blocks end where a sequence
// after the last would start.
constexpr int64_t dq_accum_floats(bool varlen, int64_t batch, int64_t seqlen_q, int64_t heads_q,
                                  int64_t head_dim) {
  return dq_accum_first_block(varlen, seqlen_q, batch, seqlen_q) * kDqAccumRows * heads_q *
         head_dim;
}

}  // namespace tk::flash_attn::sm80
