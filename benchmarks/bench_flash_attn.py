"""FlashAttention: ours (the Triton variant) beside SDPA's flash, cuDNN and efficient backends,
compiled FlexAttention and torch.compile of the reference.

    python -m benchmarks.bench_flash_attn [--quick] [--shapes 4x32x4096x128] [--direction fwd]

Shapes are (batch, heads, seqlen, head_dim); every case runs with and without a causal mask,
bf16 by default. Inputs are [B, H, S, D] (SDPA's layout; ours takes the transposed views, no
copy). Rates are TFLOP/s with FLOPs = 4*B*H*S*S*D forward, halved when causal, and 2.5x that
for the backward, as % of the bf16 matmul rate measured in the same run.

Ours is the Triton variant (build/torch-cuda); "ours-cuda" is the CUDA variant's kernels
(sm_90a wgmma/TMA on a Hopper GPU where the head dim has them, else sm_80 mma.sync), measured
when the loaded variant is the CUDA one. Backwards run as autograd does by default: the Triton
one and the sm_80 CUDA one compute dq in their own kernel (bitwise reproducible), the sm_90a
one sums dq with atomics ("ours-cuda-det": the same with the deterministic backward). Tile
configurations of the Triton kernels: tune_flash_attn_triton.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import OURS, REPO_ROOT, Bench, Case, Peer, main as harness_main

KERNEL = "flash_attn"
SHAPES = {
    "llm": [(4, 32, 4096, 128), (1, 24, 8192, 128)],
    "long": [(2, 16, 16384, 64)],
    # The largest head dim (issue 4's target: >= 1.0x SDPA-flash there too).
    "wide": [(4, 16, 4096, 256)],
}
QUICK_SHAPES = [(4, 32, 4096, 128)]
# The fp32 truth is computed over chunks of (batch x head) slices with at most this many score
# elements each, recomputed in the backward (checkpointing): [2, 16, 16384, 16384] fp32 scores
# alone would be 34 GB.
TRUTH_CHUNK_ELEMENTS = 1 << 28
# torch.compile of the reference keeps about this many fp32 [B, H, S, S] tensors alive for a
# backward; it is skipped when they do not fit in this fraction of the GPU's memory.
COMPILE_SCORE_TENSORS = 5
COMPILE_MEMORY_FRACTION = 0.8


def attention_flops(shape: tuple[int, ...], causal: bool, direction: str) -> int:
    """4*B*H*S*S*D forward (two matmuls of 2*S*S*D per head), halved when causal; the backward
    counts 2.5x the forward (five matmuls instead of two)."""
    batch, heads, seqlen, head_dim = shape
    forward = 4 * batch * heads * seqlen * seqlen * head_dim // (2 if causal else 1)
    return forward if direction == "fwd" else forward * 5 // 2


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype):
    def draw(device: str) -> dict[str, torch.Tensor]:
        return {name: torch.randn(shape, device=device, dtype=dtype) for name in ("q", "k", "v")}

    return draw


def chunked_reference(kernel: Any, causal: bool, compute_dtype: torch.dtype | None):
    """The package's attention_reference on [B, H, S, D] inputs, one chunk of (batch, head)
    slices at a time, each chunk checkpointed so a backward holds one chunk's scores."""
    reference = kernel.attention_reference

    def one(q, k, v):
        return reference(q, k, v, causal=causal, compute_dtype=compute_dtype)

    def fn(q, k, v):
        batch, heads, seqlen, head_dim = q.shape
        chunk = max(1, TRUTH_CHUNK_ELEMENTS // (seqlen * k.shape[2]))
        flat = [t.reshape(batch * heads, t.shape[2], 1, head_dim) for t in (q, k, v)]
        outs = []
        for first in range(0, batch * heads, chunk):
            pieces = [t[first:first + chunk] for t in flat]
            if torch.is_grad_enabled() and any(p.requires_grad for p in pieces):
                outs.append(torch.utils.checkpoint.checkpoint(one, *pieces, use_reentrant=False))
            else:
                outs.append(one(*pieces))
        return torch.cat(outs).view(batch, heads, seqlen, head_dim)

    return fn


@functools.cache
def triton_variant() -> tuple[Any, str | None]:
    """(our Triton variant module, its directory name), or (None, the reason)."""
    path = REPO_ROOT / "build" / "torch-cuda"
    try:
        sys.path.insert(0, str(REPO_ROOT / "loader"))
        from kernel_hub import get_local_kernel

        return get_local_kernel(path), path.name
    except Exception as exc:
        return None, f"cannot load {path}: {type(exc).__name__}: {exc}"


def ours_peers(kernel: Any, causal: bool) -> list[Peer]:
    triton_kernel, variant = triton_variant()
    if triton_kernel is None and getattr(kernel, "BACKEND", None) == "triton":
        triton_kernel, variant = kernel, None
    if triton_kernel is None:
        return [Peer(OURS, skip=variant)]
    def ours(q, k, v):
        out = triton_kernel.flash_attn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       causal=causal)
        return out.transpose(1, 2)

    return [Peer(OURS, ours, variant=variant)]


def cuda_peer(kernel: Any, causal: bool) -> Peer:
    """The CUDA variant's kernels, sm_90a on Hopper and sm_80 elsewhere (the loaded variant,
    when it is the CUDA one). ``ours`` is the Triton variant."""
    if getattr(kernel, "BACKEND", None) != "cuda":
        return Peer("ours-cuda", skip="the loaded variant is not the CUDA variant")

    def fn(q, k, v):
        out = kernel.flash_attn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                causal=causal)
        return out.transpose(1, 2)

    return Peer("ours-cuda", fn)


class _DeterministicBackward(torch.autograd.Function):
    """The identity; its backward sets ``torch.use_deterministic_algorithms(on)``. Put on a
    peer's output with on=True and on its inputs with on=False, it turns the deterministic mode
    on for exactly the backward between them (autograd reads the mode there, not in the forward)
    and off before any other peer's backward runs."""

    @staticmethod
    def forward(ctx, tensor, on):
        ctx.on = on
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        # warn_only: the mode is process-wide, and SDPA's efficient backward raises under it.
        torch.use_deterministic_algorithms(ctx.on, warn_only=True)
        return grad, None


def cuda_deterministic_peer(kernel: Any, causal: bool) -> Peer:
    """ours-cuda with the deterministic backward (on sm_90a: a dk/dv kernel, then a dq kernel,
    no sums across blocks); its forward is ours-cuda's, so it is measured backward only."""
    cuda = cuda_peer(kernel, causal)
    if cuda.fn is None:
        return Peer("ours-cuda-det", skip=cuda.skip, directions=("bwd",))

    def fn(q, k, v):
        q, k, v = (_DeterministicBackward.apply(t, False) for t in (q, k, v))
        return _DeterministicBackward.apply(cuda.fn(q, k, v), True)

    return Peer("ours-cuda-det", fn, directions=("bwd",))


def sdpa_peer(name: str, backend_name: str, causal: bool) -> Peer:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, backend_name)
    except Exception as exc:
        return Peer(name, skip=f"torch.nn.attention.SDPBackend.{backend_name}: "
                               f"{type(exc).__name__}: {exc}")

    def fn(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return Peer(name, fn)


def flex_peer(shape: tuple[int, ...], causal: bool) -> Peer:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except Exception as exc:
        return Peer("flex", skip=f"torch.nn.attention.flex_attention: {type(exc).__name__}: {exc}")
    compiled = torch.compile(flex_attention, dynamic=False)
    seqlen = shape[2]

    @functools.cache
    def block_mask(device: str):
        def causal_mask(b, h, q_idx, kv_idx):
            return q_idx >= kv_idx

        return create_block_mask(causal_mask, None, None, seqlen, seqlen, device=device)

    def fn(q, k, v):
        return compiled(q, k, v, block_mask=block_mask(str(q.device)) if causal else None)

    return Peer("flex", fn)


def compile_peer(kernel: Any, shape: tuple[int, ...], causal: bool) -> Peer:
    batch, heads, seqlen, _ = shape
    needed = COMPILE_SCORE_TENSORS * 4 * batch * heads * seqlen * seqlen
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory \
        if torch.cuda.is_available() else 0
    if needed > COMPILE_MEMORY_FRACTION * total:
        return Peer("compile", skip=f"the reference's fp32 [B, H, S, S] tensors need about "
                                    f"{needed / 2**30:.0f} GiB, more than "
                                    f"{COMPILE_MEMORY_FRACTION:.0%} of this GPU's "
                                    f"{total / 2**30:.0f} GiB")
    reference = kernel.attention_reference

    def eager(q, k, v):
        out = reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal)
        return out.transpose(1, 2)

    return Peer("compile", torch.compile(eager, dynamic=False, fullgraph=True))


def build_cases(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> list[Case]:
    if len(shape) != 4:
        raise ValueError(f"flash_attn shapes are batch x heads x seqlen x head_dim, got {shape}")
    cases = []
    for causal in (False, True):
        peers = [
            sdpa_peer("sdpa-flash", "FLASH_ATTENTION", causal),
            sdpa_peer("sdpa-cudnn", "CUDNN_ATTENTION", causal),
            sdpa_peer("sdpa-efficient", "EFFICIENT_ATTENTION", causal),
            flex_peer(shape, causal),
            compile_peer(kernel, shape, causal),
            *ours_peers(kernel, causal),
            cuda_peer(kernel, causal),
            cuda_deterministic_peer(kernel, causal),
        ]
        cases.append(Case(
            kernel=KERNEL, op="flash_attn_causal" if causal else "flash_attn", shape=shape,
            dtype=dtype, make_inputs=make_inputs(shape, dtype),
            reference=chunked_reference(kernel, causal, None),
            lowp=chunked_reference(kernel, causal, dtype), peers=peers,
            grad_inputs=("q", "k", "v"),
            fwd_flops=attention_flops(shape, causal, "fwd"),
            bwd_flops=attention_flops(shape, causal, "bwd"),
        ))
    return cases


BENCH = Bench(kernel=KERNEL, shape_sets=SHAPES, quick_shapes=QUICK_SHAPES,
              build_cases=build_cases, default_dtypes=("bf16",))


def main(argv: list[str] | None = None) -> int:
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
