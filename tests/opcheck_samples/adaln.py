"""opcheck samples of the AdaLN ops (collected by tests/test_ops_registry.py)."""

import torch


def samples(kernel, device) -> dict[str, list[tuple]]:
    """{op name: argument tuples} for every AdaLN op."""
    def t(*shape):
        return torch.randn(*shape, device=device)

    def grad(a):
        return a.clone().requires_grad_(True)

    batch, seq, hidden = 2, 3, 20
    x, branch, dy, dz = (t(batch, seq, hidden) for _ in range(4))
    sample_mod = [t(batch, hidden) for _ in range(3)]       # scale, shift, gate per sample
    token_mod = [t(batch, seq, hidden) for _ in range(3)]   # per token
    w = t(hidden)

    def stats():
        return torch.empty(batch, seq, device=device)

    mean, rstd = stats(), stats()
    kernel.ops.adaln_fwd_out(torch.empty_like(x), None, mean, rstd, x, None, None,
                             *sample_mod[:2], w, 1e-6, "layer")
    rms_mean, rms_rstd = stats(), stats()
    kernel.ops.adaln_fwd_out(torch.empty_like(x), None, rms_mean, rms_rstd, x, None, None,
                             *token_mod[:2], None, 1e-6, "rms")
    s, sh, g = sample_mod
    ts, tsh, tg = token_mod
    e = torch.empty_like
    return {
        "adaln_fwd_out": [
            (e(x), None, stats(), stats(), x, None, None, s, sh, w, 1e-6, "layer"),
            (e(x), e(x), stats(), stats(), x, branch, tg, ts, sh, None, 1e-5, "rms"),
        ],
        "adaln_bwd_out": [
            (e(x), e(s), e(sh), e(w), None, None, dy, None, x, None, None, s, w, mean, rstd,
             "layer"),
            (e(x), e(ts), e(x), None, e(x), e(g), dy, dz, x, branch, g, ts, None, rms_mean,
             rms_rstd, "rms"),
        ],
        "adaln": [
            (grad(x), grad(s), grad(sh), grad(w), 1e-6, "layer"),
            (grad(x), grad(ts), grad(sh[:, None]), None, 1e-6, "rms"),
        ],
        "adaln_gated": [
            (grad(x), grad(branch), grad(g), grad(s), grad(tsh), grad(w), 1e-6, "rms"),
            (grad(x), grad(branch), grad(tg), grad(ts), grad(sh), None, 1e-5, "layer"),
        ],
        "adaln_backward": [
            (dy, None, x, None, None, s, False, w, mean, rstd, "layer", True),
            (dy, dz, x, branch, tg, ts, True, None, rms_mean, rms_rstd, "rms", False),
        ],
    }
