"""kernelize, mappings, modes, devices and layer validation, on CPU with local kernels."""

import json
import logging
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import hosts
import kernel_hub
from kernel_hub.layer import (
    TRANSFORMER_KERNELS_MAPPING,
    CUDAProperties,
    Device,
    KernelizeError,
    KernelizeWarning,
    LayerRepository,
    LocalLayerRepository,
    LockedLayerRepository,
    Mode,
    kernelize,
    register_kernel_mapping,
    replace_kernel_forward_from_hub,
    use_kernel_forward_from_hub,
    use_kernel_mapping,
)
from kernel_hub.layer import device as device_module
from kernel_hub.layer import mapping as mapping_module
from kernel_hub.layer.capability import CapabilityRanges
from kernel_hub.layer.device import Target
from kernel_hub.layer.validate import validate_layer

REPO_ROOT = Path(__file__).resolve().parents[2]
INFERENCE_COMPILE = Mode.INFERENCE | Mode.TORCH_COMPILE
TRAINING_COMPILE = Mode.TRAINING | Mode.TORCH_COMPILE

FAKE_LAYERS = """
from torch import nn


class Inference(nn.Module):
    def forward(self, hidden_states):
        return hidden_states + 1


class InferenceCompile(nn.Module):
    can_torch_compile = True

    def forward(self, hidden_states):
        return hidden_states + 2


class Training(nn.Module):
    def forward(self, hidden_states):
        return hidden_states + 3


class TrainingCompile(nn.Module):
    can_torch_compile = True

    def forward(self, hidden_states):
        return hidden_states + 4


class Fallback(nn.Module):
    can_torch_compile = True

    def forward(self, hidden_states):
        return hidden_states + 5


class NoBackward(nn.Module):
    can_torch_compile = True
    has_backward = False

    def forward(self, hidden_states):
        return hidden_states + 6


class Double(nn.Module):
    can_torch_compile = True

    def forward(self, hidden_states):
        return hidden_states * 2


class WithInit(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, hidden_states):
        return hidden_states


class TwoArguments(nn.Module):
    def forward(self, hidden_states, residual):
        return hidden_states + residual


class RenamedArgument(nn.Module):
    def forward(self, x):
        return x


class ExtraMember(nn.Module):
    def helper(self):
        return 0

    def forward(self, hidden_states):
        return hidden_states
"""


@use_kernel_forward_from_hub("Tagged")
class TaggedHost(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, hidden_states):
        return hidden_states


@use_kernel_forward_from_hub("RMSNorm")
class LlamaStyleRMSNorm(hosts.LlamaStyleRMSNorm):
    pass


class TinyModel(nn.Module):
    def __init__(self, hidden_size=64):
        super().__init__()
        self.up = nn.Linear(hidden_size, hidden_size)
        self.norm = LlamaStyleRMSNorm(hidden_size)
        self.down = nn.Linear(hidden_size, hidden_size)
        self.final_norm = LlamaStyleRMSNorm(hidden_size)

    def forward(self, x):
        return self.final_norm(self.down(self.norm(self.up(x))))


@use_kernel_forward_from_hub("Tagged")
class ParameterlessTagged(nn.Module):
    def forward(self, hidden_states):
        return hidden_states


class ThreeTagged(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(TaggedHost() for _ in range(3))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


@pytest.fixture(autouse=True)
def empty_mapping():
    token = mapping_module._CURRENT.set(mapping_module.KernelMapping())
    yield
    mapping_module._CURRENT.reset(token)


@pytest.fixture(autouse=True)
def mapping_enabled(monkeypatch):
    monkeypatch.delenv("DISABLE_KERNEL_MAPPING", raising=False)


@pytest.fixture
def fake_kernel(tmp_path):
    """A variant directory whose `layers` module holds the FAKE_LAYERS classes."""
    module_id = f"_tk_kernelize_test_{uuid.uuid4().hex[:10]}"
    variant_dir = tmp_path / "fake-kernel"
    variant_dir.mkdir()
    metadata = {
        "id": module_id,
        "name": "fake-kernel",
        "version": 1,
        "license": "Apache-2.0",
        "backend": {"type": "cpu", "archs": []},
    }
    (variant_dir / "metadata.json").write_text(json.dumps(metadata))
    (variant_dir / "__init__.py").write_text("from . import layers\n")
    (variant_dir / "layers.py").write_text(FAKE_LAYERS)
    yield variant_dir
    for name in [name for name in sys.modules if name.startswith(module_id)]:
        del sys.modules[name]


def repo(path, layer_name):
    return LocalLayerRepository(path, layer_name=layer_name)


def layer_of(module):
    """The class whose forward the module runs."""
    forward = module.forward
    return (
        forward.__func__.__qualname__ if "forward" in module.__dict__ else type(module).__qualname__
    )


# --- the real RMSNorm layer from build/ -------------------------------------------------------


def test_rmsnorm_from_build_matches_the_original_forward():
    decisions = (
        kernel_hub.get_kernel_variants_local(REPO_ROOT) if (REPO_ROOT / "build").is_dir() else []
    )
    if not any(decision.accepted for decision in decisions):
        pytest.skip(f"{REPO_ROOT / 'build'} has no variant loadable here; run kernel-builder build")
    torch.manual_seed(0)
    model = TinyModel()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(4, 7, 64)
    expected = model(x)

    with use_kernel_mapping({"RMSNorm": {"cpu": repo(REPO_ROOT, "RMSNorm")}}):
        assert kernelize(model, mode=Mode.INFERENCE) is model

    layer = kernel_hub.get_local_kernel(REPO_ROOT).layers.RMSNorm
    assert model.norm.forward.__func__ is layer.forward
    assert model.final_norm.forward.__func__ is layer.forward
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


# --- modes ---------------------------------------------------------------------------------------

ALL_MODES = {
    Mode.INFERENCE: "Inference",
    INFERENCE_COMPILE: "InferenceCompile",
    Mode.TRAINING: "Training",
    TRAINING_COMPILE: "TrainingCompile",
    Mode.FALLBACK: "Fallback",
}


@pytest.mark.parametrize(
    ("registered", "mode", "expected"),
    [
        (list(ALL_MODES), Mode.INFERENCE, "Inference"),
        (list(ALL_MODES), INFERENCE_COMPILE, "InferenceCompile"),
        (list(ALL_MODES), Mode.TRAINING, "Training"),
        (list(ALL_MODES), TRAINING_COMPILE, "TrainingCompile"),
        ([INFERENCE_COMPILE, Mode.TRAINING, Mode.FALLBACK], Mode.INFERENCE, "InferenceCompile"),
        ([Mode.TRAINING, TRAINING_COMPILE, Mode.FALLBACK], Mode.INFERENCE, "Training"),
        ([TRAINING_COMPILE, Mode.FALLBACK], Mode.INFERENCE, "TrainingCompile"),
        ([Mode.FALLBACK], Mode.INFERENCE, "Fallback"),
        ([Mode.INFERENCE, TRAINING_COMPILE, Mode.FALLBACK], Mode.TRAINING, "TrainingCompile"),
        ([Mode.INFERENCE, INFERENCE_COMPILE, Mode.FALLBACK], Mode.TRAINING, "Fallback"),
        ([Mode.INFERENCE, Mode.TRAINING, TRAINING_COMPILE], INFERENCE_COMPILE, "TrainingCompile"),
        ([Mode.INFERENCE, Mode.TRAINING, Mode.FALLBACK], INFERENCE_COMPILE, "Fallback"),
        ([INFERENCE_COMPILE, Mode.TRAINING, Mode.FALLBACK], TRAINING_COMPILE, "Fallback"),
    ],
)
def test_mode_fallback_order(fake_kernel, registered, mode, expected):
    model = TaggedHost()
    modes = {each: repo(fake_kernel, ALL_MODES[each]) for each in registered}
    with use_kernel_mapping({"Tagged": {"cpu": modes}}):
        kernelize(model, mode=mode)
    assert layer_of(model) == f"{expected}.forward"


def test_no_mode_serves_the_request_keeps_the_original(fake_kernel):
    model = TaggedHost()
    with use_kernel_mapping({"Tagged": {"cpu": {Mode.INFERENCE: repo(fake_kernel, "Inference")}}}):
        kernelize(model, mode=Mode.TRAINING)
        with pytest.raises(KernelizeError, match="none of which serves"):
            kernelize(model, mode=Mode.TRAINING, use_fallback=False)
    assert "forward" not in model.__dict__


def test_a_bare_repository_registers_as_fallback(fake_kernel):
    register_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Fallback")}})
    repos = mapping_module.current_mapping().lookup("Tagged", Target("cpu"))
    assert list(repos) == [Mode.FALLBACK]


def test_torch_compile_skips_a_layer_that_cannot_compile(fake_kernel):
    model = TaggedHost()
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Inference")}}):
        with pytest.warns(KernelizeWarning, match="can_torch_compile"):
            kernelize(model, mode=INFERENCE_COMPILE)
        assert "forward" not in model.__dict__
        kernelize(model, mode=Mode.INFERENCE)
        assert layer_of(model) == "Inference.forward"


def test_training_skips_a_layer_without_backward(fake_kernel):
    model = TaggedHost()
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "NoBackward")}}):
        with pytest.warns(KernelizeWarning, match="has_backward"):
            kernelize(model, mode=Mode.TRAINING)
        assert "forward" not in model.__dict__
        with pytest.raises(KernelizeError, match="has_backward"):
            kernelize(model, mode=TRAINING_COMPILE, use_fallback=False)
        kernelize(model, mode=INFERENCE_COMPILE)
        assert layer_of(model) == "NoBackward.forward"


@pytest.mark.parametrize(
    "mode", [Mode.FALLBACK, Mode.TORCH_COMPILE, Mode.INFERENCE | Mode.TRAINING]
)
def test_kernelize_rejects_modes_it_cannot_run_in(mode):
    with pytest.raises(ValueError, match="Mode"):
        kernelize(TaggedHost(), mode=mode)


def test_a_mapping_rejects_an_unknown_mode(fake_kernel):
    with pytest.raises(ValueError, match="cannot register"):
        register_kernel_mapping(
            {"Tagged": {"cpu": {Mode.TORCH_COMPILE: repo(fake_kernel, "Double")}}}
        )


def test_kernelize_again_decides_from_the_original_forward(fake_kernel):
    model = TaggedHost()
    modes = {
        Mode.INFERENCE: repo(fake_kernel, "Inference"),
        Mode.TRAINING: repo(fake_kernel, "Training"),
    }
    with use_kernel_mapping({"Tagged": {"cpu": modes}}):
        kernelize(model, mode=Mode.INFERENCE)
        assert layer_of(model) == "Inference.forward"
        kernelize(model, mode=Mode.TRAINING)
        assert layer_of(model) == "Training.forward"
    kernelize(model, mode=Mode.TRAINING)
    assert "forward" not in model.__dict__
    torch.testing.assert_close(model(torch.ones(2)), torch.ones(2))


# --- devices -------------------------------------------------------------------------------------


def test_the_smallest_capability_range_wins():
    ranges = CapabilityRanges()
    ranges.insert(0, None, "any")
    ranges.insert(75, 90, "turing-hopper")
    ranges.insert(80, 89, "ampere-ada")
    ranges.insert(90, 90, "hopper")
    assert ranges.select(86) == "ampere-ada"
    assert ranges.select(90) == "hopper"
    assert ranges.select(75) == "turing-hopper"
    assert ranges.select(100) == "any"
    assert ranges.select(None) == "any"
    ranges.insert(80, 89, "ampere-ada-2")
    assert ranges.select(86) == "ampere-ada-2"
    assert CapabilityRanges().select(90) is None


def test_kernelize_picks_the_range_containing_the_gpu(fake_kernel, monkeypatch):
    monkeypatch.setattr(device_module, "gpu_capability", lambda index=None: 90)
    mapping = {
        "Tagged": {
            "cuda": repo(fake_kernel, "Fallback"),
            Device("cuda", CUDAProperties(min_capability=80, max_capability=100)): repo(
                fake_kernel, "Training"
            ),
            Device("cuda", CUDAProperties(min_capability=90, max_capability=90)): repo(
                fake_kernel, "Inference"
            ),
            Device("cuda", CUDAProperties(min_capability=100, max_capability=120)): repo(
                fake_kernel, "Double"
            ),
        }
    }
    model = TaggedHost()
    with use_kernel_mapping(mapping):
        kernelize(model, mode=Mode.INFERENCE, device="cuda")
    assert layer_of(model) == "Inference.forward"


def test_an_unknown_gpu_only_matches_an_unrestricted_entry(fake_kernel, monkeypatch):
    monkeypatch.setattr(device_module, "gpu_capability", lambda index=None: None)
    ranged = Device("cuda", CUDAProperties(min_capability=80, max_capability=90))
    model = TaggedHost()
    with use_kernel_mapping({"Tagged": {ranged: repo(fake_kernel, "Inference")}}):
        kernelize(model, mode=Mode.INFERENCE, device="cuda")
    assert "forward" not in model.__dict__


def test_device_is_inferred_from_the_model_and_other_devices_are_ignored(fake_kernel):
    model = TaggedHost()
    with use_kernel_mapping({"Tagged": {"cuda": repo(fake_kernel, "Inference")}}):
        kernelize(model, mode=Mode.INFERENCE)
        assert "forward" not in model.__dict__
        with pytest.raises(KernelizeError, match="not cpu"):
            kernelize(model, mode=Mode.INFERENCE, use_fallback=False)


def test_device_arguments_are_checked():
    with pytest.raises(ValueError, match="CUDAProperties only applies"):
        Device("cpu", CUDAProperties(min_capability=80, max_capability=90))
    with pytest.raises(ValueError, match="greater than"):
        CUDAProperties(min_capability=90, max_capability=80)
    with pytest.raises(ValueError, match="unknown device type"):
        Device("gpu")
    with pytest.raises(ValueError, match="has no parameters"):
        kernelize(ParameterlessTagged(), mode=Mode.INFERENCE)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer_name", "problem"),
    [
        ("WithInit", "overrides __init__"),
        ("TwoArguments", "takes"),
        ("RenamedArgument", "takes"),
        ("ExtraMember", "defines helper"),
    ],
)
def test_validation_rejects_layers_that_cannot_replace_the_host(fake_kernel, layer_name, problem):
    layer = repo(fake_kernel, layer_name).load()
    with pytest.raises(TypeError, match=problem):
        validate_layer(layer, TaggedHost)

    model = TaggedHost()
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, layer_name)}}):
        with pytest.warns(KernelizeWarning, match=problem):
            kernelize(model, mode=Mode.INFERENCE)
        assert "forward" not in model.__dict__
        with pytest.raises(KernelizeError, match=problem) as raised:
            kernelize(model, mode=Mode.INFERENCE, use_fallback=False)
    assert isinstance(raised.value.__cause__, TypeError)


def test_validation_accepts_a_matching_layer(fake_kernel):
    validate_layer(repo(fake_kernel, "Double").load(), TaggedHost)
    with pytest.raises(TypeError, match="not an nn.Module"):
        validate_layer(object, TaggedHost)


# --- failures and switches -----------------------------------------------------------------------


def test_a_kernel_that_cannot_load_warns_once_and_keeps_the_original(tmp_path):
    missing = tmp_path / "does-not-exist"
    model = ThreeTagged()
    x = torch.randn(5)
    with use_kernel_mapping({"Tagged": {"cpu": repo(missing, "Double")}}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kernelize(model, mode=Mode.INFERENCE)
    messages = [str(w.message) for w in caught if issubclass(w.category, KernelizeWarning)]
    assert len(messages) == 1
    assert (
        "3 modules" in messages[0]
        and "could not be loaded" in messages[0]
        and str(missing) in messages[0]
    )
    assert all("forward" not in block.__dict__ for block in model.blocks)
    torch.testing.assert_close(model(x), x)


def test_use_fallback_false_raises_on_a_kernel_that_cannot_load(tmp_path):
    with use_kernel_mapping({"Tagged": {"cpu": repo(tmp_path / "missing", "Double")}}):
        with pytest.raises(KernelizeError, match="could not be loaded"):
            kernelize(TaggedHost(), mode=Mode.INFERENCE, use_fallback=False)


def test_missing_layer_in_the_kernel_is_named(fake_kernel):
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "NoSuchLayer")}}):
        with pytest.raises(KernelizeError, match="no layer 'NoSuchLayer'.*Double"):
            kernelize(TaggedHost(), mode=Mode.INFERENCE, use_fallback=False)


def test_an_unmapped_layer_name_stays_quiet_unless_use_fallback_is_false():
    model = TaggedHost()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernelize(model, mode=Mode.INFERENCE)
    with pytest.raises(KernelizeError, match="no kernel is mapped for layer name 'Tagged'"):
        kernelize(model, mode=Mode.INFERENCE, use_fallback=False)


def test_disable_kernel_mapping_keeps_every_forward_original(fake_kernel, monkeypatch):
    model = ThreeTagged()
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Double")}}):
        kernelize(model, mode=Mode.INFERENCE)
        assert all(layer_of(block) == "Double.forward" for block in model.blocks)
        monkeypatch.setenv("DISABLE_KERNEL_MAPPING", "1")
        kernelize(model, mode=Mode.INFERENCE)
    assert all("forward" not in block.__dict__ for block in model.blocks)


def test_debug_log_names_each_replaced_module(fake_kernel, caplog):
    model = ThreeTagged()
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Double")}}):
        with caplog.at_level(logging.DEBUG, logger="kernel_hub"):
            kernelize(model, mode=Mode.INFERENCE)
    replaced = [
        record.getMessage() for record in caplog.records if "now runs" in record.getMessage()
    ]
    assert len(replaced) == 3
    assert "blocks.0 (TaggedHost) now runs Double.forward" in replaced[0]
    torch.testing.assert_close(model(torch.ones(2)), torch.full((2,), 8.0))


# --- mappings ------------------------------------------------------------------------------------


def test_use_kernel_mapping_restores_on_exit(fake_kernel):
    register_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Inference")}})
    model = TaggedHost()
    with pytest.raises(RuntimeError, match="leave the block"):
        with use_kernel_mapping({"Other": {"cpu": repo(fake_kernel, "Double")}}):
            assert mapping_module.current_mapping().layer_names() == ["Other", "Tagged"]
            register_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Double")}})
            kernelize(model, mode=Mode.INFERENCE)
            assert layer_of(model) == "Double.forward"
            raise RuntimeError("leave the block")
    assert mapping_module.current_mapping().layer_names() == ["Tagged"]
    kernelize(model, mode=Mode.INFERENCE)
    assert layer_of(model) == "Inference.forward"


def test_inherit_mapping_false_starts_empty(fake_kernel):
    register_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Inference")}})
    with use_kernel_mapping({"Other": {"cpu": repo(fake_kernel, "Double")}}, inherit_mapping=False):
        assert mapping_module.current_mapping().layer_names() == ["Other"]
    register_kernel_mapping({"Other": {"cpu": repo(fake_kernel, "Double")}}, inherit_mapping=False)
    assert mapping_module.current_mapping().layer_names() == ["Other"]


def test_registering_a_device_again_replaces_its_repositories(fake_kernel):
    register_kernel_mapping({"Tagged": {"cpu": {Mode.INFERENCE: repo(fake_kernel, "Inference")}}})
    register_kernel_mapping(
        {
            "Tagged": {
                "cpu": {Mode.TRAINING: repo(fake_kernel, "Training")},
                "cuda": repo(fake_kernel, "Double"),
            }
        }
    )
    mapping = mapping_module.current_mapping()
    assert list(mapping.lookup("Tagged", Target("cpu"))) == [Mode.TRAINING]
    assert list(mapping.lookup("Tagged", Target("cuda", 90))) == [Mode.FALLBACK]


# --- marking hosts -------------------------------------------------------------------------------


def test_decorating_a_function_makes_a_replaceable_module(fake_kernel):
    @use_kernel_forward_from_hub("Tagged")
    def passthrough(hidden_states):
        return hidden_states

    assert isinstance(passthrough, nn.Module)
    x = torch.randn(3)
    torch.testing.assert_close(passthrough(x), x)

    model = nn.Sequential(nn.Linear(3, 3), passthrough)
    expected = model(x)
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Double")}}):
        kernelize(model, mode=Mode.INFERENCE)
    assert layer_of(passthrough) == "Double.forward"
    torch.testing.assert_close(model(x), expected * 2)


def test_replace_kernel_forward_from_hub_marks_a_third_party_class(fake_kernel):
    class ThirdParty(nn.Module):
        def forward(self, hidden_states):
            return hidden_states

    replace_kernel_forward_from_hub(ThirdParty, "Tagged")
    model = ThirdParty()
    with use_kernel_mapping({"Tagged": {"cpu": repo(fake_kernel, "Double")}}):
        kernelize(model, mode=Mode.INFERENCE, device="cpu")
    assert layer_of(model) == "Double.forward"
    with pytest.raises(TypeError, match="nn.Module subclass"):
        replace_kernel_forward_from_hub(int, "Tagged")


# --- repositories --------------------------------------------------------------------------------


def test_layer_repository_is_lazy_and_loads_through_get_kernel(fake_kernel, monkeypatch):
    calls = []

    def fake_get_kernel(repo_id, **options):
        calls.append((repo_id, options))
        return kernel_hub.get_local_kernel(fake_kernel)

    monkeypatch.setattr(kernel_hub, "get_kernel", fake_get_kernel)
    hub_repo = LayerRepository("org/fake", layer_name="Double", version=2)
    assert calls == []
    assert hub_repo.load().__name__ == "Double"
    assert hub_repo.load().__name__ == "Double"
    assert calls == [("org/fake", {"revision": None, "version": 2})]

    LayerRepository("org/fake", layer_name="Double", revision="abc", trust_remote_code=True).load()
    assert calls[-1] == (
        "org/fake",
        {"revision": "abc", "version": None, "trust_remote_code": True},
    )


def test_layer_repository_needs_exactly_one_of_version_and_revision():
    with pytest.raises(ValueError, match="exactly one"):
        LayerRepository("org/fake", layer_name="Double")
    with pytest.raises(ValueError, match="exactly one"):
        LayerRepository("org/fake", layer_name="Double", version=1, revision="main")


def test_locked_layer_repository_without_a_lockfile_says_what_it_needs(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="kernels.lock"):
        LockedLayerRepository("org/fake", layer_name="Double").load()


def test_transformer_kernels_mapping_is_defined_not_registered():
    assert mapping_module.current_mapping().layer_names() == []
    with use_kernel_mapping(TRANSFORMER_KERNELS_MAPPING):
        mapping = mapping_module.current_mapping()
        for name in ("RMSNorm", "SiluAndMul", "AdaLayerNormZero"):
            for target in (Target("cpu"), Target("cuda", 90)):
                hub_repo = mapping.lookup(name, target)[Mode.FALLBACK]
                assert isinstance(hub_repo, LayerRepository)
                assert (hub_repo.repo_id, hub_repo.layer_name, hub_repo.version) == (
                    "transformer-kernels/transformer-kernels",
                    name,
                    1,
                )


def test_transformer_kernels_mapping_names_every_layer_of_the_package():
    decisions = (
        kernel_hub.get_kernel_variants_local(REPO_ROOT) if (REPO_ROOT / "build").is_dir() else []
    )
    if not any(decision.accepted for decision in decisions):
        pytest.skip(f"{REPO_ROOT / 'build'} has no variant loadable here; run kernel-builder build")
    layers = kernel_hub.get_local_kernel(REPO_ROOT).layers
    assert sorted(TRANSFORMER_KERNELS_MAPPING) == sorted(layers.__all__)
    for name in layers.__all__:
        validate_layer(getattr(layers, name), getattr(layers, name))
