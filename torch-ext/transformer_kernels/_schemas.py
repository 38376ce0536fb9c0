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
    # dscale and dgate in scale's and gate's shapes, dshift [B, S, D] if shift_per_token else
    # [B, D]; dweight empty unless want_dweight, dbranch and dgate empty unless gated.
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
}
