"""RoPE 1D (q and k, GQA) and 3D (video tokens): ours beside eager, torch.compile, Liger.

    python -m benchmarks.bench_rope [--quick] [--shapes 1d|3d] [--dtype bf16] [--out DIR]

Shapes: 1D (B, S, H, D) is q, with k of H / 4 heads (GQA 32/8), rotate-half, cos / sin tables
[S, D/2] in fp32, layout "bshd". 3D (B, T, H, W, heads, D) is x [B, T*H*W, heads, D] on a
T x H x W grid, interleaved pairs, bands split as Wan splits them (d_h = d_w = 2 * (D // 6),
d_t = D - d_h - d_w: (24, 20, 20) for D = 64; HunyuanVideo uses (16, 56, 56) for D = 128 and
LTX-Video a different scheme, frequencies interleaved across the axes over the whole inner dim,
which the 1D op with an interleaved [B, S, D/2] table covers).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import OURS, Bench, Case, Peer, main as harness_main, tensor_bytes

KERNEL = "rope"
THETA = 10000.0
SHAPES = {
    "1d": [(1, 32768, 32, 128), (8, 4096, 32, 128)],
    "3d": [(2, 8, 32, 48, 32, 64)],
}
QUICK_SHAPES = [(8, 4096, 32, 128), (2, 8, 32, 48, 32, 64)]
GQA_GROUP = 4  # q heads per k head


def rope_bytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Either direction: read q and k, write them (or dq and dk), and the fp32 cos / sin tables
    [S, D/2] read once."""
    batch, seq, heads, head_dim = shape
    n = batch * seq * (heads + heads // GQA_GROUP) * head_dim
    return tensor_bytes(dtype, n, n) + tensor_bytes(torch.float32, 2 * seq * head_dim // 2)


def rope3d_bytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Either direction: read x (or dy) and write the output; no table."""
    batch, frames, height, width, heads, head_dim = shape
    n = batch * frames * height * width * heads * head_dim
    return tensor_bytes(dtype, n, n)


def wan_split(head_dim: int) -> tuple[int, int, int]:
    """The band widths diffusers' WanRotaryPosEmbed uses (t, h, w)."""
    h = w = 2 * (head_dim // 6)
    return head_dim - h - w, h, w


def _module(kernel: Any):
    module = getattr(kernel, "rope", None)
    return module if module is not None else importlib.import_module(f"{kernel.__name__}.rope")


# ---------------------------------------------------------------- 1D


def _tables(seq: int, half: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = THETA ** (-torch.arange(half, dtype=torch.float32, device=device) / half)
    angles = torch.arange(seq, dtype=torch.float32, device=device)[:, None] * inv_freq
    return angles.cos(), angles.sin()


class FullTables:
    """cat(t, t) of a half table in a dtype, built once per table: what transformers' rotary
    embedding hands to every layer, so no peer pays for building it in the timed call."""

    def __init__(self):
        self._cache: dict[tuple, torch.Tensor] = {}

    def __call__(self, table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        key = (table.data_ptr(), tuple(table.shape), dtype)
        if key not in self._cache:
            self._cache[key] = torch.cat((table, table), dim=-1).to(dtype)
        return self._cache[key]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def transformers_rope(q, k, cos_full, sin_full):
    """transformers' apply_rotary_pos_emb on [B, S, H, D] (cos [S, D] in q's dtype)."""
    c, s = cos_full[None, :, None, :], sin_full[None, :, None, :]
    return q * c + rotate_half(q) * s, k * c + rotate_half(k) * s


def make_rope_inputs(shape: tuple[int, ...], dtype: torch.dtype):
    batch, seq, heads, head_dim = shape

    def draw(device: str) -> dict[str, torch.Tensor]:
        cos, sin = _tables(seq, head_dim // 2, device)
        return {
            "q": torch.randn(batch, seq, heads, head_dim, device=device, dtype=dtype),
            "k": torch.randn(batch, seq, heads // GQA_GROUP, head_dim, device=device, dtype=dtype),
            "cos": cos,
            "sin": sin,
        }

    return draw


def rope_case(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> Case:
    reference = _module(kernel).rope_reference
    full = FullTables()

    def ref(q, k, cos, sin):
        return reference(q, k, cos, sin)

    def eager(q, k, cos, sin):
        return transformers_rope(q, k, full(cos, q.dtype), full(sin, q.dtype))

    compiled = torch.compile(transformers_rope, dynamic=False, fullgraph=True)

    def compile_peer(q, k, cos, sin):
        return compiled(q, k, full(cos, q.dtype), full(sin, q.dtype))

    peers = [Peer("eager", eager), Peer("compile", compile_peer), ours_rope(kernel),
             liger_rope(full)]
    return Case(kernel=KERNEL, op="rope", shape=shape, dtype=dtype,
                make_inputs=make_rope_inputs(shape, dtype), reference=ref, lowp=eager,
                peers=peers, grad_inputs=("q", "k"), fwd_bytes=rope_bytes(shape, dtype),
                bwd_bytes=rope_bytes(shape, dtype))


def ours_rope(kernel: Any) -> Peer:
    fn = getattr(kernel, "apply_rotary", None)
    if fn is None:
        return Peer(OURS, skip=f"{kernel.__name__} has no apply_rotary")
    return Peer(OURS, lambda q, k, cos, sin: fn(q, k, cos, sin))


def liger_rope(full: FullTables) -> Peer:
    try:
        from liger_kernel.ops.rope import LigerRopeFunction
    except Exception as exc:
        return Peer("liger", skip=f"liger_kernel.ops.rope not importable: {type(exc).__name__}: {exc}")

    # LigerRopeFunction.apply(q, k, cos, sin, position_ids=None, unsqueeze_dim=1): q, k as
    # [B, H, S, D] (here transposed views of the [B, S, H, D] storage, which Liger's kernel
    # reads in place), cos / sin [1, S, D]. It writes its outputs into q's and k's storage, and
    # its backward into dq's: it is the last peer, so the inputs it changes are not read again.
    def run(q, k, cos, sin):
        q_out, k_out = LigerRopeFunction.apply(q.transpose(1, 2), k.transpose(1, 2),
                                               full(cos, q.dtype)[None], full(sin, q.dtype)[None])
        return q_out.transpose(1, 2), k_out.transpose(1, 2)

    return Peer("liger", run)


# ---------------------------------------------------------------- 3D


def wan_tables(grid, split, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' WanRotaryPosEmbed output for the grid: fp32 cos / sin [1, S, 1, D], each angle
    repeated for both elements of its pair (built in fp64, as diffusers builds it)."""
    frames, height, width = grid
    s = torch.arange(frames * height * width, device=device)
    coords = (s // (height * width), (s // width) % height, s % width)
    parts = []
    for coord, d in zip(coords, split):
        inv_freq = THETA ** (-torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)
        parts.append(coord.double()[:, None] * inv_freq[None, :])
    angles = torch.cat(parts, dim=-1).repeat_interleave(2, dim=-1)[None, :, None, :]
    return angles.cos().float(), angles.sin().float()


def diffusers_rope(x, freqs_cos, freqs_sin):
    """The interleaved rotation of diffusers' WanAttnProcessor (its apply_rotary_emb)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def rope3d_case(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> Case:
    batch, frames, height, width, heads, head_dim = shape
    grid, split = (frames, height, width), wan_split(head_dim)
    reference = _module(kernel).rope3d_reference
    tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def wan(device: str):
        if device not in tables:
            tables[device] = wan_tables(grid, split, device)
        return tables[device]

    def draw(device: str) -> dict[str, torch.Tensor]:
        return {"x": torch.randn(batch, frames * height * width, heads, head_dim, device=device,
                                 dtype=dtype)}

    def ref(x):
        return reference(x, grid, split, THETA)

    def eager(x):
        return diffusers_rope(x, *wan(x.device.type))

    def in_dtype(x):
        freqs_cos, freqs_sin = wan(x.device.type)
        return diffusers_rope(x, freqs_cos.to(x.dtype), freqs_sin.to(x.dtype))

    compiled = torch.compile(diffusers_rope, dynamic=False, fullgraph=True)
    apply_rope3d = getattr(kernel, "apply_rope3d", None)
    ours = (Peer(OURS, lambda x: apply_rope3d(x, grid, split, THETA)) if apply_rope3d is not None
            else Peer(OURS, skip=f"{kernel.__name__} has no apply_rope3d"))
    peers = [Peer("eager", eager), Peer("compile", lambda x: compiled(x, *wan(x.device.type))),
             ours]
    nbytes = rope3d_bytes(shape, dtype)
    return Case(kernel=KERNEL, op="rope3d", shape=shape, dtype=dtype, make_inputs=draw,
                reference=ref, lowp=in_dtype, peers=peers, grad_inputs=("x",), fwd_bytes=nbytes,
                bwd_bytes=nbytes)


# ---------------------------------------------------------------- build


def build_cases(kernel: Any, shape: tuple[int, ...], dtype: torch.dtype) -> list[Case]:
    if len(shape) == 4:
        return [rope_case(kernel, shape, dtype)]
    if len(shape) == 6:
        return [rope3d_case(kernel, shape, dtype)]
    raise ValueError(f"rope shapes are (B, S, H, D) for 1D or (B, T, H, W, heads, D) for 3D, "
                     f"got {shape}")


BENCH = Bench(kernel=KERNEL, shape_sets=SHAPES, quick_shapes=QUICK_SHAPES, build_cases=build_cases)


def main(argv: list[str] | None = None) -> int:
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
