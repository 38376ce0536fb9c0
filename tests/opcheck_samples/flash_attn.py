"""opcheck samples of the FlashAttention ops (collected by tests/test_ops_registry.py).

Tiny shapes: under Triton's interpreter opcheck runs each op several times. CPU tensors are
fp32 (supported on CPU only); GPU tensors bf16 (the CUDA variant's sm_80 kernels and Triton).
"""

import torch


def samples(kernel, device) -> dict[str, list[tuple]]:
    """{op name: argument tuples} for every FlashAttention op."""
    dtype = torch.float32 if device == "cpu" else torch.bfloat16

    def t(*shape):
        return torch.randn(*shape, dtype=dtype, device=device)

    def grad(a):
        return a.clone().requires_grad_(True)

    batch, seqlen_q, seqlen_k, heads_q, heads_k, head_dim = 1, 5, 7, 2, 1, 64
    scale = head_dim**-0.5
    q, k, v = t(batch, seqlen_q, heads_q, head_dim), t(batch, seqlen_k, heads_k, head_dim), t(
        batch, seqlen_k, heads_k, head_dim)
    out, lse = kernel.ops.flash_attn(q, k, v, scale, True, -1, -1)
    dout = torch.randn_like(out)

    cu_q = torch.tensor([0, 2, 5], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, 4, 7], dtype=torch.int32, device=device)
    vq, vk, vv = q[0], k[0], v[0]
    vout, vlse = kernel.ops.flash_attn_varlen(vq, vk, vv, cu_q, cu_k, 3, 4, scale, False, -1, -1)

    def empty_lse(shape):
        return torch.empty(shape, dtype=torch.float32, device=device)

    return {
        "flash_attn_fwd_out": [
            (torch.empty_like(q), empty_lse((batch, heads_q, seqlen_q)), q, k, v, None, None, 0, 0,
             scale, True, -1, -1),
            (torch.empty_like(vq), empty_lse((heads_q, seqlen_q)), vq, vk, vv, cu_q, cu_k, 3, 4,
             scale, False, 2, 1),
        ],
        "flash_attn_bwd_out": [
            (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dout, q, k, v, out, lse,
             None, None, 0, 0, scale, True, -1, -1, True),
            (torch.empty_like(vq), torch.empty_like(vk), torch.empty_like(vv), dout[0], vq, vk, vv,
             vout, vlse, cu_q, cu_k, 3, 4, scale, False, -1, -1, False),
        ],
        "flash_attn": [(grad(q), grad(k), grad(v), 0.5, True, 3, -1)],
        "flash_attn_varlen": [
            (grad(vq), grad(vk), grad(vv), cu_q, cu_k, 3, 4, scale, True, -1, -1),
        ],
        "flash_attn_backward": [
            (dout, q, k, v, out, lse, None, None, 0, 0, scale, True, -1, -1, True),
            (dout[0], vq, vk, vv, vout, vlse, cu_q, cu_k, 3, 4, scale, False, -1, -1, False),
        ],
    }
