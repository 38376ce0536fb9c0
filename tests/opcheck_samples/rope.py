"""opcheck samples of the RoPE ops (collected by tests/test_ops_registry.py)."""

import torch


def samples(kernel, device) -> dict[str, list[tuple]]:
    """{op name: argument tuples} for every RoPE op."""
    def t(*shape, dtype=torch.float32):
        return torch.randn(*shape, dtype=dtype, device=device)

    batch, seq, hq, hk, head_dim = 2, 3, 4, 2, 16
    q, k = t(batch, seq, hq, head_dim), t(batch, seq, hk, head_dim)
    q_bhsd = t(batch, hq, seq, head_dim)
    cos, sin = t(seq, 6), t(seq, 6)
    table_cos, table_sin = t(10, 8), t(10, 8)
    positions = torch.tensor([[1, 5, 9], [0, 0, 2]], device=device)
    grad = lambda a: a.clone().requires_grad_(True)  # noqa: E731
    x = t(batch, 12, hk, head_dim)  # grid (2, 3, 2)
    x_bhsd = t(batch, hk, 12, head_dim)
    grid3, split3 = [2, 3, 2], [4, 4, 6]
    return {
        "rope_fwd_out": [
            (torch.empty_like(q), torch.empty_like(k), q, k, cos, sin, None, "bshd", False, False),
            (torch.empty_like(q_bhsd), None, q_bhsd, None, table_cos, table_sin, positions, "bhsd",
             True, True),
        ],
        "rope_inplace": [
            (q.clone(), k.clone(), cos, sin, None, "bshd", False, False),
            (q_bhsd.clone(), None, table_cos, table_sin, positions[0].int(), "bhsd", True, False),
        ],
        "rope": [
            (grad(q), grad(k), cos, sin, None, "bshd", False, False),
            (grad(q_bhsd), None, table_cos, table_sin, positions, "bhsd", True, True),
        ],
        "rope3d_fwd_out": [
            (torch.empty_like(x), x, grid3, split3, 10000.0, [1.0, 1.0, 1.0], "bshd", True, False),
            (torch.empty_like(x_bhsd), x_bhsd, grid3, [4, 4, 8], 256.0, [1.0, 0.5, 2.0], "bhsd",
             False, True),
        ],
        "rope3d": [
            (grad(x), grid3, split3, 10000.0, [1.0, 1.0, 1.0], "bshd", True, False),
            (grad(x_bhsd), grid3, [4, 4, 8], 256.0, [1.0, 0.5, 2.0], "bhsd", False, True),
        ],
    }
