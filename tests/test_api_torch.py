"""neuronperf.torch.compile / benchmark on CPU: real TorchScript artifacts, real worker processes.

Benchmarks use short durations and explicit n_models/workers_per_model, except where the test is
about the defaults.
"""

from __future__ import annotations

import importlib.util
import json
import os

import api_models as am
import numpy as np
import pytest
import torch

import neuronperf
import neuronperf.torch as npt
from neuronperf.api.arguments import config_grid
from neuronperf.errors import BackendUnavailable, ModelIndexError, UsageError

BATCH_SIZES = [1, 2, 3]
SHORT = {"duration": 0.5, "n_models": 1, "workers_per_model": 1, "device_type": "cpu"}
# FixedBatchMLP bakes its batch size into the trace on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def make_inputs(batch_sizes=BATCH_SIZES):
    return [torch.rand((b, am.FEATURES)) for b in batch_sizes]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a fresh working directory, as a user's script would (index and models/ go there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fixed_batch_index(in_tmp):
    """An index of FixedBatchMLP artifacts for batch sizes 1, 2, 3 (each fails on other sizes)."""
    inputs = make_inputs()
    return npt.compile(am.FixedBatchMLP(), inputs, batch_sizes=BATCH_SIZES, device_type="cpu"), inputs


# ---- compile ---------------------------------------------------------------------------------


def test_compile_writes_an_index_whose_artifacts_match_the_eager_model(in_tmp):
    model = am.TinyMLP()
    inputs = make_inputs()
    index_path = npt.compile(model, inputs, batch_sizes=BATCH_SIZES, filename="mlp.json",
                             device_type="cpu", model_name="mlp")

    assert index_path == "mlp.json"
    index = json.loads((in_tmp / "mlp.json").read_text())
    configs = index["model_configs"]
    assert [(c["input_idx"], c["batch_size"], c["pipeline_size"]) for c in configs] == [(0, 1, 1), (1, 2, 1), (2, 3, 1)]
    for config, example in zip(configs, inputs):
        assert config["compiler"] == "torchscript" and config["device_type"] == "cpu"
        assert isinstance(config["compile_s"], float) and config["compile_s"] >= 0
        path = neuronperf.model_index.artifact_path("mlp.json", config)
        assert os.path.dirname(path) == str(in_tmp / "models")
        loaded = torch.jit.load(path)
        with torch.no_grad():
            torch.testing.assert_close(loaded(example), model(example))


def test_compile_accepts_scalars_and_infers_batch_sizes(in_tmp):
    model = am.TinyMLP()
    x = torch.rand((4, am.FEATURES))
    index = neuronperf.model_index.load(npt.compile(model, x, batch_sizes=4, device_type="cpu"))
    assert [(c["batch_size"], c["input_idx"]) for c in index["model_configs"]] == [(4, 0)]
    # Without batch_sizes they come from the inputs' first dimension.
    inferred = neuronperf.model_index.load(npt.compile(model, make_inputs([2, 5]), device_type="cpu"))
    assert [c["batch_size"] for c in inferred["model_configs"]] == [2, 5]


def test_compile_leaves_the_callers_model_in_its_mode(in_tmp):
    model = am.TinyMLP().train()
    npt.compile(model, make_inputs([1]), device_type="cpu")
    assert model.training


def test_compile_of_a_two_input_model_takes_a_tuple(in_tmp):
    model = am.TwoInputModel()
    example = (torch.rand(2, 3), torch.rand(2, 3))
    index_path = npt.compile(model, [example], batch_sizes=[2], device_type="cpu")
    (path,) = neuronperf.model_index.artifact_paths(index_path)
    torch.testing.assert_close(torch.jit.load(path)(*example), model(*example))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_sizes": [1, 2]}, "3 example inputs but 2 batch sizes"),
        ({"batch_sizes": [1, 2, 0]}, "batch_sizes: 0 is not a positive integer"),
        ({"batch_sizes": BATCH_SIZES, "pipeline_sizes": [1, 2]}, "pipeline_sizes > 1 need a pipelining compiler"),
        ({"batch_sizes": BATCH_SIZES, "compiler_args": ["--opt"]}, "compiler_args key(s) args not understood"),
        ({"batch_sizes": BATCH_SIZES, "compiler": "nonesuch"}, "has no compiler 'nonesuch'"),
        ({"batch_sizes": BATCH_SIZES, "compiler": "eager"}, "builds no artifact"),
        ({"batch_sizes": BATCH_SIZES, "optimize": True}, "unexpected arguments: optimize"),
    ],
)
def test_compile_rejects_bad_arguments_with_a_usage_error(in_tmp, kwargs, message):
    with pytest.raises(UsageError) as raised:
        npt.compile(am.TinyMLP(), make_inputs(), device_type="cpu", **kwargs)
    assert message in str(raised.value)
    assert not list(in_tmp.glob("*.json"))  # no index for a refused call


def test_compile_rejects_inputs_that_are_not_tensors(in_tmp):
    with pytest.raises(UsageError, match="not a tensor or array"):
        npt.compile(am.TinyMLP(), [{"x": torch.zeros(1, 100)}], batch_sizes=[1], device_type="cpu")
    with pytest.raises(UsageError, match="model must be a torch.nn.Module, got SleepyModel"):
        npt.compile(am.SleepyModel(), torch.zeros(1, 100), device_type="cpu")
    with pytest.raises(UsageError, match="inputs is empty"):
        npt.compile(am.TinyMLP(), [], device_type="cpu")


# ---- benchmark: argument errors (raised before any worker starts) --------------------------------


def test_benchmark_errors_for_bad_indexes_and_inputs(fixed_batch_index, in_tmp):
    index_path, inputs = fixed_batch_index
    with pytest.raises(UsageError, match=r"input_idx 2, but only 2 input\(s\) were given"):
        npt.benchmark(index_path, inputs[:2], **SHORT)
    with pytest.raises(UsageError, match="no model config matches"):
        npt.benchmark(index_path, inputs, batch_sizes=7, **SHORT)
    with pytest.raises(ModelIndexError, match="nothing.json"):
        npt.benchmark(str(in_tmp / "nothing.json"), inputs, **SHORT)
    with pytest.raises(UsageError, match="model file not found"):
        npt.benchmark(str(in_tmp / "models" / "gone.pt"), inputs[0], **SHORT)
    with pytest.raises(UsageError, match="duration must be a positive number"):
        npt.benchmark(index_path, inputs, **{**SHORT, "duration": -1})
    with pytest.raises(UsageError, match="unexpected arguments: colour"):
        npt.benchmark(index_path, inputs, colour="red", **SHORT)
    with pytest.raises(UsageError, match="was compiled for device_type 'cpu'"):
        npt.benchmark(index_path, inputs, duration=0.5, n_models=1, workers_per_model=1, device_type="cuda")


def test_benchmark_refuses_a_lambda_callback_before_measuring(fixed_batch_index, in_tmp, monkeypatch):
    index_path, inputs = fixed_batch_index
    monkeypatch.setenv(am.MARKERS_ENV, str(in_tmp))
    with pytest.raises(UsageError, match="preprocess_fn .*cannot be sent to worker processes"):
        npt.benchmark(index_path, inputs, batch_sizes=2, preprocess_fn=lambda x: x,
                      env_setup_fn=am.env_setup, **SHORT)
    assert am.read_markers(str(in_tmp), "env_setup") == []  # no worker was started


def test_default_configurations_follow_neuronperf():
    asked = []

    def count() -> int:
        asked.append(1)
        return 4

    assert config_grid(None, None, count) == [(1, 1), (1, 2), (4, 1), (4, 2)]
    # MAX is how many copies of pipeline_size devices fit.
    assert config_grid(None, 1, count, pipeline_size=2) == [(1, 1), (2, 1)]
    assert config_grid(None, None, lambda: 1) == [(1, 1), (1, 2)]
    asked.clear()
    # An explicit n_models needs no device count (on Neuron that would run neuron-ls).
    assert config_grid(3, [2, 1], count) == [(3, 2), (3, 1)]
    assert asked == []
    with pytest.raises(UsageError, match="workers_per_model: 0"):
        config_grid(1, 0, count)


# ---- benchmark: real workers --------------------------------------------------------------------


@pytest.mark.slow
def test_each_artifact_gets_the_input_at_its_input_idx(fixed_batch_index):
    index_path, inputs = fixed_batch_index

    everything = npt.benchmark(index_path, inputs, **SHORT)
    assert [(r["batch_size"], r["status"]) for r in everything] == [(1, "ok"), (2, "ok"), (3, "ok")]

    (subset,) = npt.benchmark(index_path, inputs, batch_sizes=2, **SHORT)
    assert subset["status"] == "ok", subset["error"]
    assert subset["batch_size"] == 2 and subset["input_shapes"] == "100"
    bs2 = neuronperf.model_index.filter(index_path, batch_size=2)["model_configs"][0]["filename"]
    assert subset["model_filename"] == bs2
    assert subset["total_infs"] > 0 and subset["throughput_avg"] > 0

    # Inputs in the wrong order: the bs2 artifact now gets a batch of 3 and its row says so.
    rotated = [inputs[1], inputs[2], inputs[0]]
    (wrong,) = npt.benchmark(index_path, rotated, batch_sizes=2, **SHORT)
    assert wrong["status"] == "error"
    assert "shape '[2, 100]' is invalid" in wrong["error"]
    assert wrong["throughput_avg"] is None


@pytest.mark.slow
def test_defaults_measure_workers_1_and_2(fixed_batch_index):
    index_path, inputs = fixed_batch_index
    reports = npt.benchmark(index_path, inputs, batch_sizes=2, duration=0.3, device_type="cpu")
    # torch on CPU runs one copy per machine (its intra-op threads use every core): MAX is 1.
    assert [(r["n_models"], r["workers_per_model"]) for r in reports] == [(1, 1), (1, 2)]
    assert all(r["status"] == "ok" for r in reports), [r["error"] for r in reports]


@pytest.mark.slow
def test_return_timers_gives_raw_results_that_get_reports_turns_into_reports(fixed_batch_index):
    index_path, inputs = fixed_batch_index
    raw = npt.benchmark(index_path, inputs, batch_sizes=3, return_timers=True, cost_per_hour=2.5,
                        model_name="fixed", **SHORT)
    assert len(raw) == 1
    json.dumps(raw, allow_nan=False)  # raw results are plain JSON
    (report,) = neuronperf.get_reports(raw)

    latencies_ms = np.concatenate([w["latency_ns"] for w in raw[0]["measurement"]["workers"]]) / 1e6
    assert report["status"] == "ok" and report["model_name"] == "fixed" and report["batch_size"] == 3
    assert report["total_infs"] == len(latencies_ms) > 0
    assert report["latency_ms_p50"] == pytest.approx(float(np.percentile(latencies_ms, 50)))
    # one thread: its calls over its own measuring span (the common span of one), x batch size
    rates = [len(w["start_ns"]) / ((w["start_ns"][-1] + w["latency_ns"][-1] - w["start_ns"][0]) / 1e9)
             for w in raw[0]["measurement"]["workers"] if w["start_ns"]]
    assert report["throughput_avg"] == pytest.approx(3 * sum(rates))
    assert report["cost_per_1m_inf"] == pytest.approx(2.5 * 1e6 / (3600 * report["throughput_avg"]))


@pytest.mark.slow
def test_callbacks_run_in_each_worker(fixed_batch_index, in_tmp, monkeypatch):
    index_path, inputs = fixed_batch_index
    markers = in_tmp / "markers"
    markers.mkdir()
    monkeypatch.setenv(am.MARKERS_ENV, str(markers))
    (report,) = npt.benchmark(
        index_path, inputs, batch_sizes=2, duration=0.5, n_models=2, workers_per_model=1,
        device_type="cpu", env_setup_fn=am.env_setup, setup_fn=am.setup,
        preprocess_fn=am.preprocess, postprocess_fn=am.postprocess,
    )
    assert report["status"] == "ok", report["error"]
    env = am.read_markers(str(markers), "env_setup")
    setup = am.read_markers(str(markers), "setup")
    assert sorted(m["copy_idx"] for m in env) == [0, 1]
    assert {m["entry_id"] for m in env} == {"fixedbatchmlp-bs2-p1-m2-w1"}
    assert sorted(m["copy_idx"] for m in setup) == [0, 1]
    assert all(m["env_setup_ran_first"] for m in setup)
    assert {m["pid"] for m in env} == {m["pid"] for m in setup} and os.getpid() not in {m["pid"] for m in env}
    assert {tuple(m["shape"]) for m in am.read_markers(str(markers), "preprocess")} == {(2, 100)}
    assert {tuple(m["shape"]) for m in am.read_markers(str(markers), "postprocess")} == {(2, 4)}
    assert report["preprocess_avg_ms"] > 0 and report["postprocess_avg_ms"] > 0


def test_benchmark_option_errors_and_ignored_neuronperf_options(fixed_batch_index):
    index_path, inputs = fixed_batch_index
    with pytest.raises(UsageError, match="warmup_calls must be a non-negative integer"):
        npt.benchmark(index_path, inputs, warmup_calls=2.5, **SHORT)
    with pytest.raises(UsageError, match="cost_per_hour must be a non-negative number"):
        npt.benchmark(index_path, inputs, cost_per_hour="cheap", **SHORT)
    with pytest.raises(UsageError, match="model_filename_or_index must be the path"):
        npt.benchmark(torch.nn.Linear(1, 1), inputs, **SHORT)
    # NeuronPerf's process options are accepted; turning processes off is not possible, and says so.
    with pytest.warns(UserWarning, match="multiprocess=False is ignored"):
        with pytest.raises(UsageError, match="duration"):
            npt.benchmark(index_path, inputs, multiprocess=False, **{**SHORT, "duration": 0})


def test_tensorflow_facade_says_what_to_install():
    pytest.importorskip("numpy")
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed; its backend tests cover it")
    import numpy as np

    import neuronperf.tensorflow as nptf

    x = np.zeros((1, 4), dtype="float32")
    with pytest.raises(BackendUnavailable, match="pip install tensorflow"):
        nptf.compile(object(), x, device_type="cpu")
    with pytest.raises(BackendUnavailable, match="needs tensorflow-neuron"):
        nptf.compile(object(), x)


@pytest.mark.slow
def test_benchmark_one_model_file_with_a_tuple_input(in_tmp):
    example = (torch.rand(2, 3), torch.rand(2, 3))
    index_path = npt.compile(am.TwoInputModel(), [example], batch_sizes=[2], device_type="cpu")
    (artifact,) = neuronperf.model_index.artifact_paths(index_path)
    # A model file instead of an index: the tuple is one input of two tensors, model(a, b).
    (report,) = npt.benchmark(artifact, example, **SHORT)
    assert report["status"] == "ok", report["error"]
    assert report["model_filename"] == artifact and report["batch_size"] == 2
    assert report["input_shapes"] == "3;3"
    assert report["model_name"] == os.path.splitext(os.path.basename(artifact))[0]


def test_compile_does_not_keep_the_model_alive(in_tmp):
    import gc
    import weakref

    model = am.TinyMLP()
    alive = weakref.ref(model)
    npt.compile(model, make_inputs([1]), device_type="cpu")
    del model
    gc.collect()
    assert alive() is None
