// Runs fwd_cuda and then bwd_cuda (flash_attn_cuda.cu, kernels on the emulator) on a problem
// written by tests/test_flash_attn.py into a directory:
//   problem.txt  dtype(1 fp16, 2 bf16) head_dim batch seqlen_q seqlen_k max_seqlen_q
//                max_seqlen_k heads_q heads_k causal window_left window_right softmax_scale varlen
//                deterministic
//   q.bin k.bin v.bin dout.bin  contiguous, the layouts of flash_attn.h
//   cu_seqlens_q.bin cu_seqlens_k.bin  int32, when varlen
// and writes out.bin, lse.bin (fp32), dq.bin, dk.bin, dv.bin there. Exit status 1 with the
// launcher's message when it returns an error.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "flash_attn/flash_attn.h"

namespace {

using tk::flash_attn::BwdArgs;
using tk::flash_attn::FwdArgs;
using tk::flash_attn::Problem;
using tk::flash_attn::Strides;

std::vector<char> read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool failed(const tk::Status& status, const char* what) {
  if (status.ok()) return false;
  std::fprintf(stderr, "%s: %s\n", what, status.message);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
    return 2;
  }
  const std::string dir = std::string(argv[1]) + "/";
  Problem p;
  int dtype = 0, causal = 0, varlen = 0, deterministic = 0;
  std::ifstream(dir + "problem.txt") >> dtype >> p.head_dim >> p.batch >> p.seqlen_q >>
      p.seqlen_k >> p.max_seqlen_q >> p.max_seqlen_k >> p.heads_q >> p.heads_k >> causal >>
      p.window_left >> p.window_right >> p.softmax_scale >> varlen >> deterministic;
  p.dtype = dtype == 1 ? tk::DType::kFloat16 : tk::DType::kBFloat16;
  p.causal = causal != 0;
  std::vector<char> cu_q, cu_k;
  if (varlen) {
    cu_q = read(dir + "cu_seqlens_q.bin");
    cu_k = read(dir + "cu_seqlens_k.bin");
    p.cu_seqlens_q = reinterpret_cast<const int32_t*>(cu_q.data());
    p.cu_seqlens_k = reinterpret_cast<const int32_t*>(cu_k.data());
  }
  const int64_t q_row = p.heads_q * p.head_dim;
  const int64_t k_row = p.heads_k * p.head_dim;
  const Strides q_strides{varlen ? 0 : p.seqlen_q * q_row, q_row, p.head_dim};
  const Strides k_strides{varlen ? 0 : p.seqlen_k * k_row, k_row, p.head_dim};
  const int64_t rows_q = varlen ? p.seqlen_q : p.batch * p.seqlen_q;
  const int64_t rows_k = varlen ? p.seqlen_k : p.batch * p.seqlen_k;

  const std::vector<char> q = read(dir + "q.bin"), k = read(dir + "k.bin"), v = read(dir + "v.bin"),
                          dout = read(dir + "dout.bin");
  std::vector<char> out(rows_q * q_row * 2), lse(rows_q * p.heads_q * 4),
      delta(rows_q * p.heads_q * 4), dq(rows_q * q_row * 2), dk(rows_k * k_row * 2),
      dv(rows_k * k_row * 2);
  // Garbage, as an uninitialised workspace would be: the backward must zero it itself.
  std::vector<float> dq_accum(tk::flash_attn::bwd_cuda_dq_accum_floats(p), 1e30f);

  // Garbage here too: the forward zeroes the flags it uses.
  std::vector<float> split((tk::flash_attn::fwd_cuda_split_bytes(p) + 3) / 4, 1e30f);
  FwdArgs fwd;
  fwd.problem = p;
  if (!split.empty()) fwd.split_workspace = split.data();
  fwd.out = out.data();
  fwd.lse = reinterpret_cast<float*>(lse.data());
  fwd.q = q.data();
  fwd.k = k.data();
  fwd.v = v.data();
  fwd.q_strides = q_strides;
  fwd.k_strides = k_strides;
  fwd.v_strides = k_strides;
  if (failed(tk::flash_attn::fwd_cuda(fwd, nullptr), "fwd_cuda")) return 1;

  BwdArgs bwd;
  bwd.problem = p;
  bwd.dq = dq.data();
  bwd.dk = dk.data();
  bwd.dv = dv.data();
  bwd.dout = dout.data();
  bwd.q = q.data();
  bwd.k = k.data();
  bwd.v = v.data();
  bwd.out = out.data();
  bwd.lse = reinterpret_cast<const float*>(lse.data());
  bwd.delta = reinterpret_cast<float*>(delta.data());
  bwd.deterministic = deterministic != 0;
  if (tk::flash_attn::bwd_cuda_accumulates_dq(p, bwd.deterministic)) bwd.dq_accum = dq_accum.data();
  bwd.dout_strides = q_strides;
  bwd.q_strides = q_strides;
  bwd.k_strides = k_strides;
  bwd.v_strides = k_strides;
  if (failed(tk::flash_attn::bwd_cuda(bwd, nullptr), "bwd_cuda")) return 1;

  for (const auto& [name, bytes] : {std::pair{"out", &out}, std::pair{"lse", &lse},
                                    std::pair{"dq", &dq}, std::pair{"dk", &dk},
                                    std::pair{"dv", &dv}}) {
    write(dir + name + ".bin", *bytes);
  }
  return 0;
}
