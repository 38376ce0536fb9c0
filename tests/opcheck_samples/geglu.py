"""opcheck samples of the GEGLU / GELU ops (collected by tests/test_ops_registry.py)."""

import torch


def samples(kernel, device) -> dict[str, list[tuple]]:
    """{op name: argument tuples} for every GEGLU-family op: both halves orders, every
    activation, a width on the vector path (8) and one on the scalar path (5)."""
    def t(*shape, dtype=torch.float32):
        return torch.randn(*shape, dtype=dtype, device=device)

    grad = lambda a: a.clone().requires_grad_(True)  # noqa: E731
    x8, x5, dy8, dy5 = t(3, 16), t(2, 10), t(3, 8), t(2, 5)
    xb = t(2, 3, 16, dtype=torch.bfloat16)
    return {
        "geglu_fwd_out": [
            (torch.empty_like(dy8), x8, "gelu_tanh", False),
            (torch.empty_like(dy5), x5, "gelu", True),
            (torch.empty(3, 8, device=device, dtype=torch.bfloat16), xb[0], "silu", False),
        ],
        "geglu_bwd_out": [
            (torch.empty_like(x8), dy8, x8, "silu", True),
            (torch.empty_like(x5), dy5, x5, "gelu_tanh", False),
        ],
        "gelu_fwd_out": [(torch.empty_like(x5), x5, "tanh"), (torch.empty_like(xb), xb, "none")],
        "gelu_bwd_out": [(torch.empty_like(x8), t(3, 16), x8, "none")],
        "geglu": [
            (grad(x8), "gelu_tanh", False),
            (grad(x5), "gelu", True),
            (grad(xb), "silu", False),
        ],
        "geglu_backward": [(dy8, x8, "gelu", True), (t(2, 3, 8), t(2, 3, 16), "silu", False)],
        "gelu": [(grad(x5), "tanh"), (grad(xb), "none")],
        "gelu_backward": [(t(3, 16), x8, "tanh"), (dy5, t(2, 5), "none")],
    }
