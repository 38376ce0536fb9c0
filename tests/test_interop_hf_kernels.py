"""What we build loads and verifies with Hugging Face's `kernels` loader (pinned 0.17.2),
and every staged variant passes `kernel-builder check` (manylinux_2_28 symbols, no RPATH,
digests, fresh-process import)."""

import subprocess
import sys

import pytest
import torch

from support import ROOT

kernels = pytest.importorskip("kernels", reason="Hugging Face's kernels is not installed")


def test_every_built_variant_passes_kernel_builder_check(built_variants):
    from kernel_builder.check import check_build_dir, format_check_report

    report = check_build_dir(ROOT / "build")
    assert set(built_variants) <= set(report)
    failures = {name: [r for r in results if not r.ok] for name, results in report.items()}
    assert not any(failures.values()), format_check_report(report)


def test_hf_kernels_loads_our_build_dir_and_runs_rms_norm(built_variants):
    """In a fresh process: kernels.get_local_kernel(<repo>) picks one of our variants."""
    code = "\n".join(
        [
            "import pathlib, torch, kernels",
            f"k = kernels.get_local_kernel(pathlib.Path({str(ROOT)!r}), backend='cpu', trust_remote_code=True)",
            "x = torch.randn(3, 40); w = torch.randn(40)",
            "y = k.rms_norm(x, w, 1e-6)",
            "ref = k.rms_norm_reference(x.double(), w.double(), 1e-6)",
            "torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)",
            "print(type(k).__name__, k.__name__)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "_transformer_kernels_cpu_" in out.stdout


def test_hf_kernels_verifies_our_digests(built_variants):
    from kernels._rust import Digest, DigestAlgorithm, Metadata

    for name, path in built_variants.items():
        metadata = Metadata.read_from_file(path / "metadata.json")
        actual = Digest.hash_variant(DigestAlgorithm.SHA256, path)
        metadata.digest.validate(actual)
        assert f'NAMESPACE = "{metadata.id}"' in (path / "_ops.py").read_text(), name
