"""Contract tests of the optimum-neuron generation backend against a stand-in ``optimum.neuron``.

optimum-neuron and its hardware cannot be installed here. The stand-in below takes the SDK's
place in ``sys.modules``: its ``NeuronModelForCausalLM`` records every ``from_pretrained`` call
(the folder, ``export`` and the export keywords) and wraps a real transformers causal LM loaded
from that folder, so that the exported artifact really loads and really generates. Like
optimum-neuron's streamlined ``generate``, it honours ``stopping_criteria``, drops a
``streamer``, and refuses shapes beyond the compiled ones.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, Optional

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from neuronperf.backends import find_backend, get_backend  # noqa: E402
from neuronperf.backends.generation import CausalLMGenerate  # noqa: E402
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze  # noqa: E402
from neuronperf.errors import (  # noqa: E402
    BackendUnavailable,
    CompileFailed,
    ModelLoadError,
    SpecError,
    UsageError,
)
from neuronperf.measure.worker import TokenClock, check_tokens  # noqa: E402
from neuronperf.sources.factory import build_model  # noqa: E402
from neuronperf.spec.load import parse_spec  # noqa: E402

INSTALL = "pip install optimum-neuron --extra-index-url=https://pip.repos.neuron.amazonaws.com"
TINY_GPT2 = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 100, "n_positions": 64}
#: The file in which the stand-in keeps its "compiled" settings inside a saved folder.
STANDIN_NEURON_CONFIG = "standin_neuron_config.json"


def make_entry(
    prompt_len: int = 6,
    new_tokens: int = 4,
    batch_size: int = 2,
    pipeline_size: int = 1,
    compiler_args: Any = None,
    factory: str = "neuronperf.zoo:gpt2",
    kwargs: Optional[dict] = None,
    task: str = "generate",
) -> CompileEntry:
    return CompileEntry(
        model=ModelRef("gpt2-tiny", factory, freeze(TINY_GPT2 if kwargs is None else kwargs)),
        params=(("prompt_len", prompt_len),),
        inputs=(TensorSpec((prompt_len,), "int64", 0, 100),),
        batch_size=batch_size,
        pipeline_size=pipeline_size,
        framework="torch",
        device_type="neuron",
        compiler="optimum",
        compiler_args=freeze(compiler_args if compiler_args is not None else {}),
        task=task,
        new_tokens=new_tokens if task == "generate" else None,
    )


class NeuronModelForCausalLMStandIn:
    """optimum.neuron.NeuronModelForCausalLM as far as neuronperf relies on it: a classmethod
    ``from_pretrained(folder, export=..., **export_keywords)``, ``save_pretrained(folder)``,
    ``config`` and ``generate(input_ids, attention_mask, generation_config, stopping_criteria,
    **generation_options)``."""

    calls: list = []

    def __init__(self, model: Any, neuron_config: dict):
        self.model = model
        self.neuron_config = neuron_config
        self.generate_calls: list[dict] = []

    @property
    def config(self) -> Any:
        return self.model.config

    @classmethod
    def from_pretrained(cls, model_id: Any, export: bool = False, **kwargs: Any) -> NeuronModelForCausalLMStandIn:
        folder = Path(model_id)
        cls.calls.append(("from_pretrained", folder, export, dict(kwargs)))
        if export:
            # The export starts from a transformers checkpoint folder (config + weights).
            assert (folder / "config.json").is_file(), f"no transformers checkpoint in {folder}"
            neuron_config = dict(kwargs)
        else:
            # Loading starts from an exported folder, and takes its compiled settings from it.
            neuron_config = json.loads((folder / STANDIN_NEURON_CONFIG).read_text())
        model = transformers.AutoModelForCausalLM.from_pretrained(folder)
        return cls(model.eval(), neuron_config)

    def save_pretrained(self, save_directory: str) -> None:
        self.calls.append(("save_pretrained", Path(save_directory)))
        self.model.save_pretrained(save_directory)
        Path(save_directory, STANDIN_NEURON_CONFIG).write_text(json.dumps(self.neuron_config))

    def generate(self, input_ids: Any, attention_mask: Any = None, generation_config: Any = None,
                 stopping_criteria: Any = None, **kwargs: Any) -> Any:
        self.generate_calls.append({"stopping_criteria": stopping_criteria, **kwargs})
        kwargs.pop("streamer", None)  # optimum-neuron's generate drops a streamer (it logs a warning)
        batch, length = input_ids.shape
        if batch > self.neuron_config["batch_size"]:
            raise ValueError(f"batch {batch} exceeds the compiled batch size {self.neuron_config['batch_size']}")
        if length + kwargs.get("max_new_tokens", 0) > self.neuron_config["sequence_length"]:
            raise ValueError(f"{length} + {kwargs.get('max_new_tokens')} exceeds the compiled sequence length")
        return self.model.generate(input_ids, attention_mask=attention_mask, generation_config=generation_config,
                                   stopping_criteria=stopping_criteria, **kwargs)


@pytest.fixture
def optimum_neuron_standin(monkeypatch):
    module = types.ModuleType("optimum.neuron")
    module.__version__ = "0.4.0-standin"
    calls: list = []
    monkeypatch.setattr(NeuronModelForCausalLMStandIn, "calls", calls)
    module.NeuronModelForCausalLM = NeuronModelForCausalLMStandIn
    module.calls = calls
    monkeypatch.setitem(sys.modules, "optimum.neuron", module)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything is read from local folders
    return module


def counting_clock() -> TokenClock:
    return TokenClock(16)


# ---- compile and load -------------------------------------------------------------------------


def test_compile_exports_with_the_documented_keywords_and_load_generates(optimum_neuron_standin, tmp_path):
    backend = get_backend("optimum-neuron")
    entry = make_entry(prompt_len=6, new_tokens=4, batch_size=2, pipeline_size=2)
    assert backend.artifact_suffix("optimum") == ""  # a folder
    path = tmp_path / f"{entry.id}{backend.artifact_suffix('optimum')}"
    backend.compile(entry, path)

    (export, save) = optimum_neuron_standin.calls
    kind, checkpoint, exported, kwargs = export
    assert kind == "from_pretrained" and exported is True
    assert kwargs == {"batch_size": 2, "sequence_length": 6 + 4, "num_cores": 2}
    assert checkpoint.parent == tmp_path  # next to the artifact, not in /tmp
    assert not checkpoint.exists()  # the scratch checkpoint is gone once the artifact is saved
    assert save == ("save_pretrained", path)
    assert path.is_dir() and (path / STANDIN_NEURON_CONFIG).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]

    model = backend.load(entry, path, device_id=0)
    kind, folder, exported, kwargs = optimum_neuron_standin.calls[-1]
    assert (kind, folder, exported, kwargs) == ("from_pretrained", path, False, {})
    (input_ids,) = backend.example_inputs(entry)
    assert tuple(input_ids.shape) == (2, 6) and input_ids.dtype == torch.int64

    clock = counting_clock()
    sequences = model(input_ids, on_token=clock)
    assert clock.n == 4  # once per decoding step, never for the prompt
    check_tokens(clock.n, entry.new_tokens)  # what the worker checks after each request
    assert tuple(sequences.shape) == (2, 6 + 4)
    assert torch.equal(sequences[:, :6], input_ids)

    # Each step is heard through the documented stopping_criteria, not through a streamer.
    (call,) = model.model.generate_calls
    assert call["stopping_criteria"] is not None and "streamer" not in call
    assert call["max_new_tokens"] == call["min_new_tokens"] == 4
    assert call["do_sample"] is False and call["num_beams"] == 1

    # The exported model is the factory's model: the same greedy tokens as the eager one.
    eager = CausalLMGenerate(build_model(entry.model).eval(), 4)
    assert torch.equal(sequences, eager(input_ids))

    # A request without a clock passes no criterion of neuronperf's own.
    assert tuple(model(input_ids).shape) == (2, 10)
    assert model.model.generate_calls[-1]["stopping_criteria"] is None


def test_compiler_args_reach_the_export_call(optimum_neuron_standin, tmp_path):
    backend = get_backend("optimum-neuron")
    entry = make_entry(compiler_args={"auto_cast_type": "bf16", "sequence_length": 32,
                                      "export_kwargs": {"trust_remote_code": False}})
    backend.check_compiler_args(entry)
    backend.compile(entry, tmp_path / "gpt2")
    _, _, exported, kwargs = optimum_neuron_standin.calls[0]
    assert exported is True
    assert kwargs == {"batch_size": 2, "sequence_length": 32, "num_cores": 1, "auto_cast_type": "bf16",
                      "trust_remote_code": False}


@pytest.mark.parametrize(
    ("compiler_args", "message"),
    [
        (["--auto-cast", "none"], "compiler_args for torch/optimum must be a mapping with keys from: auto_cast_type, sequence_length, export_kwargs"),
        ({"num_cores": 2}, "num_cores not understood by torch/optimum; accepted: auto_cast_type, sequence_length, export_kwargs"),
        ({"auto_cast_type": 16}, "auto_cast_type must be a name such as bf16"),
        ({"sequence_length": 0}, "sequence_length must be a positive integer"),
        ({"sequence_length": True}, "sequence_length must be a positive integer"),
        ({"export_kwargs": ["x"]}, "export_kwargs must be a mapping"),
        ({"export_kwargs": {"num_cores": 4}}, r"must not contain what neuronperf sets \(num_cores: set it with sweep.pipeline_sizes\)"),
        ({"export_kwargs": {"batch_size": 4}}, "batch_size: set it with sweep.batch_sizes"),
    ],
)
def test_bad_compiler_args_are_usage_errors(optimum_neuron_standin, tmp_path, compiler_args, message):
    backend = get_backend("optimum-neuron")
    entry = make_entry(compiler_args=compiler_args)
    with pytest.raises(UsageError, match=message):
        backend.check_compiler_args(entry)
    with pytest.raises(UsageError, match=message):
        backend.compile(entry, tmp_path / "gpt2")
    assert optimum_neuron_standin.calls == []


def test_a_forward_entry_is_refused(optimum_neuron_standin, tmp_path):
    backend = get_backend("optimum-neuron")
    entry = make_entry(task="forward")
    for call in (
        lambda: backend.check_compiler_args(entry),
        lambda: backend.compile(entry, tmp_path / "gpt2"),
        lambda: backend.load(entry, tmp_path, 0),
    ):
        with pytest.raises(UsageError, match="compiler optimum builds generation models only; give the model task: generate"):
            call()


# ---- entries that cannot be compiled ----------------------------------------------------------


def test_a_model_that_cannot_generate_fails_to_compile(optimum_neuron_standin, tmp_path):
    entry = make_entry(factory="neuronperf.zoo:mlp", kwargs={"in_features": 6})
    with pytest.raises(CompileFailed, match=r"needs a causal language model with a generate\(\) method.*Sequential"):
        get_backend("optimum-neuron").compile(entry, tmp_path / "mlp")
    assert optimum_neuron_standin.calls == [] and not (tmp_path / "mlp").exists()


def test_a_prompt_longer_than_the_context_fails_to_compile(optimum_neuron_standin, tmp_path):
    entry = make_entry(prompt_len=62, new_tokens=4)  # n_positions is 64
    with pytest.raises(CompileFailed, match=r"prompt of 62 tokens \+ new_tokens 4 = 66 positions, more than the model's context of 64"):
        get_backend("optimum-neuron").compile(entry, tmp_path / "gpt2")
    assert optimum_neuron_standin.calls == []


@pytest.mark.parametrize(
    ("sequence_length", "message"),
    [
        (8, r"sequence_length 8 is shorter than prompt 6 \+ new_tokens 4 = 10 tokens"),
        (128, "sequence_length 128 is longer than the model's context of 64"),
    ],
)
def test_a_sequence_length_that_does_not_fit_fails_to_compile(optimum_neuron_standin, tmp_path, sequence_length, message):
    entry = make_entry(compiler_args={"sequence_length": sequence_length})
    with pytest.raises(CompileFailed, match=message):
        get_backend("optimum-neuron").compile(entry, tmp_path / "gpt2")
    assert optimum_neuron_standin.calls == []


def test_an_export_failure_is_the_entrys_error(optimum_neuron_standin, monkeypatch, tmp_path):
    def refuse(model_id, export=False, **kwargs):
        raise RuntimeError("neuronx-cc exited with 70")

    monkeypatch.setattr(NeuronModelForCausalLMStandIn, "from_pretrained", staticmethod(refuse))
    with pytest.raises(CompileFailed, match=r"from_pretrained\(export=True\) failed: RuntimeError: neuronx-cc exited with 70"):
        get_backend("optimum-neuron").compile(make_entry(), tmp_path / "gpt2")
    assert list(tmp_path.iterdir()) == []  # no scratch checkpoint left behind


def test_load_needs_the_artifact_folder(optimum_neuron_standin, tmp_path):
    with pytest.raises(ModelLoadError, match="optimum-neuron model folder not found"):
        get_backend("optimum-neuron").load(make_entry(), tmp_path / "absent", 0)


# ---- the SDK, the registry and the cores -----------------------------------------------------


def test_missing_sdk_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optimum.neuron", None)  # makes `import optimum.neuron` fail
    backend = get_backend("optimum-neuron")
    (tmp_path / "artifact").mkdir()
    for call in (
        lambda: backend.check_available("neuron"),
        lambda: backend.compiler_version("optimum"),
        lambda: backend.compile(make_entry(), tmp_path / "gpt2"),
        lambda: backend.load(make_entry(), tmp_path / "artifact", 0),
    ):
        with pytest.raises(BackendUnavailable) as raised:
            call()
        message = str(raised.value)
        assert "device_type neuron with framework torch and compiler optimum" in message
        assert f"install with: {INSTALL}" in message
    assert not (tmp_path / "gpt2").exists()


def test_compiler_version_uses_the_sdk_version(optimum_neuron_standin):
    assert get_backend("optimum-neuron").compiler_version("optimum").startswith("optimum-neuron 0.4.0-standin")
    with pytest.raises(UsageError, match="has no compiler 'neuronx'"):
        get_backend("optimum-neuron").compiler_version("neuronx")


def test_registry_and_core_pinning():
    backend = find_backend("torch", "neuron", "optimum")
    assert backend.name == "optimum-neuron" and backend.supports_pipeline
    assert find_backend("torch", "neuron").name == "torch-neuronx"  # neuronx stays the default
    # pipeline_size is the number of cores the model is split over: each copy gets that many.
    assert backend.visible_devices_env("neuron", 1, 2) == {"NEURON_RT_VISIBLE_CORES": "2-3"}


# ---- the spec --------------------------------------------------------------------------------


def generate_spec(task_lines: str) -> str:
    return (
        "version: 1\n"
        "framework: torch\n"
        "device_type: neuron\n"
        "compiler: optimum\n"
        "models:\n"
        "  - name: gpt2-tiny\n"
        '    factory: "neuronperf.zoo:gpt2"\n'
        "    kwargs: {n_layer: 1, n_embd: 32, n_head: 2, vocab_size: 100, n_positions: 64}\n"
        f"{task_lines}"
        "    params:\n"
        "      prompt_len: [8, 16]\n"
        "    inputs:\n"
        "      - {shape: [$prompt_len], dtype: int64, low: 0, high: 100}\n"
        "sweep:\n"
        "  pipeline_sizes: [1, 2]\n"
    )


def test_spec_with_a_generate_model_on_optimum_validates():
    spec = parse_spec(generate_spec("    task: generate\n    generate: {new_tokens: 8}\n"))
    (model,) = spec.models
    assert (spec.framework, spec.device_type, spec.compiler) == ("torch", "neuron", "optimum")
    assert model.task == "generate" and model.new_tokens == 8


def test_spec_with_a_forward_model_on_optimum_is_a_located_error():
    with pytest.raises(SpecError) as raised:
        parse_spec(generate_spec(""), source="optimum.yaml")
    assert str(raised.value).splitlines() == [
        "optimum.yaml:6:5: models[0]: compiler optimum builds generation models only; give this model task: generate",
    ]


# ---- the adapter's two ways of hearing each step ----------------------------------------------


@pytest.mark.parametrize("token_hook", ["streamer", "stopping_criteria"])
def test_both_token_hooks_count_every_step_of_transformers_generate(token_hook):
    model = build_model(make_entry().model).eval()
    generate = CausalLMGenerate(model, 3, token_hook=token_hook)
    clock = counting_clock()
    sequences = generate(torch.randint(0, 100, (2, 5)), on_token=clock)
    assert clock.n == 3 and tuple(sequences.shape) == (2, 8)


def test_an_unknown_token_hook_is_refused():
    with pytest.raises(ValueError, match="token_hook must be one of streamer, stopping_criteria"):
        CausalLMGenerate(object(), 3, token_hook="callback")


def test_the_python_api_never_picks_optimum_for_a_forward_model(optimum_neuron_standin, monkeypatch):
    # neuronperf.torch.compile without a compiler takes the first Neuron backend whose SDK
    # imports; optimum-neuron builds generation models only, so it is never that one.
    from neuronperf.api.compiling import choose_backend

    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    monkeypatch.setitem(sys.modules, "torch_neuron", None)
    with pytest.raises(BackendUnavailable, match="needs torch-neuronx"):
        choose_backend("torch", "neuron")
    assert choose_backend("torch", "neuron", "optimum").name == "optimum-neuron"
