"""Which SASS, PTX and capability macros a CUDA kernel is compiled with."""

import dataclasses

from kernel_builder.build import _metadata_archs
from kernel_builder.config import KernelConfig
from kernel_builder.ninja_gen import gencode_flags, kernel_capabilities


def _kernel(capabilities):
    fields = {f.name: None for f in dataclasses.fields(KernelConfig)}
    fields.update(name="k_cuda", backend="cuda", cuda_capabilities=capabilities)
    return KernelConfig(**fields)


def _gencodes(flags):
    return [flags[i + 1] for i, flag in enumerate(flags) if flag == "-gencode"]


def test_every_capability_gets_sass_and_the_highest_gets_ptx():
    flags = gencode_flags(("8.0", "9.0"))
    assert _gencodes(flags) == [
        "arch=compute_80,code=sm_80",
        "arch=compute_90,code=sm_90",
        "arch=compute_90,code=compute_90",
    ]
    assert "-DTK_CUDA_SM_80" in flags and "-DTK_CUDA_SM_90" in flags


def test_arch_specific_capability_gets_its_sass_and_portable_ptx():
    flags = gencode_flags(("8.0", "9.0a"))
    assert _gencodes(flags) == [
        "arch=compute_80,code=sm_80",
        "arch=compute_90a,code=sm_90a",
        "arch=compute_90,code=compute_90",
    ]
    assert "-DTK_CUDA_SM_90A" in flags and "-DTK_CUDA_SM_90" not in flags


def test_arch_override_keeps_a_declared_arch_specific_form():
    kernel = _kernel(("8.0", "9.0a"))
    assert kernel_capabilities(kernel, ("9.0",)) == ("9.0a",)
    assert kernel_capabilities(kernel, ("8.0", "9.0")) == ("8.0", "9.0a")
    assert kernel_capabilities(kernel, ("8.6",)) == ("8.6",)
    assert kernel_capabilities(kernel, None) == ("8.0", "9.0a")
    assert kernel_capabilities(_kernel(("8.0", "9.0")), ("9.0",)) == ("9.0",)


def test_variant_capabilities_count_arch_specific_sass_for_its_gpu():
    assert _metadata_archs([("8.0", "9.0a"), ("8.0", "9.0")]) == ("8.0", "9.0+PTX")
    assert _metadata_archs([("9.0a",), ("8.0",)]) is None
    assert _metadata_archs([("7.5", "8.0"), ("8.0", "8.6")]) == ("8.0+PTX",)
