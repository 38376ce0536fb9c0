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
    # GEGLU family. geglu: x [..., 2H] -> act(a) * b [..., H] with (a, b) the two halves of the
    # last dim (swapped when swap_halves); activation is "gelu_tanh", "gelu" or "silu". gelu:
    # elementwise, approximate "tanh" or "none". Out ops take contiguous tensors: geglu x and dx
    # [rows, 2H], y and dy [rows, H]; gelu any shape.
    "geglu_fwd_out": "(Tensor(a!) y, Tensor x, str activation, bool swap_halves) -> ()",
    "geglu_bwd_out": (
        "(Tensor(a!) dx, Tensor dy, Tensor x, str activation, bool swap_halves) -> ()"
    ),
    "gelu_fwd_out": "(Tensor(a!) y, Tensor x, str approximate) -> ()",
    "gelu_bwd_out": "(Tensor(a!) dx, Tensor dy, Tensor x, str approximate) -> ()",
    "geglu": "(Tensor x, str activation, bool swap_halves) -> Tensor",
    "geglu_backward": "(Tensor dy, Tensor x, str activation, bool swap_halves) -> Tensor",
    "gelu": "(Tensor x, str approximate) -> Tensor",
    "gelu_backward": "(Tensor dy, Tensor x, str approximate) -> Tensor",
    # RoPE. q, k: [B, S, H, D] (layout "bshd") or [B, H, S, D] ("bhsd"), any strides with a
    # contiguous last dim; cos, sin: [S, R/2] or [B, S, R/2], or tables [P, R/2] read at
    # `positions`; dims R..D pass through. k_out / the second output are absent / empty (numel 0)
    # when k is None. conjugate rotates by -angle (the backward).
    "rope_fwd_out": (
        "(Tensor(a!) q_out, Tensor(b!)? k_out, Tensor q, Tensor? k, Tensor cos, Tensor sin,"
        " Tensor? positions, str layout, bool interleaved, bool conjugate) -> ()"
    ),
    "rope_inplace": (
        "(Tensor(a!) q, Tensor(b!)? k, Tensor cos, Tensor sin, Tensor? positions, str layout,"
        " bool interleaved, bool conjugate) -> ()"
    ),
    "rope": (
        "(Tensor q, Tensor? k, Tensor cos, Tensor sin, Tensor? positions, str layout,"
        " bool interleaved, bool conjugate) -> (Tensor, Tensor)"
    ),
    # RoPE 3D (video): x [B, S, heads, D] ("bshd") or [B, heads, S, D] ("bhsd") with S = T*H*W;
    # grid (T, H, W), split (d_t, d_h, d_w) even widths along D (dims past their sum pass
    # through), per-axis position scale; angles computed in the kernel.
    "rope3d_fwd_out": (
        "(Tensor(a!) out, Tensor x, int[] grid, int[] split, float theta, float[] scale,"
        " str layout, bool interleaved, bool conjugate) -> ()"
    ),
    "rope3d": (
        "(Tensor x, int[] grid, int[] split, float theta, float[] scale, str layout,"
        " bool interleaved, bool conjugate) -> Tensor"
    ),
    # AdaLN backends. x, branch, z and their gradients: [B, S, D]. scale, shift, gate and their
    # gradients: [B, D] (per sample) or [B, S, D] (per token), each independently; a `*_bwd_out`
    # gradient's shape says its tensor's layout. mean and rstd: fp32 [B, S]; mean is 0 for
    # norm="rms". z (gated) is x + gate * branch rounded to x's dtype, the tensor normalized.
    "adaln_fwd_out": (
        "(Tensor(a!) y, Tensor(b!)? z, Tensor(c!) mean, Tensor(d!) rstd, Tensor x,"
        " Tensor? branch, Tensor? gate, Tensor scale, Tensor shift, Tensor? weight, float eps,"
        " str norm) -> ()"
    ),
    "adaln_bwd_out": (
        "(Tensor(a!) dx, Tensor(b!) dscale, Tensor(c!) dshift, Tensor(d!)? dweight,"
        " Tensor(e!)? dbranch, Tensor(f!)? dgate, Tensor dy, Tensor? dz, Tensor z,"
        " Tensor? branch, Tensor? gate, Tensor scale, Tensor? weight, Tensor mean, Tensor rstd,"
        " str norm) -> ()"
    ),
    # AdaLN functional ops (autograd + fake); norm is "rms" or "layer". scale, shift and gate
    # may also be [B, 1, D] (per sample). adaln returns (y, mean, rstd), adaln_gated
    # (y, z, mean, rstd). adaln_backward returns (dx, dscale, dshift, dweight, dbranch, dgate):
    # dscale and dgate in scale's and gate's shapes, dshift [B, D], or empty if shift_per_token
    # (the gradient of a per-token shift is dy itself: autograd passes dy on, as for an addition;
    # adaln_bwd_out takes such an empty dshift too, or a [B, S, D] one to copy dy into); dweight
    # empty unless want_dweight, dbranch and dgate empty unless gated.
    "adaln": (
        "(Tensor x, Tensor scale, Tensor shift, Tensor? weight, float eps, str norm)"
        " -> (Tensor, Tensor, Tensor)"
    ),
    "adaln_gated": (
        "(Tensor x, Tensor branch, Tensor gate, Tensor scale, Tensor shift, Tensor? weight,"
        " float eps, str norm) -> (Tensor, Tensor, Tensor, Tensor)"
    ),
    "adaln_backward": (
        "(Tensor dy, Tensor? dz, Tensor z, Tensor? branch, Tensor? gate, Tensor scale,"
        " bool shift_per_token, Tensor? weight, Tensor mean, Tensor rstd, str norm,"
        " bool want_dweight) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)"
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
