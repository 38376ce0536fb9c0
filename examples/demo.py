"""Loads the freshly built transformer-kernels through kernel_hub and runs RMSNorm against
PyTorch on this machine (the GPU when there is one)."""

from pathlib import Path

import torch

import kernel_hub

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    for decision in kernel_hub.get_kernel_variants_local(ROOT):
        print(f"  {decision.name:<38} {decision.reason}")
    kernel = kernel_hub.get_local_kernel(ROOT)
    variant = Path(kernel.__file__).parent.name
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"loaded {variant} (ops namespace {kernel.add_op_namespace_prefix('')[:-2]}) on {device}")

    hidden = 4096
    x = torch.randn(8, 512, hidden, dtype=torch.bfloat16, device=device, requires_grad=True)
    weight = torch.randn(hidden, dtype=torch.bfloat16, device=device, requires_grad=True)
    y = kernel.rms_norm(x, weight, 1e-6)
    exact = torch.nn.functional.rms_norm(x.double(), (hidden,), weight.double(), 1e-6)
    torch_bf16 = torch.nn.functional.rms_norm(x, (hidden,), weight, 1e-6)
    y.sum().backward()
    print(f"rms_norm bf16 {tuple(x.shape)}, max error against fp64: "
          f"ours {(y.double() - exact).abs().max().item():.4f}, "
          f"F.rms_norm in bf16 {(torch_bf16.double() - exact).abs().max().item():.4f}")
    print(f"backward: dx finite = {bool(torch.isfinite(x.grad).all())}, "
          f"dweight finite = {bool(torch.isfinite(weight.grad).all())}")


if __name__ == "__main__":
    main()
