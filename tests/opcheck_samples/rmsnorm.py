"""opcheck samples of the RMSNorm ops (collected by tests/test_ops_registry.py)."""

import torch


def samples(kernel, device) -> dict[str, list[tuple]]:
    """{op name: argument tuples} for every RMSNorm op."""
    def t(*shape, dtype=torch.float32):
        return torch.randn(*shape, dtype=dtype, device=device)

    rows, hidden = 3, 20
    x, w, r, dy = t(rows, hidden), t(hidden), t(rows, hidden), t(rows, hidden)
    rstd = torch.empty(rows, device=device)
    kernel.ops.rms_norm_fwd_out(torch.empty_like(x), rstd, x, w, 1e-6)
    grad = lambda a: a.clone().requires_grad_(True)  # noqa: E731
    return {
        "rms_norm_fwd_out": [
            (torch.empty_like(x), torch.empty(rows, device=device), x, w, 1e-6),
            (torch.empty_like(x), torch.empty(rows, device=device), x, None, 1e-5),
        ],
        "rms_norm_add_fwd_out": [
            (torch.empty_like(x), torch.empty_like(x), torch.empty(rows, device=device), x, r, w, 1e-6),
        ],
        "rms_norm_bwd_out": [
            (torch.empty_like(x), torch.empty_like(w), dy, x, w, rstd, None),
            (torch.empty_like(x), None, dy, x, None, rstd, r),
        ],
        "rms_norm": [(grad(x), grad(w), 1e-6), (grad(x), None, 1e-6)],
        "rms_norm_add": [(grad(x), grad(r), grad(w), 1e-6)],
        "rms_norm_backward": [(dy, x, w, rstd, None, True), (dy, x, None, rstd, r, False)],
    }
