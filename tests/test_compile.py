"""torch.compile(fullgraph=True) runs the ops with no graph break, forward and backward, and
the compiled result equals eager. The compiled callable is called; that is the test."""

import torch

from support import HAS_GPU


def _block(kernel, x, residual, weight):
    y, stream = kernel.rms_norm_add(x, residual, weight, 1e-6)
    return (kernel.rms_norm(y * 2.0, weight, 1e-5) * stream).sum()


def test_compiled_forward_and_backward_equal_eager(variant_modules):
    name = "cuda" if HAS_GPU and "cuda" in variant_modules else "cpu"
    kernel = variant_modules[name]
    device = "cuda" if name == "cuda" and HAS_GPU else "cpu"
    torch._dynamo.reset()
    leaves = [torch.randn(4, 6, 64, device=device) for _ in range(2)] + [
        torch.randn(64, device=device)
    ]

    def run(fn):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        out = fn(kernel, *inputs)
        out.backward()
        return out.detach(), [t.grad for t in inputs]

    compiled = torch.compile(_block, fullgraph=True)
    compiled_out, compiled_grads = run(compiled)
    eager_out, eager_grads = run(_block)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-5)
