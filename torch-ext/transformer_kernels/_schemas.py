"""Every op schema of transformer_kernels, declared once.

`_register.py` defines these under the build's unique namespace. Native backends (the C++
CPU and CUDA code in the extension) only register implementations for the `*_out` ops, so a
C++ signature that disagrees with a schema here fails when the variant is imported.

Two layers per kernel:
- `*_out` ops write into caller-allocated tensors and return nothing; each backend implements
  them (C++ CPU/CUDA, Triton).
- functional ops validate, allocate and call the `*_out` op; they carry the fake
  implementation and the autograd formula, so torch.compile sees one opaque node.
"""

SCHEMAS: dict[str, str] = {
    # RMSNorm backends. rstd is fp32 with one value per row.
    "rms_norm_fwd_out": (
        "(Tensor(a!) y, Tensor(b!) rstd, Tensor x, Tensor? weight, float eps) -> ()"
    ),
    "rms_norm_add_fwd_out": (
        "(Tensor(a!) y, Tensor(b!) residual_out, Tensor(c!) rstd, Tensor x, Tensor residual,"
        " Tensor? weight, float eps) -> ()"
    ),
    "rms_norm_bwd_out": (
        "(Tensor(a!) dx, Tensor(b!)? dweight, Tensor dy, Tensor z, Tensor? weight, Tensor rstd,"
        " Tensor? dresidual) -> ()"
    ),
    # RMSNorm functional ops (autograd + fake). dweight is empty when not requested.
    "rms_norm": "(Tensor x, Tensor? weight, float eps) -> (Tensor, Tensor)",
    "rms_norm_add": (
        "(Tensor x, Tensor residual, Tensor? weight, float eps) -> (Tensor, Tensor, Tensor)"
    ),
    "rms_norm_backward": (
        "(Tensor dy, Tensor z, Tensor? weight, Tensor rstd, Tensor? dresidual,"
        " bool want_dweight) -> (Tensor, Tensor)"
    ),
    # FlashAttention backends. Batched when cu_seqlens are None: q/out [B, Sq, Hq, D],
    # k/v [B, Sk, Hk, D], lse fp32 [B, Hq, Sq] (max_seqlen ignored); varlen: q/out [total_q, Hq, D],
    # k/v [total_k, Hk, D], cu_seqlens int32 [B + 1], lse [Hq, total_q]. window -1: unbounded.
    "flash_attn_fwd_out": (
        "(Tensor(a!) out, Tensor(b!) lse, Tensor q, Tensor k, Tensor v, Tensor? cu_seqlens_q,"
        " Tensor? cu_seqlens_k, int max_seqlen_q, int max_seqlen_k, float softmax_scale,"
        " bool causal, int window_left, int window_right) -> ()"
    ),
    "flash_attn_bwd_out": (
        "(Tensor(a!) dq, Tensor(b!) dk, Tensor(c!) dv, Tensor dout, Tensor q, Tensor k, Tensor v,"
        " Tensor out, Tensor lse, Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, int max_seqlen_q,"
        " int max_seqlen_k, float softmax_scale, bool causal, int window_left, int window_right,"
        " bool deterministic) -> ()"
    ),
    # FlashAttention functional ops: (out, lse); lse is not differentiable.
    "flash_attn": (
        "(Tensor q, Tensor k, Tensor v, float softmax_scale, bool causal, int window_left,"
        " int window_right) -> (Tensor, Tensor)"
    ),
    "flash_attn_varlen": (
        "(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, Tensor cu_seqlens_k,"
        " int max_seqlen_q, int max_seqlen_k, float softmax_scale, bool causal,"
        " int window_left, int window_right) -> (Tensor, Tensor)"
    ),
    "flash_attn_backward": (
        "(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse,"
        " Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, int max_seqlen_q, int max_seqlen_k,"
        " float softmax_scale, bool causal, int window_left, int window_right,"
        " bool deterministic) -> (Tensor, Tensor, Tensor)"
    ),
}
