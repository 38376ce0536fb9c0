"""The variant grammar: round trips over the whole grammar and messages for malformed names."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_hub import (
    ArchVariant,
    NoarchVariant,
    VariantError,
    backend_type,
    format_variant,
    parse_variant,
)

# The grammar written out independently of kernel_hub.variants, to generate names from.
VARIANT_NAME_REGEX = (
    r"torch[0-9](0|[1-9][0-9]{0,2})-cxx(11|98)-(cpu|(cu|rocm|cann)[1-9][0-9]{0,2}[0-9])"
    r"-(x86_64|aarch64)-linux"
    r"|torch-(cuda|rocm|npu|cpu|universal)"
)

compute_backends = st.one_of(
    st.just(("cpu", None)),
    st.tuples(
        st.sampled_from(["cuda", "rocm", "npu"]),
        st.tuples(st.integers(1, 999), st.integers(0, 9)),
    ),
)


@st.composite
def arch_variants(draw) -> ArchVariant:
    backend, version = draw(compute_backends)
    return ArchVariant(
        torch=(draw(st.integers(0, 9)), draw(st.integers(0, 999))),
        cxx11=draw(st.booleans()),
        backend=backend,
        backend_version=version,
        cpu=draw(st.sampled_from(["x86_64", "aarch64"])),
        os="linux",
    )


variants = st.one_of(
    arch_variants(),
    st.sampled_from(["cuda", "rocm", "npu", "cpu", "universal"]).map(NoarchVariant),
)


@given(variants)
def test_parse_inverts_format(variant):
    assert parse_variant(format_variant(variant)) == variant


@given(st.from_regex(VARIANT_NAME_REGEX, fullmatch=True))
def test_format_inverts_parse(name):
    assert format_variant(parse_variant(name)) == name


@given(st.text(alphabet="torch-cxx1198cupmng_6432aly", max_size=40))
def test_any_text_parses_or_raises_variant_error(name):
    try:
        variant = parse_variant(name)
    except VariantError:
        return
    assert format_variant(variant) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("torch214-cxx11-cu130-x86_64-linux", ArchVariant((2, 14), True, "cuda", (13, 0), "x86_64", "linux")),
        ("torch29-cxx11-cu128-aarch64-linux", ArchVariant((2, 9), True, "cuda", (12, 8), "aarch64", "linux")),
        ("torch26-cxx98-cu118-x86_64-linux", ArchVariant((2, 6), False, "cuda", (11, 8), "x86_64", "linux")),
        ("torch210-cxx11-cu92-x86_64-linux", ArchVariant((2, 10), True, "cuda", (9, 2), "x86_64", "linux")),
        ("torch214-cxx11-rocm63-x86_64-linux", ArchVariant((2, 14), True, "rocm", (6, 3), "x86_64", "linux")),
        ("torch214-cxx11-cann82-aarch64-linux", ArchVariant((2, 14), True, "npu", (8, 2), "aarch64", "linux")),
        ("torch214-cxx11-cpu-x86_64-linux", ArchVariant((2, 14), True, "cpu", None, "x86_64", "linux")),
        ("torch10-cxx98-cpu-x86_64-linux", ArchVariant((1, 0), False, "cpu", None, "x86_64", "linux")),
        ("torch-cuda", NoarchVariant("cuda")),
        ("torch-npu", NoarchVariant("npu")),
        ("torch-universal", NoarchVariant("universal")),
    ],
)
def test_known_names(name, expected):
    assert parse_variant(name) == expected
    assert str(expected) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "has 5 dash-separated parts"),
        ("torch214-cxx11-cu130-x86_64", "this name has 4"),
        ("torch-stable-abi210-cu130-x86_64-linux", "this name has 6"),
        ("torch2-cxx11-cpu-x86_64-linux", "torch part 'torch2'"),
        ("torch205-cxx11-cpu-x86_64-linux", "torch part 'torch205'"),
        ("pytorch214-cxx11-cpu-x86_64-linux", "torch part 'pytorch214'"),
        ("torch214-cxx14-cpu-x86_64-linux", "ABI part 'cxx14'"),
        ("torch214-cxx11-cuda130-x86_64-linux", "compute part 'cuda130'"),
        ("torch214-cxx11-cu-x86_64-linux", "compute part 'cu'"),
        ("torch214-cxx11-xpu20253-x86_64-linux", "compute part 'xpu20253'"),
        ("torch214-cxx11-cu130-riscv64-linux", "CPU 'riscv64'"),
        ("torch214-cxx11-cu130-arm64-linux", "CPU 'arm64'"),
        ("torch214-cxx11-metal-aarch64-darwin", "compute part 'metal'"),
        ("torch214-cxx11-cpu-aarch64-darwin", "OS 'darwin'"),
        ("torch-xpu", "unknown noarch backend 'xpu'"),
        ("torch-", "unknown noarch backend ''"),
    ],
)
def test_malformed_names_say_which_part_is_wrong(name, message):
    with pytest.raises(VariantError, match=message) as raised:
        parse_variant(name)
    assert repr(name) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_non_string_is_a_variant_error():
    with pytest.raises(VariantError, match="must be a string"):
        parse_variant(None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(backend="cuda", backend_version=None), "needs a version"),
        (dict(backend="cpu", backend_version=(1, 0)), "cpu backend has no version"),
        (dict(backend="cuda", backend_version=(12, 10)), "minor 0-9"),
        (dict(backend="metal", backend_version=None), "backend 'metal'"),
        (dict(torch=(10, 0)), "major 0-9"),
        (dict(os="windows"), "OS 'windows'"),
    ],
)
def test_invalid_objects_are_refused(fields, message):
    good = dict(torch=(2, 14), cxx11=True, backend="cpu", backend_version=None, cpu="x86_64", os="linux")
    with pytest.raises(VariantError, match=message):
        ArchVariant(**{**good, **fields})


def test_unknown_noarch_backend_is_refused():
    with pytest.raises(VariantError, match="noarch backend 'tpu'"):
        NoarchVariant("tpu")


@pytest.mark.parametrize(
    ("name", "metadata_type"),
    [
        ("torch214-cxx11-cu130-x86_64-linux", "cuda"),
        ("torch214-cxx11-rocm63-x86_64-linux", "rocm"),
        ("torch214-cxx11-cann82-x86_64-linux", "cann"),
        ("torch214-cxx11-cpu-x86_64-linux", "cpu"),
        ("torch-cuda", "cuda"),
        ("torch-rocm", "rocm"),
        ("torch-npu", "cann"),
        ("torch-cpu", "cpu"),
    ],
)
def test_backend_type_uses_the_metadata_vocabulary(name, metadata_type):
    assert backend_type(parse_variant(name)) == metadata_type


def test_universal_has_no_metadata_backend_type():
    with pytest.raises(VariantError, match="torch-universal has no metadata.json backend.type"):
        backend_type(parse_variant("torch-universal"))
