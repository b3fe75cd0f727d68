"""Sweeps on each Neuron instance family, against the stand-ins of tests/neuron_fakes.py: the path
a spec gets from the installed torch-neuronx, planning and pre-flight at each logical NeuronCore
config, the checks that name what is installed, the columns a Neuron row records, and `compare`
naming what changed across an SDK upgrade. One slow test runs a real sweep through worker
processes on the TorchNeuron stand-in.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from neuron_fakes import install_neuron_ls, read_log, standin_pythonpath, use_torch_neuronx

from neuronperf.backends import neuron as neuron_backends
from neuronperf.entries import freeze
from neuronperf.errors import BackendUnavailable, SpecError, UsageError
from neuronperf.sweep.state import backend_for, load_plan

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def fresh_machine(monkeypatch):
    """Each test is a machine of its own: the per-process caches of the machine's LNC and SDK
    are cleared, and no LNC or cores come from the caller's environment."""
    for name in ("NEURON_LOGICAL_NC_CONFIG", "NEURON_RT_VISIBLE_CORES", "NEURON_CC_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(neuron_backends, "sysfs_family", lambda: None)
    neuron_backends.machine_lnc.cache_clear()
    neuron_backends.installed_sdk.cache_clear()
    yield
    neuron_backends.machine_lnc.cache_clear()
    neuron_backends.installed_sdk.cache_clear()


def write_spec(folder, compiler=None, sweep="n_models: [1, max]", instance_type=None, extra=""):
    lines = ["version: 1", "name: fam", "framework: torch", "device_type: neuron", f"output_dir: {folder / 'out'}"]
    if compiler:
        lines.append(f"compiler: {compiler}")
    if instance_type:
        lines.append(f"instance_type: {instance_type}")
    lines += ["models:", '  - {name: mlp, factory: "neuronperf.zoo:mlp", kwargs: {in_features: 8, hidden: 16}, inputs: [[8]]}',
              "sweep:", f"  {sweep}", extra]
    path = folder / "spec.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# machine, installed torch-neuronx, compiler (None: the installed one's), LNC axis, max copies at each LNC
FAMILIES = [
    ("inf1.xlarge", None, "neuron", None, {None: 4}),
    ("inf2.xlarge", "2.9", None, None, {None: 2}),
    ("trn1.2xlarge", "2.9", "neuronx", None, {None: 2}),
    ("trn2.48xlarge", "2.14", None, [1, 2], {1: 128, 2: 64}),
    ("trn3", "2.14", "native", [2], {2: 16}),
]


@pytest.mark.parametrize(("machine", "sdk", "compiler", "lncs", "most"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_a_sweep_plans_and_preflights_on_each_family(tmp_path, monkeypatch, machine, sdk, compiler, lncs, most):
    install_neuron_ls(tmp_path, monkeypatch, machine)
    if sdk:
        use_torch_neuronx(monkeypatch, sdk)
    sweep = "n_models: [1, max]" + (f"\n  logical_nc_configs: {lncs}" if lncs else "")
    _, plan = load_plan(write_spec(tmp_path, compiler, sweep))
    expected_compiler = compiler or {"2.9": "neuronx", "2.14": "native"}[sdk]
    assert {e.compiler for e in plan.compile_entries} == {expected_compiler}
    biggest = {e.compile.lnc: e.n_models for e in plan.run_entries if e.n_models > 1}
    assert biggest == most
    backend = backend_for(plan)
    backend.check_target(plan.compile_entries, None)
    for entry in plan.run_entries:
        backend.preflight("neuron", entry.n_models * entry.compile.pipeline_size, lnc=entry.compile.lnc)
        last = backend.copy_env(entry.compile, entry.n_models - 1)
        assert last["NEURON_RT_VISIBLE_CORES"] == str(entry.n_models - 1)
        assert last.get("NEURON_LOGICAL_NC_CONFIG") == (None if entry.compile.lnc is None else str(entry.compile.lnc))
        if entry.compile.lnc:
            assert entry.id.endswith(f"-lnc{entry.compile.lnc}-m{entry.n_models}-w1")


def test_preflight_at_lnc_1_names_the_busy_device_of_a_trn2(tmp_path, monkeypatch):
    install_neuron_ls(tmp_path, monkeypatch, "trn2.48xlarge", busy={15: [(4242, "python serve.py")]})
    backend = neuron_backends.TorchNeuronxBackend()
    backend.preflight("neuron", 60, lnc=2)  # devices 0-14 at LNC 2: cores 0-59
    with pytest.raises(BackendUnavailable, match=r"NeuronCores 120-127 are in use \(this entry needs cores 0-127 at LNC 1\) by pid 4242"):
        backend.preflight("neuron", 128, lnc=1)
    with pytest.raises(BackendUnavailable, match=r"needs 129 NeuronCores; this machine has 128 at LNC 1 \(128 physical\)"):
        backend.preflight("neuron", 129, lnc=1)


def test_an_installed_path_the_instance_cannot_run_is_one_located_line(tmp_path, monkeypatch):
    use_torch_neuronx(monkeypatch, "2.14")
    with pytest.raises(SpecError) as raised:
        load_plan(write_spec(tmp_path, None, "n_models: 1", instance_type="inf2.xlarge"))
    (line,) = str(raised.value).splitlines()
    assert line.endswith(
        "instance_type: compiler native takes the native path, which does not run on inf2.xlarge (Inferentia2, "
        "NeuronCore-v2); inf2 runs compiler neuronx (torch-neuronx 2.9.x); the spec names no compiler, and the "
        "installed torch-neuronx 2.14.3.0 takes this path"
    )


def test_the_machine_check_names_what_is_installed(tmp_path, monkeypatch):
    use_torch_neuronx(monkeypatch, "2.14")
    monkeypatch.setattr(neuron_backends, "sysfs_family", lambda: "inf2")  # what the Neuron driver says
    _, plan = load_plan(write_spec(tmp_path, None, "n_models: 1"))
    with pytest.raises(UsageError, match=r"does not run on inf2 \(Inferentia2, NeuronCore-v2\); inf2 runs compiler neuronx .*installed: torch-neuronx 2.14.3.0"):
        backend_for(plan).check_target(plan.compile_entries, None)
    with pytest.raises(BackendUnavailable, match="installed: torch-neuronx 2.14.3.0, which is TorchNeuron: use compiler native"):
        neuron_backends.TorchNeuronxBackend().check_available("neuron")


@pytest.mark.parametrize(
    ("compiler", "sweep", "instance", "message"),
    [
        ("native", "n_models: 1", "inf1.xlarge", "compiler: compiler native takes the native path, which does not run on inf1.xlarge"),
        ("neuron", "logical_nc_configs: 2", None, "sweep.logical_nc_configs: logical NeuronCore configs apply to Trn2/Trn3; compiler neuron"),
        ("neuronx", "logical_nc_configs: [2, 2]", None, "sweep.logical_nc_configs[1]: duplicate value 2"),
        ("neuronx", "logical_nc_configs: [1, 2]", "trn1.32xlarge", "sweep.logical_nc_configs[1]: logical NeuronCore config 2 needs Trn2 or Trn3; trn1.32xlarge"),
        ("neuronx", "logical_nc_configs: 3", None, "sweep.logical_nc_configs"),
    ],
)
def test_lnc_and_family_mistakes_are_spec_errors(tmp_path, cli, compiler, sweep, instance, message):
    result = cli("validate", write_spec(tmp_path, compiler, sweep, instance))
    assert result.code == 2 and message in result.err, result.err


def test_the_xla_trace_compile_agrees_with_the_runtime_lnc(tmp_path, monkeypatch):
    sdk = use_torch_neuronx(monkeypatch, "2.9")
    install_neuron_ls(tmp_path, monkeypatch, "trn2.48xlarge")
    _, plan = load_plan(write_spec(tmp_path, "neuronx", "logical_nc_configs: [1]", extra="compile: {compiler_args: [\"--auto-cast\", \"none\"]}"))
    backend = backend_for(plan)
    backend.compile(plan.compile_entries[0], tmp_path / "a.pt")
    # Without the axis, a Trn2 compiles at the machine's LNC (2, what neuron-ls reports).
    _, default = load_plan(write_spec(tmp_path, "neuronx", "n_models: 1"))
    backend.compile(default.compile_entries[0], tmp_path / "b.pt")
    assert [c["compiler_args"] for c in sdk.calls] == [
        ["--auto-cast", "none", "--logical-nc-config", "1"], ["--logical-nc-config", "2"]]
    assert backend.compiler_version("neuronx").endswith("; runtime lnc 2")
    with pytest.raises(UsageError, match="compiler_args set the logical NeuronCore config, which sweep.logical_nc_configs sets"):
        backend.check_compiler_args(dataclasses.replace(plan.compile_entries[0], compiler_args=freeze(["--lnc", "1"])))


def test_an_inf2_compile_gets_no_lnc_flag(tmp_path, monkeypatch):
    sdk = use_torch_neuronx(monkeypatch, "2.9")
    install_neuron_ls(tmp_path, monkeypatch, "inf2.xlarge")
    _, plan = load_plan(write_spec(tmp_path, "neuronx", "n_models: 1"))
    backend_for(plan).compile(plan.compile_entries[0], tmp_path / "a.pt")
    assert sdk.calls[0]["compiler_args"] == []
    assert "lnc" not in backend_for(plan).compiler_version("neuronx")


def test_a_neuron_row_records_the_sdk_it_ran_on(tmp_path, monkeypatch):
    use_torch_neuronx(monkeypatch, "2.14")
    monkeypatch.setattr(neuron_backends, "read_sdk_versions", lambda: neuron_backends.SdkVersions(
        "2.14.3.0", "2.28.7631.0", "2.35.30.0", "2.31.7.0"))
    _, plan = load_plan(write_spec(tmp_path, "native-compile", "logical_nc_configs: 2",
                                   extra="compile: {compiler_args: {args: [\"--auto-cast\", \"matmult\"]}}"))
    columns = backend_for(plan).row_columns(plan.compile_entries[0])
    assert columns == {
        "neuron_path": "native", "neuron_lnc": 2, "torch_neuronx_version": "2.14.3.0",
        "neuronx_cc_version": "2.28.7631.0", "neuron_runtime_version": "2.35.30.0", "neuron_driver_version": "2.31.7.0",
        "neuron_cc_flags": "--auto-cast matmult --logical-nc-config 2",
        "neuron_cc_defaults": "--enable-mixed-precision-accumulation",
    }


def test_compare_names_what_changed_across_an_sdk_upgrade():
    from neuronperf.answers.compare import Comparison, Side, compare_entry, match
    from neuronperf.cli.answer_commands import format_comparison

    def row(key, lnc, cc, defaults):
        return {"id": f"mlp-bs1-p1-lnc{lnc}-m1-w1", "key": key, "status": "ok", "model_name": "mlp", "batch_size": 1,
                "pipeline_size": 1, "n_models": 1, "workers_per_model": 1, "throughput_avg": 100.0,
                "latency_ms_p50": 1.0, "latency_ms_p99": 2.0, "neuron_path": "xla-trace", "neuron_lnc": lnc,
                "neuronx_cc_version": cc, "neuron_cc_defaults": defaults, "neuron_cc_flags": None}

    old = [Side(row(f"o{lnc}", lnc, "2.21.33363.0", "--auto-cast=matmult")) for lnc in (1, 2)]
    new = [Side(row(f"n{lnc}", lnc, "2.22.12471.0", "--auto-cast=none --enable-mixed-precision-accumulation")) for lnc in (2, 1)]
    pairs, only_old, only_new = match(old, new)
    assert not only_old and not only_new
    assert sorted((o.row["neuron_lnc"], n.row["neuron_lnc"]) for o, n in pairs) == [(1, 1), (2, 2)]  # matched by LNC
    changes = tuple(compare_entry(o, n) for o, n in pairs)
    assert changes[0].changed == (("neuronx_cc_version", "2.21.33363.0", "2.22.12471.0"),
                                  ("neuron_cc_defaults", "--auto-cast=matmult", "--auto-cast=none --enable-mixed-precision-accumulation"))
    text = format_comparison(Comparison(0.05, changes))
    assert ("changed under 2 entries (mlp-bs1-p1-lnc2-m1-w1, ...): neuronx_cc_version 2.21.33363.0 -> 2.22.12471.0; "
            "neuron_cc_defaults --auto-cast=matmult -> --auto-cast=none --enable-mixed-precision-accumulation") in text


@pytest.mark.slow
def test_a_native_sweep_pins_each_copy_at_its_lnc(tmp_path, monkeypatch, cli):
    """Worker processes on the TorchNeuron stand-in and a fake trn2.48xlarge: each copy is its own
    process with its own core, at its entry's LNC, and the rows say what they ran on."""
    install_neuron_ls(tmp_path, monkeypatch, "trn2.48xlarge")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [standin_pythonpath("2.14"), os.environ.get("PYTHONPATH")])))
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("NEURONPERF_STANDIN_LOG", str(log))
    use_torch_neuronx(monkeypatch, "2.14")  # what the driver reads (package metadata, the machine check)
    monkeypatch.setenv("TORCH_DEVICE_BACKEND_AUTOLOAD", "1")  # the driver turns it off; put back after the test
    spec = write_spec(tmp_path, "native-compile", "logical_nc_configs: [1, 2]\n  n_models: 2",
                      extra="benchmark: {duration: 0.3, warmup: 2, timeout: 120}")
    result = cli("run", spec)
    assert result.code == 0, result.err
    rows = {r["id"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())}
    assert set(rows) == {"mlp-bs1-p1-lnc1-m2-w1", "mlp-bs1-p1-lnc2-m2-w1"}
    for lnc in (1, 2):
        row = rows[f"mlp-bs1-p1-lnc{lnc}-m2-w1"]
        assert (row["status"], row["neuron_path"], row["neuron_lnc"], row["torch_neuronx_version"]) == ("ok", "native", lnc, "2.14.3.0")
        assert row["neuron_cc_flags"] == f"--logical-nc-config {lnc}"
    moves = [c for c in read_log(log) if c["call"] == "Module.to" and c["pid"] != os.getpid()]
    seen = sorted((c["env"]["NEURON_LOGICAL_NC_CONFIG"], c["env"]["NEURON_RT_VISIBLE_CORES"], c["env"]["NEURON_CC_FLAGS"]) for c in moves)
    assert seen == [("1", "0", "--logical-nc-config 1"), ("1", "1", "--logical-nc-config 1"),
                    ("2", "0", "--logical-nc-config 2"), ("2", "1", "--logical-nc-config 2")]
    assert len({c["pid"] for c in moves}) == 4  # one process per copy
    # torch's device-backend autoload is off in the workers: each imports torch_neuronx itself,
    # after its cores are pinned
    assert {c["env"]["TORCH_DEVICE_BACKEND_AUTOLOAD"] for c in moves} == {"0"}
    assert any(c["call"] == "torch.compile" and c["backend"] == "neuron" for c in read_log(log))


def test_entries_without_the_lnc_axis_keep_their_identity():
    from pathlib import Path

    from neuronperf.plan.expand import plan
    from neuronperf.spec.load import load_spec

    entries = plan(load_spec(Path(__file__).parent.parent / "configs" / "inf2-bert.yaml")).compile_entries
    assert all(e.lnc is None and "lnc" not in e.to_dict() and "lnc" not in e.id for e in entries)
    with_lnc = dataclasses.replace(entries[0], lnc=2)
    assert with_lnc.key != entries[0].key and with_lnc.id == entries[0].id + "-lnc2"


def test_the_lnc_axis_and_the_server_scenario_plan_together(tmp_path, monkeypatch, cli):
    """Both kinds of axis in one spec: the LNC is a compile axis (``-lncN`` in the compile id),
    the rate and queue delay are run axes (``-r<rate>-qd<delay>`` after the copies), and an
    exclude rule may name them together."""
    install_neuron_ls(tmp_path, monkeypatch, "trn2.48xlarge")
    use_torch_neuronx(monkeypatch, "2.14")
    server = ("benchmark: {scenario: server}\nobjectives: {slo: {latency_ms_p99: 50}}\n"
              "exclude:\n  - {logical_nc_config: 1, rate: 200}")
    spec = write_spec(tmp_path, None, "logical_nc_configs: [1, 2]\n  rates: [100, 200]\n  max_queue_delays_ms: [0, 5]",
                      extra=server)
    _, plan = load_plan(spec)
    assert sorted(e.id for e in plan.compile_entries) == ["mlp-bs1-p1-lnc1", "mlp-bs1-p1-lnc2"]
    assert [e.id for e in plan.run_entries] == [
        "mlp-bs1-p1-lnc1-m1-w1-r100-qd0", "mlp-bs1-p1-lnc1-m1-w1-r100-qd5",
        "mlp-bs1-p1-lnc2-m1-w1-r100-qd0", "mlp-bs1-p1-lnc2-m1-w1-r200-qd0",
        "mlp-bs1-p1-lnc2-m1-w1-r100-qd5", "mlp-bs1-p1-lnc2-m1-w1-r200-qd5",
    ]
    assert [n for _, n in plan.excluded] == [2]  # lnc1 at rate 200, at both queue delays
    # An unknown axis names every axis of this sweep, both kinds included.
    bad = write_spec(tmp_path, None, "logical_nc_configs: [1, 2]\n  rates: [100]",
                     extra="benchmark: {scenario: server}\nexclude:\n  - {rates: 100}")
    result = cli("validate", bad)
    assert result.code == 2
    assert ("unknown axis 'rates'; did you mean 'rate'? (axes: model, batch_size, pipeline_size, n_models, "
            "workers_per_model, logical_nc_config, rate, max_queue_delay_ms)") in result.err, result.err
