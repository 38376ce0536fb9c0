"""RoPE 3D (video tokens on a T x H x W grid) on every backend this machine can run, against the
fp32 reference, and the reference against Wan's complex-number formulation and diffusers' host
classes. Backends as in test_rope.py (its fixture is reused)."""

import inspect
import types

import pytest
import torch
from torch import nn

from test_rope import BACKENDS, DTYPES, LAYOUTS  # noqa: F401  (BACKENDS: the fixture's params)
from tolerance import assert_matches_reference

# (batch, grid, heads, head_dim, split, theta, scale): Wan's split of D = 64 (bands of 24, 20,
# 20: 16-byte interleaved accesses, 4-byte rotate-half ones), HunyuanVideo's (16, 56, 56) with
# theta 256, dims past the split copied, an empty band, odd sizes (scalar accesses), a scale.
NATIVE_SHAPES = [
    (2, (2, 3, 4), 3, 64, (24, 20, 20), 10000.0, (1.0, 1.0, 1.0)),
    (1, (2, 2, 3), 2, 128, (16, 56, 56), 256.0, (1.0, 1.0, 1.0)),
    (1, (1, 3, 5), 2, 40, (8, 12, 12), 10000.0, (1.0, 0.5, 2.0)),
    (2, (3, 1, 2), 1, 12, (4, 0, 6), 100.0, (1.0, 1.0, 1.0)),
    (1, (2, 3, 1), 3, 10, (2, 2, 4), 10000.0, (2.0, 1.0, 1.0)),
    (0, (2, 2, 2), 2, 16, (4, 6, 6), 10000.0, (1.0, 1.0, 1.0)),
]
INTERPRETER_SHAPES = [
    (1, (2, 2, 2), 2, 16, (4, 6, 6), 10000.0, (1.0, 1.0, 1.0)),
    (1, (1, 2, 3), 1, 12, (2, 2, 4), 100.0, (1.0, 0.5, 2.0)),
]


@pytest.fixture(params=BACKENDS)
def backend(request, variant_modules):
    variant, device = request.param
    if variant not in variant_modules:
        pytest.skip(f"no {variant} variant was built in this environment")
    shapes = INTERPRETER_SHAPES if (variant, device) == ("triton", "cpu") else NATIVE_SHAPES
    return variant_modules[variant], device, shapes


def _x(batch, grid, heads, head_dim, layout, dtype, device):
    seq = grid[0] * grid[1] * grid[2]
    shape = (batch, seq, heads, head_dim) if layout == "bshd" else (batch, heads, seq, head_dim)
    return torch.randn(shape, dtype=dtype, device=device)


def _angles(grid, split, theta, scale):
    """[S, R/2] fp64 angles: per band, position idx_a * scale_a times theta^(-2i / d_a)."""
    frames, height, width = grid
    s = torch.arange(frames * height * width)
    coords = (s // (height * width), (s // width) % height, s % width)
    parts = []
    for coord, d, sc in zip(coords, split, scale):
        inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        parts.append((coord.double() * sc)[:, None] * inv_freq[None, :])
    return torch.cat(parts, dim=-1)


def _rope3d_in_dtype(x, grid, split, theta, scale, layout, interleaved):
    """The rotation with the table and every intermediate in x's dtype (the baseline)."""
    angles = _angles(grid, split, theta, scale).to(x.device)
    c, s = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    c, s = (c[:, None], s[:, None]) if layout == "bshd" else (c, s)
    out, rot = x.clone(), sum(split)
    if interleaved:
        x1, x2 = x[..., 0:rot:2], x[..., 1:rot:2]
        out[..., 0:rot:2], out[..., 1:rot:2] = x1 * c - x2 * s, x2 * c + x1 * s
        return out
    start = 0
    for d in split:
        half, pairs = d // 2, slice(start // 2, start // 2 + d // 2)
        x1, x2 = x[..., start:start + half], x[..., start + half:start + d]
        out[..., start:start + half] = x1 * c[..., pairs] - x2 * s[..., pairs]
        out[..., start + half:start + d] = x2 * c[..., pairs] + x1 * s[..., pairs]
        start += d
    return out


def _check_rope3d(kernel, x, grid, split, theta, scale, layout, interleaved, what):
    x.requires_grad_(True)
    out = kernel.apply_rope3d(x, grid, split, theta, scale, layout=layout, interleaved=interleaved)
    assert out.dtype == x.dtype and out.shape == x.shape and out.is_contiguous()
    ref_x = x.detach().double().requires_grad_(True)
    ref = kernel.rope3d_reference(ref_x, grid, split, theta, scale, layout, interleaved)
    low_x = x.detach().clone().requires_grad_(True)
    low = _rope3d_in_dtype(low_x, grid, split, theta, scale, layout, interleaved)
    assert_matches_reference(out.detach(), ref.detach(), low.detach(), f"out {what}")
    if not x.numel():
        return
    dy = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, dy)
    (ref_dx,) = torch.autograd.grad(ref, ref_x, dy.double())
    (low_dx,) = torch.autograd.grad(low, low_x, dy)
    assert_matches_reference(dx, ref_dx, low_dx, f"dx {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("interleaved", [True, False], ids=["interleaved", "rotate-half"])
def test_forward_and_backward_match_reference(backend, dtype, layout, interleaved):
    kernel, device, shapes = backend
    for batch, grid, heads, head_dim, split, theta, scale in shapes:
        x = _x(batch, grid, heads, head_dim, layout, dtype, device)
        _check_rope3d(kernel, x, grid, split, theta, scale, layout, interleaved,
                      f"{device} {dtype} {grid} {split}")


def wan_rope_apply(x, grid, split, theta=10000.0):
    """Wan's formulation: per-axis complex frequencies polar(1, position * freq), concatenated t,
    h, w per token, multiplied with x's pairs viewed as complex numbers, in fp64. x: [S, heads, D]."""
    frames, height, width = grid

    def freqs(length, d):
        inv = 1.0 / torch.pow(theta, torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles = torch.outer(torch.arange(length, dtype=torch.float64), inv)
        return torch.polar(torch.ones_like(angles), angles)

    f_t, f_h, f_w = freqs(frames, split[0]), freqs(height, split[1]), freqs(width, split[2])
    table = torch.cat([
        f_t.view(frames, 1, 1, -1).expand(frames, height, width, -1),
        f_h.view(1, height, 1, -1).expand(frames, height, width, -1),
        f_w.view(1, 1, width, -1).expand(frames, height, width, -1),
    ], dim=-1).reshape(frames * height * width, 1, -1)
    rot = sum(split)
    pairs = torch.view_as_complex(x[..., :rot].double().reshape(*x.shape[:-1], -1, 2).contiguous())
    rotated = torch.view_as_real(pairs * table).flatten(-2)
    return torch.cat((rotated, x[..., rot:].double()), dim=-1)


def test_reference_and_kernels_match_wan_complex_formulation(backend):
    kernel, device, _ = backend
    grid, split = (2, 3, 4), (8, 4, 4)
    x = torch.randn(1, 24, 2, 20, device=device)
    expected = wan_rope_apply(x[0].cpu(), grid, split)
    ref = kernel.rope3d_reference(x.double(), grid, split)[0].cpu()
    torch.testing.assert_close(ref, expected, rtol=1e-12, atol=1e-12)
    got = kernel.apply_rope3d(x, grid, split)[0].cpu()
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_strided_views_and_conjugate(backend):
    kernel, device, shapes = backend
    batch, grid, heads, head_dim, split, theta, scale = shapes[0]
    seq = grid[0] * grid[1] * grid[2]
    for shift in (0, 1):
        qkv = torch.randn(batch, seq, 3 * heads * head_dim + shift, dtype=torch.bfloat16,
                          device=device)[..., shift:]
        q = qkv.unflatten(-1, (3 * heads, head_dim))[:, :, :heads]
        _check_rope3d(kernel, q, grid, split, theta, scale, "bshd", True, f"qkv view shift {shift}")
        _check_rope3d(kernel, q.detach().transpose(1, 2), grid, split, theta, scale, "bhsd", False,
                      f"transposed view shift {shift}")
    x = _x(batch, grid, heads, head_dim, "bshd", torch.float32, device)
    back = kernel.apply_rope3d(kernel.apply_rope3d(x, grid, split, theta, scale), grid, split,
                               theta, scale, conjugate=True)
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)


def test_every_output_element_is_written(backend):
    kernel, device, shapes = backend
    batch, grid, heads, head_dim, split, theta, scale = next(
        s for s in shapes if s[0] and s[3] > sum(s[4]))
    x = _x(batch, grid, heads, head_dim, "bhsd", torch.float16, device)
    out = torch.full_like(x, float("nan"))
    kernel.ops.rope3d_fwd_out(out, x, list(grid), list(split), theta, list(scale), "bhsd", True,
                              False)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[..., sum(split):], x[..., sum(split):], rtol=0, atol=0)


def test_bad_inputs_raise_errors_naming_the_argument(backend):
    kernel, device, _ = backend
    x = torch.randn(1, 24, 2, 16, device=device)
    rope3d = kernel.apply_rope3d
    cases = [
        (lambda: rope3d(x, (2, 3, 5), (4, 6, 6)), ValueError, "grid .* must multiply"),
        (lambda: rope3d(x, (2, 3), (4, 6, 6)), ValueError, "grid must be 3 integers"),
        (lambda: rope3d(x, (2, 3, 4), (4, 5, 7)), ValueError, "split entries must be even"),
        (lambda: rope3d(x, (2, 3, 4), (8, 6, 6)), ValueError, "split .* must sum to"),
        (lambda: rope3d(x, (2, 3, 4), (4, 6, 6), 0.0), ValueError, "theta must be a positive"),
        (lambda: rope3d(x, (2, 3, 4), (4, 6, 6), scale=(1.0, 2.0)), ValueError, "scale must have 3"),
        (lambda: rope3d(x, (2, 3, 4), (4, 6, 6), layout="bsh"), ValueError, "layout must be"),
        (lambda: rope3d(x.int(), (2, 3, 4), (4, 6, 6)), TypeError, "x must be float32"),
        (lambda: rope3d(x[0], (2, 3, 4), (4, 6, 6)), ValueError, "x must be 4-D"),
        (lambda: rope3d("x", (2, 3, 4), (4, 6, 6)), TypeError, "x must be a torch.Tensor"),
        (lambda: kernel.ops.rope3d_fwd_out(torch.empty(1, 24, 2, 8, device=device), x, [2, 3, 4],
                                           [4, 6, 6], 1e4, [1.0, 1.0, 1.0], "bshd", True, False),
         ValueError, "out must have shape"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


# ---------------------------------------------------------------- layer against diffusers' hosts


def _get_1d_rotary_pos_embed(dim, length, theta):
    """diffusers' get_1d_rotary_pos_embed(use_real=True, repeat_interleave_real=True, fp64)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), freqs)
    return freqs.cos().repeat_interleave(2, dim=1).float(), freqs.sin().repeat_interleave(2, dim=1).float()


class WanStyleRotaryPosEmbed(nn.Module):
    """diffusers' WanRotaryPosEmbed: attributes and forward (cos / sin tables [1, S, 1, D])."""

    def __init__(self, attention_head_dim, patch_size=(1, 2, 2), max_seq_len=64, theta=10000.0):
        super().__init__()
        self.attention_head_dim = attention_head_dim
        self.patch_size = patch_size
        self.max_seq_len = max_seq_len
        self.h_dim = self.w_dim = 2 * (attention_head_dim // 6)
        self.t_dim = attention_head_dim - self.h_dim - self.w_dim
        tables = [_get_1d_rotary_pos_embed(d, max_seq_len, theta)
                  for d in (self.t_dim, self.h_dim, self.w_dim)]
        self.register_buffer("freqs_cos", torch.cat([c for c, _ in tables], dim=1), persistent=False)
        self.register_buffer("freqs_sin", torch.cat([s for _, s in tables], dim=1), persistent=False)

    def forward(self, hidden_states):
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
        split = [self.t_dim, self.h_dim, self.w_dim]
        out = []
        for table in (self.freqs_cos, self.freqs_sin):
            t, h, w = table.split(split, dim=1)
            full = torch.cat([
                t[:ppf].view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1),
                h[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1),
                w[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1),
            ], dim=-1)
            out.append(full.reshape(1, ppf * pph * ppw, 1, -1))
        return tuple(out)


class HunyuanStyleRotaryPosEmbed(nn.Module):
    """diffusers' HunyuanVideoRotaryPosEmbed: rope_dim, theta; forward gives [S, D] tables."""

    def __init__(self, patch_size=2, patch_size_t=1, rope_dim=(4, 6, 6), theta=256.0):
        super().__init__()
        self.patch_size = patch_size
        self.patch_size_t = patch_size_t
        self.rope_dim = list(rope_dim)
        self.theta = theta

    def forward(self, hidden_states):
        _, _, frames, height, width = hidden_states.shape
        sizes = [frames // self.patch_size_t, height // self.patch_size, width // self.patch_size]
        axes = [torch.arange(0, n, dtype=torch.float32) for n in sizes]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)
        tables = []
        for i in range(3):
            d = self.rope_dim[i]
            freqs = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.float32)[: d // 2] / d))
            freqs = torch.outer(grid[i].reshape(-1), freqs)
            tables.append((freqs.cos().repeat_interleave(2, dim=1),
                           freqs.sin().repeat_interleave(2, dim=1)))
        return torch.cat([c for c, _ in tables], dim=1), torch.cat([s for _, s in tables], dim=1)


def diffusers_apply_rotary_emb(x, freqs_cos, freqs_sin):
    """The interleaved rotation of diffusers' Wan / HunyuanVideo processors (fp32 tables)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def _bound(host, layer_cls):
    return types.MethodType(layer_cls.forward, host)


def test_rope3d_layer_matches_wan_style_host(variant_modules):
    layers = variant_modules["cpu"].layers
    host = WanStyleRotaryPosEmbed(attention_head_dim=32)
    latents = torch.randn(1, 4, 3, 4, 6)  # [B, C, F, H, W] -> grid (3, 2, 3)
    grid = (3, 2, 3)
    query = torch.randn(2, 18, 4, 32)  # [B, S, heads, D]
    freqs_cos, freqs_sin = host(latents)
    expected = diffusers_apply_rotary_emb(query, freqs_cos, freqs_sin)
    got = _bound(host, layers.RoPE3D)(query, grid)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_rope3d_layer_matches_hunyuan_style_host(variant_modules):
    layers = variant_modules["cpu"].layers
    host = HunyuanStyleRotaryPosEmbed(rope_dim=(4, 6, 6), theta=256.0)
    latents = torch.randn(1, 4, 2, 6, 4)  # grid (2, 3, 2)
    grid = (2, 3, 2)
    query = torch.randn(1, 3, 12, 16, dtype=torch.bfloat16)  # [B, heads, S, D]
    freqs_cos, freqs_sin = host(latents)
    expected = diffusers_apply_rotary_emb(query, freqs_cos, freqs_sin)
    exact = diffusers_apply_rotary_emb(query.double(), freqs_cos.double(), freqs_sin.double())
    got = _bound(host, layers.RoPE3D)(query, grid, layout="bhsd")
    assert got.dtype == torch.bfloat16
    assert_matches_reference(got, exact, expected, "hunyuan-style")


def test_rope3d_layer_follows_kernelize_rules(variant_modules):
    layers = variant_modules["cpu"].layers
    assert "__init__" not in vars(layers.RoPE3D)
    assert set(vars(layers.RoPE3D)) - set(vars(nn.Module)) <= {
        "forward", "can_torch_compile", "has_backward", "__doc__", "__module__", "__qualname__",
        "__firstlineno__", "__static_attributes__"}
    assert list(inspect.signature(layers.RoPE3D.forward).parameters) == ["self", "x", "grid", "layout"]
