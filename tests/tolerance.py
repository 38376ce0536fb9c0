"""The tolerance rule of DESIGN.md, in one place.

Low precision: the kernel's max error against the high-precision reference may be at most
twice the error of the same PyTorch computation done in the input dtype, plus a small atol:
the larger of a fixed floor and one unit of rounding (finfo.eps) at the reference's largest
magnitude, since a short reduction can leave the baseline error near zero by luck.
fp32: torch.testing.assert_close at 1e-5, or, for long fp32 reductions whose own rounding
exceeds that, the low-precision rule with an atol of 1e-5 (the same PyTorch math in fp32 sets
the bound).
"""

import torch

LOW_PRECISION_ATOL = {torch.float16: 1e-3, torch.bfloat16: 1e-2}
FP32_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def assert_matches_reference(
    out: torch.Tensor, reference: torch.Tensor, same_op_in_dtype: torch.Tensor, what: str = ""
) -> None:
    """`reference`: the computation in fp64 (or fp32); `same_op_in_dtype`: the same
    PyTorch computation done in out's dtype. Also fails on any NaN/Inf in `out`."""
    assert out.shape == reference.shape, f"{what}: shape {out.shape} != {reference.shape}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values (unwritten output?)"
    out64, ref64 = out.double().cpu(), reference.double().cpu()
    baseline = (same_op_in_dtype.double().cpu() - ref64).abs().max().item() if out.numel() else 0.0
    error = (out64 - ref64).abs().max().item() if out.numel() else 0.0
    if out.dtype == torch.float32:
        if error <= 2 * baseline + FP32_TOLERANCE["atol"]:
            return
        torch.testing.assert_close(out64, ref64, **FP32_TOLERANCE, msg=lambda m: f"{what}: {m}")
        return
    scale = ref64.abs().max().item() if out.numel() else 0.0
    atol = max(LOW_PRECISION_ATOL[out.dtype], torch.finfo(out.dtype).eps * scale)
    bound = 2 * baseline + atol
    assert error <= bound, (
        f"{what}: max error {error:.3g} > 2 x {baseline:.3g} (same op in {out.dtype}) "
        f"+ atol {atol:.3g}"
    )
