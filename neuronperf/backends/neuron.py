"""AWS Neuron backends: torch-neuron (Inferentia 1), torch-neuronx (Inferentia 2 / Trainium),
tensorflow-neuron (TF2, Inferentia 1), and optimum-neuron (Inferentia 2 / Trainium, generation
models only; see ``OptimumNeuronBackend`` for its own compiler arguments).

Written against the SDKs' documented calls; the SDKs are imported only inside methods, and a
missing one raises ``BackendUnavailable`` with its install command. neuronperf's own tests check
this contract with stand-in SDK modules, since the SDK and its hardware are not available there.

Compiler arguments (``compiler_args``) may be given as:

- a list of strings, passed to the compiler as they are: ``["--fast-math", "none"]``;
- one string, split like a shell command line: ``"--fast-math none"``;
- a mapping ``{"args": <list or string as above>, "trace_kwargs": {...}}``, where
  ``trace_kwargs`` are extra keyword arguments for the SDK's trace call.

``pipeline_size > 1`` appends ``--neuroncore-pipeline-cores <pipeline_size>``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from neuronperf.backends.base import Backend, ThreadDevice, arguments_of
from neuronperf.backends.generation import (
    CausalLMGenerate,
    context_length,
    generation_problem,
    prompt_length,
)
from neuronperf.backends.neuron_sdk import (
    LNC_ENV,
    SdkVersions,
    environ_lnc,
    flags_for_lnc,
    implicit_defaults,
    lnc_in_flags,
    neuron_columns,
    read_sdk_versions,
    torch_neuronx_path,
)
from neuronperf.backends.neuron_topology import (
    SYSFS_ROOT,
    VISIBLE_CORES_ENV,
    granted_cores,
    neuron_ls_command,
    ranges_text,
    run_neuron_ls,
    sysfs_family,
    visible_cores_value,
)
from neuronperf.backends.tensorflow_backend import (
    call_model,
    import_tensorflow,
    tf_inputs,
    tf_to_numpy,
)
from neuronperf.backends.torch_backend import (
    InferenceCallable,
    build_torch_module,
    compiler_options,
    import_torch,
    input_names,
    positional_module,
    quiet_torchscript_deprecation,
    tensors_to_numpy,
    torch_inputs,
    torch_measuring_threads,
    tuple_call_kwargs,
)
from neuronperf.entries import CompileEntry, thaw
from neuronperf.errors import BackendUnavailable, CompileFailed, ModelLoadError, UsageError
from neuronperf.sources.factory import build_model
from neuronperf.spec.instances import family_of, family_problem

NEURON_PIP_INDEX = "--extra-index-url=https://pip.repos.neuron.amazonaws.com"
PIPELINE_FLAG = "--neuroncore-pipeline-cores"


# ---- compiler arguments and core assignment (pure) ----------------------------------------------


def neuron_compiler_args(entry: CompileEntry) -> tuple[list[str], dict[str, Any]]:
    """(compiler flags, extra trace keyword arguments) for ``entry``, pipeline flag included."""
    raw = thaw(entry.compiler_args)
    trace_kwargs: dict[str, Any] = {}
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"args", "trace_kwargs"})
        if unknown:
            raise UsageError(
                f"{entry.id}: compiler_args key(s) {', '.join(unknown)} not understood by the Neuron "
                f"backends; accepted: args (a list of flags or one string), trace_kwargs (a mapping)"
            )
        trace_kwargs = raw.get("trace_kwargs") or {}
        if not isinstance(trace_kwargs, dict):
            raise UsageError(f"{entry.id}: compiler_args.trace_kwargs must be a mapping, got {trace_kwargs!r}")
        raw = raw.get("args")
    args = _flag_list(entry.id, raw)
    if any(a == PIPELINE_FLAG or a.startswith(PIPELINE_FLAG + "=") for a in args):
        raise UsageError(
            f"{entry.id}: compiler_args must not contain {PIPELINE_FLAG}; set the pipeline size with "
            f"sweep.pipeline_sizes (neuronperf adds the flag)"
        )
    if entry.pipeline_size > 1:
        args += [PIPELINE_FLAG, str(entry.pipeline_size)]
    return args, trace_kwargs


#: compiler_args keys of compiler optimum (a mapping; see ``OptimumNeuronBackend``).
OPTIMUM_COMPILER_ARG_KEYS = ("auto_cast_type", "sequence_length", "export_kwargs")
#: Keywords of the export call that neuronperf sets itself, and where each one comes from.
_OPTIMUM_OWN_KEYWORDS = {
    "export": "neuronperf always exports",
    "batch_size": "set it with sweep.batch_sizes",
    "sequence_length": "set it with compiler_args.sequence_length",
    "num_cores": "set it with sweep.pipeline_sizes",
    "auto_cast_type": "set it with compiler_args.auto_cast_type",
}


def optimum_compiler_args(entry: CompileEntry) -> dict[str, Any]:
    """``entry.compiler_args`` for compiler optimum, checked: a mapping with keys from
    ``OPTIMUM_COMPILER_ARG_KEYS`` and values of the right types (``UsageError`` otherwise)."""
    options = compiler_options(entry, OPTIMUM_COMPILER_ARG_KEYS)
    cast = options.get("auto_cast_type")
    if cast is not None and not (isinstance(cast, str) and cast):
        raise UsageError(f"{entry.id}: compiler_args.auto_cast_type must be a name such as bf16, fp16 or f32, got {cast!r}")
    length = options.get("sequence_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise UsageError(f"{entry.id}: compiler_args.sequence_length must be a positive integer (tokens), got {length!r}")
    extra = options.get("export_kwargs")
    if extra is not None:
        if not isinstance(extra, dict):
            raise UsageError(f"{entry.id}: compiler_args.export_kwargs must be a mapping, got {extra!r}")
        owned = sorted(set(extra) & set(_OPTIMUM_OWN_KEYWORDS))
        if owned:
            reasons = "; ".join(f"{key}: {_OPTIMUM_OWN_KEYWORDS[key]}" for key in owned)
            raise UsageError(f"{entry.id}: compiler_args.export_kwargs must not contain what neuronperf sets ({reasons})")
    return options


def _flag_list(entry_id: str, raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return shlex.split(raw)
    if isinstance(raw, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in raw):
        return [str(a) for a in raw]
    raise UsageError(f"{entry_id}: Neuron compiler args must be a list of strings or one string, got {raw!r}")


def neuron_core_range(copy_idx: int, pipeline_size: int) -> str:
    """NEURON_RT_VISIBLE_CORES for model copy ``copy_idx``: ``pipeline_size`` cores of its own,
    copies side by side from core 0 ("0", "1", ... or "0-3", "4-7", ...); or, when this process
    was granted cores (NEURON_RT_VISIBLE_CORES, which Ray sets for a task), from those. The ids
    are logical NeuronCores at the copy's LNC, as the runtime numbers them."""
    first = copy_idx * pipeline_size
    granted = granted_neuron_cores()
    if granted is None:
        return visible_cores_value(range(first, first + pipeline_size))
    cores = granted[first:first + pipeline_size]
    if len(cores) < pipeline_size:
        raise BackendUnavailable(
            f"copy {copy_idx} needs {pipeline_size} NeuronCores of its own, but NEURON_RT_VISIBLE_CORES grants "
            f"this process only {len(granted)} ({ranges_text(granted)})"
        )
    return ",".join(str(c) for c in cores)


def granted_neuron_cores() -> Optional[list[int]]:
    """The cores NEURON_RT_VISIBLE_CORES lists ("4,5" or "4-7"), or None when it is unset."""
    return granted_cores()


def neuron_ls() -> list[dict]:
    """The devices that ``neuron-ls --json-output`` reports, one dict per Neuron device (see
    ``neuron_topology`` for what is read from them), or ``BackendUnavailable``."""
    topology = run_neuron_ls()
    return [
        {"neuron_device": d.index, "nc_count": d.nc_count, "logical_neuroncore_config": d.lnc,
         "neuroncore_ids": list(d.core_ids), "memory_size": d.memory_bytes,
         "neuron_processes": [{"pid": p.pid, "command": p.command} for p in d.processes]}
        for d in topology.devices
    ]


@functools.cache
def machine_lnc() -> Optional[int]:
    """The logical NeuronCore config this machine's runtime uses by default: NEURON_LOGICAL_NC_CONFIG,
    else what neuron-ls reports; 1 on Neuron devices without one (Inf1, Inf2, Trn1), None where
    there is no Neuron device to ask. Read once per process."""
    from_env = environ_lnc()
    if from_env is not None:
        return from_env
    if not os.path.isdir(SYSFS_ROOT) and neuron_ls_command_or_none() is None:
        return None
    try:
        topology = run_neuron_ls()
    except BackendUnavailable:
        return None
    return topology.reported_lnc or (1 if topology.devices else None)


def neuron_ls_command_or_none() -> Optional[str]:
    try:
        return neuron_ls_command()
    except BackendUnavailable:
        return None


@functools.cache
def installed_sdk() -> SdkVersions:
    """The Neuron SDK installed here, read once per process (no SDK module is imported)."""
    return read_sdk_versions()


# ---- the backends --------------------------------------------------------------------------------


class _NeuronBackend(Backend):
    """What the Neuron backends share: SDK import, versions, core pinning at the entry's logical
    NeuronCore config, pre-flight, the machine check and the columns a Neuron row records."""

    device_types = ("neuron",)
    supports_pipeline = True
    #: Module to import (``torch_neuronx``), its pip package, the compiler's pip package.
    sdk_module: ClassVar[str]
    sdk_package: ClassVar[str]
    compiler_package: ClassVar[str]
    hardware: ClassVar[str]

    def check_compiler_args(self, entry: CompileEntry) -> None:
        neuron_compiler_args(entry)

    def import_sdk(self) -> Any:
        """Import the SDK module, or raise ``BackendUnavailable`` with the install command."""
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError as e:
            raise BackendUnavailable(
                f"device_type neuron with framework {self.framework} and compiler {self.compilers[0]} "
                f"({self.hardware}) needs {self.sdk_package}, which cannot be imported ({e}); "
                f"install with: pip install {self.sdk_package} {NEURON_PIP_INDEX}"
            ) from e

    def check_available(self, device_type: str) -> None:
        # Only the SDK: compiling for Neuron works on any machine; running needs NeuronCores,
        # which ``preflight`` checks.
        if device_type not in self.device_types:
            raise BackendUnavailable(f"backend {self.name} serves device_type neuron only, not {device_type!r}")
        self.import_sdk()

    def compiler_version(self, compiler: str) -> str:
        self._check_compiler(compiler)
        module = self.import_sdk()
        package = self.sdk_package.split("[")[0]  # "tensorflow-neuron[cc]" -> "tensorflow-neuron"
        parts = [f"{package} {_version(package, module)}"]
        compiler_version = _version(self.compiler_package, None)
        if compiler_version != "unknown":
            parts.append(f"{self.compiler_package} {compiler_version}")
        lnc = machine_lnc()
        if lnc is not None and self.path != "inf1" and _machine_has_lnc():
            # An entry that leaves the LNC to the runtime compiles and runs at the machine's: a
            # machine set to another LNC must not reuse its artifacts and rows.
            parts.append(f"runtime lnc {lnc}")
        return "; ".join(parts)

    @property
    def path(self) -> str:
        """native, xla-trace or inf1: the ``neuron_path`` column of this backend's rows."""
        return "inf1" if self.compiler_package == "neuron-cc" else "xla-trace"

    def visible_devices_env(self, device_type: str, copy_idx: int, pipeline_size: int) -> dict[str, str]:
        return {VISIBLE_CORES_ENV: neuron_core_range(copy_idx, pipeline_size)}

    def copy_env(self, entry: CompileEntry, copy_idx: int) -> dict[str, str]:
        """The copy's cores, and the entry's logical NeuronCore config for the runtime (which
        must be the one the artifact was compiled for)."""
        env = self.visible_devices_env(entry.device_type, copy_idx, entry.pipeline_size)
        if entry.lnc is not None:
            env[LNC_ENV] = str(entry.lnc)
        return env

    def device_count(self, device_type: str, lnc: Optional[int] = None) -> int:
        """The number of NeuronCores this machine presents at ``lnc`` (default: the runtime's),
        from ``neuron-ls --json-output``."""
        topology = run_neuron_ls()
        at = lnc or environ_lnc() or topology.reported_lnc or 1
        topology.check_lnc(at)
        return topology.logical_cores(at)

    def preflight(self, device_type: str, cores_needed: int, lnc: Optional[int] = None) -> None:
        """Raise ``BackendUnavailable`` unless NeuronCores 0..cores_needed-1 (at the entry's LNC,
        else the runtime's) exist and no other process holds them (the cores that
        ``visible_devices_env`` hands out)."""
        topology = run_neuron_ls()
        at = lnc or environ_lnc() or topology.reported_lnc or 1
        try:
            topology.check_lnc(at)
        except UsageError as e:
            raise BackendUnavailable(str(e)) from None
        total = topology.logical_cores(at)
        if cores_needed > total:
            at_lnc = f" at LNC {at} ({topology.physical_cores} physical)" if topology.has_lnc else ""
            raise BackendUnavailable(f"this entry needs {cores_needed} NeuronCores; this machine has {total}{at_lnc}")
        layout = topology.layout(at, n_models=cores_needed, cores_per_copy=1, granted=granted_neuron_cores())
        topology.check_free(layout)

    def check_target(self, entries: Sequence[CompileEntry], instance_type: Optional[str]) -> None:
        """``UsageError`` in one line when the instance (``instance_type``, else the family the
        Neuron driver reports) cannot run this backend's path or an entry's LNC, naming what is
        installed and what the family runs."""
        family = family_of(instance_type) or family_of(sysfs_family())
        if family is None:
            return  # not on a Neuron machine, and none named: compiling works anywhere
        compiler = entries[0].compiler if entries else self.compilers[0]
        where = instance_type or f"this {family.name} machine"
        problem = family_problem(self.framework, compiler, where if instance_type else family.name)
        if problem:
            raise UsageError(f"{problem}; installed: {self.installed_text()}")
        for lnc in sorted({e.lnc for e in entries if e.lnc is not None}):
            if lnc not in family.lnc_choices:
                raise UsageError(
                    f"logical NeuronCore config {lnc} needs Trn2 or Trn3; {where} is {family.chip} "
                    f"(LNC {', '.join(map(str, family.lnc_choices))} only)"
                )

    def installed_text(self) -> str:
        """What is installed of this backend's SDK, for messages."""
        versions = installed_sdk()
        parts = [f"{name} {version}" for name, version in (
            ("torch-neuronx", versions.torch_neuronx), ("neuronx-cc", versions.neuronx_cc),
            ("torch-neuron", versions.torch_neuron), ("neuron-cc", versions.neuron_cc)) if version]
        return ", ".join(parts) or "no Neuron SDK package"

    def compiler_flags(self, entry: CompileEntry) -> list[str]:
        """The compiler flags this entry's compile passes (the LNC flag included)."""
        args, _ = neuron_compiler_args(entry)
        return args

    def row_columns(self, entry: CompileEntry) -> dict[str, Any]:
        """The SDK a row ran on: its path, LNC, versions and compiler flags (``NEURON_COLUMNS``)."""
        versions = installed_sdk()
        try:
            flags = self.compiler_flags(entry)
        except UsageError:
            flags = []
        defaults = implicit_defaults(flags, versions.neuronx_cc) if self.compiler_package == "neuronx-cc" else ()
        lnc = entry.lnc if entry.lnc is not None else machine_lnc()
        return neuron_columns(self.path, lnc, versions, flags, defaults)

    def _check_compiler(self, compiler: str) -> None:
        if compiler not in self.compilers:
            raise UsageError(f"backend {self.name} has no compiler {compiler!r}; choose: {', '.join(self.compilers)}")

    def _require_path(self, entry: CompileEntry, artifact_path: Optional[Path]) -> Path:
        if artifact_path is None:
            raise CompileFailed(entry.id, f"backend {self.name} needs an artifact path")
        return artifact_path


def compile_lnc(entry: CompileEntry) -> Optional[int]:
    """The LNC to compile ``entry`` for: its own, else the machine's on Trn2/Trn3 (so that the
    compiler and the runtime agree there), else none (the compiler's default; Inf2/Trn1 have no
    LNC and neuronx-cc offers the flag on trn2 only)."""
    if entry.lnc is not None:
        return entry.lnc
    return machine_lnc() if _machine_has_lnc() else None


def check_lnc_args(entry: CompileEntry, flags: Sequence[str]) -> None:
    """``UsageError`` when compiler flags set the LNC of a sweep that sets it itself: the sweep
    axis is the one place it lives (the flag must agree with the runtime variable)."""
    if entry.lnc is not None and lnc_in_flags(flags) is not None:
        raise UsageError(
            f"{entry.id}: compiler_args set the logical NeuronCore config, which sweep.logical_nc_configs sets "
            f"(neuronperf passes --logical-nc-config and NEURON_LOGICAL_NC_CONFIG from it): drop it from compiler_args"
        )


def _machine_has_lnc() -> bool:
    """Whether this machine's Neuron devices have a logical NeuronCore config (Trn2/Trn3)."""
    family = family_of(sysfs_family())
    if family is not None:
        return len(family.lnc_choices) > 1
    try:
        return run_neuron_ls().has_lnc
    except BackendUnavailable:
        return False


class _TorchNeuronBase(_NeuronBackend):
    framework = "torch"

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        # device_id is not used: the Neuron runtime places the model on the cores that
        # NEURON_RT_VISIBLE_CORES (set by visible_devices_env) makes visible.
        self._check_compiler(entry.compiler)
        if artifact_path is None or not os.path.isfile(artifact_path):
            raise ModelLoadError(f"{entry.id}: artifact not found: {artifact_path}")
        torch = import_torch()
        self.import_sdk()  # registers the Neuron operators that the saved graph calls
        with quiet_torchscript_deprecation():
            module = torch.jit.load(str(artifact_path))
        return InferenceCallable(module)

    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        return arguments_of(torch_inputs(entry, seed))

    def to_numpy(self, output: Any) -> Any:
        return tensors_to_numpy(output)

    def measuring_threads(self, device_type: str, model: Any) -> Callable[[], ThreadDevice]:
        # A Neuron call returns when its outputs are on the host: nothing to synchronize.
        return torch_measuring_threads("neuron", no_grad=True)

    def _trace(self, entry: CompileEntry) -> tuple[Any, Any, tuple[Any, ...], list[str], dict[str, Any]]:
        self._check_compiler(entry.compiler)
        torch = import_torch()
        sdk = self.import_sdk()
        args, trace_kwargs = neuron_compiler_args(entry)
        return torch, sdk, torch_inputs(entry), args, trace_kwargs


def traceable_module(torch: Any, entry: CompileEntry) -> Any:
    """What the Neuron SDKs trace: the model itself, or, for named inputs (a model source's, or
    named in the spec), the model behind a forward that takes them by position, in the entry's
    order, and passes them on by name: ``torch_neuronx.trace`` and ``torch.neuron.trace`` take a
    tuple of example inputs, and bind it by position. A transformers model is asked for a plain
    tuple (``return_dict=False``), which the traced graph returns."""
    model = build_torch_module(entry)
    names, fixed = input_names(entry), tuple_call_kwargs(entry)
    if names is None and not fixed:
        return model
    return positional_module(torch, model, names, fixed)


class TorchNeuronBackend(_TorchNeuronBase):
    """torch-neuron (Inferentia 1): ``torch.neuron.trace``, saved with ``.save(path)``."""

    name = "torch-neuron"
    compilers = ("neuron",)
    sdk_module = "torch_neuron"
    sdk_package = "torch-neuron"
    compiler_package = "neuron-cc"
    hardware = "Inferentia 1; Inferentia 2 and Trainium use torch-neuronx, compiler neuronx"

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        path = self._require_path(entry, artifact_path)
        torch, _, inputs, args, trace_kwargs = self._trace(entry)
        model = traceable_module(torch, entry)
        try:
            with torch.no_grad():
                # `import torch_neuron` registers the torch.neuron namespace.
                traced = torch.neuron.trace(model, inputs, compiler_args=args, **trace_kwargs)
        except Exception as e:  # any neuron-cc failure becomes this entry's recorded error
            raise CompileFailed(entry.id, f"torch.neuron.trace failed: {type(e).__name__}: {e}") from e
        traced.save(str(path))


class TorchNeuronxBackend(_TorchNeuronBase):
    """torch-neuronx (Inferentia 2 / Trainium): ``torch_neuronx.trace``, saved with
    ``torch.jit.save``."""

    name = "torch-neuronx"
    compilers = ("neuronx",)
    sdk_module = "torch_neuronx"
    sdk_package = "torch-neuronx"
    compiler_package = "neuronx-cc"
    hardware = "Inferentia 2 / Trainium; Inferentia 1 uses torch-neuron, compiler neuron"

    def check_available(self, device_type: str) -> None:
        super().check_available(device_type)
        version = _version(self.sdk_package, self.import_sdk())
        if torch_neuronx_path(version) == "native":
            # One pip name, two APIs: TorchNeuron has no torch_neuronx.trace.
            raise BackendUnavailable(
                f"compiler neuronx (torch_neuronx.trace) needs the PyTorch/XLA torch-neuronx 2.9.x (Inf2, Trn1); "
                f"installed: torch-neuronx {version}, which is TorchNeuron: use compiler native or native-compile"
            )

    def check_compiler_args(self, entry: CompileEntry) -> None:
        check_lnc_args(entry, neuron_compiler_args(entry)[0])

    def compiler_flags(self, entry: CompileEntry) -> list[str]:
        args, _ = neuron_compiler_args(entry)
        return flags_for_lnc(args, compile_lnc(entry), where=f"{entry.id}: compiler_args")

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        path = self._require_path(entry, artifact_path)
        torch, torch_neuronx, inputs, _, trace_kwargs = self._trace(entry)
        args = self.compiler_flags(entry)
        model = traceable_module(torch, entry)
        try:
            with torch.no_grad():
                traced = torch_neuronx.trace(model, inputs, compiler_args=args, **trace_kwargs)
        except Exception as e:  # any neuronx-cc failure becomes this entry's recorded error
            raise CompileFailed(entry.id, f"torch_neuronx.trace failed: {type(e).__name__}: {e}") from e
        with quiet_torchscript_deprecation():
            torch.jit.save(traced, str(path))


class OptimumNeuronBackend(_TorchNeuronBase):
    """optimum-neuron (Inferentia 2 / Trainium): causal language models for ``task: generate``.

    Compile: the factory's transformers model (random weights, no hub id) is saved with
    ``save_pretrained`` to a scratch folder, exported with
    ``NeuronModelForCausalLM.from_pretrained(folder, export=True, batch_size=, sequence_length=,
    num_cores=[, auto_cast_type=])`` and saved with ``save_pretrained(artifact_folder)``.
    ``sequence_length`` is prompt + new_tokens unless ``compiler_args.sequence_length`` asks for
    more; ``num_cores`` (tensor parallel degree) is the entry's pipeline_size.
    Load: ``NeuronModelForCausalLM.from_pretrained(artifact_folder)``, called through
    ``CausalLMGenerate``. optimum-neuron's ``generate`` documents ``stopping_criteria`` and not
    ``streamer`` (its streamlined loop drops a streamer), so each decoding step is reported
    through a stopping criterion (``token_hook="stopping_criteria"``).

    ``compiler_args`` (a mapping): ``auto_cast_type`` (e.g. ``bf16``, ``fp16``; left to the SDK's
    default when absent), ``sequence_length`` (a longer compiled context than prompt +
    new_tokens), ``export_kwargs`` (more keywords for the export call, passed as they are)."""

    name = "optimum-neuron"
    compilers = ("optimum",)
    sdk_module = "optimum.neuron"
    sdk_package = "optimum-neuron"
    compiler_package = "neuronx-cc"
    hardware = "Inferentia 2 / Trainium, generation models (task: generate) only"

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        self._check_compiler(compiler)
        return ""  # a folder: config, checkpoint and compiled graphs, as save_pretrained writes it

    def check_compiler_args(self, entry: CompileEntry) -> None:
        self._check_entry(entry)
        optimum_compiler_args(entry)

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        self._check_entry(entry)
        options = optimum_compiler_args(entry)
        path = self._require_path(entry, artifact_path)
        sdk = self.import_sdk()  # before the model is built: a missing SDK costs nothing
        model = build_torch_module(entry)
        problem = generation_problem(model, entry)
        if problem is not None:
            raise CompileFailed(entry.id, problem)
        if not callable(getattr(model, "save_pretrained", None)):
            raise CompileFailed(
                entry.id,
                f"compiler optimum exports a transformers model saved with save_pretrained; factory "
                f"{entry.model.factory!r} returned {type(model).__name__}, which has no save_pretrained",
            )
        export_kwargs: dict[str, Any] = {
            "export": True,
            "batch_size": entry.batch_size,
            "sequence_length": self._sequence_length(entry, options, model),
            "num_cores": entry.pipeline_size,
        }
        if options.get("auto_cast_type") is not None:
            export_kwargs["auto_cast_type"] = options["auto_cast_type"]
        export_kwargs.update(options.get("export_kwargs") or {})
        # The checkpoint goes next to the artifact, not to /tmp: a large model's weights may not
        # fit there, and the output folder is where the user made room.
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.checkpoint-", dir=path.parent) as checkpoint:
            model.save_pretrained(checkpoint)
            try:
                neuron_model = sdk.NeuronModelForCausalLM.from_pretrained(checkpoint, **export_kwargs)
            except Exception as e:  # any export or neuronx-cc failure becomes this entry's recorded error
                raise CompileFailed(
                    entry.id, f"NeuronModelForCausalLM.from_pretrained(export=True) failed: {type(e).__name__}: {e}"
                ) from e
            neuron_model.save_pretrained(str(path))

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        # device_id is not used: the Neuron runtime places the model on the cores that
        # NEURON_RT_VISIBLE_CORES (set by visible_devices_env) makes visible.
        self._check_entry(entry)
        if artifact_path is None or not os.path.isdir(artifact_path):
            raise ModelLoadError(f"{entry.id}: optimum-neuron model folder not found: {artifact_path}")
        sdk = self.import_sdk()
        try:
            neuron_model = sdk.NeuronModelForCausalLM.from_pretrained(str(artifact_path))
        except Exception as e:  # a folder from another SDK version, no NeuronCore free, ...
            raise ModelLoadError(
                f"{entry.id}: NeuronModelForCausalLM.from_pretrained({str(artifact_path)!r}) failed: {type(e).__name__}: {e}"
            ) from e
        # Device None: a Neuron model takes and returns host tensors.
        return CausalLMGenerate(neuron_model, int(entry.new_tokens or 1), None, token_hook="stopping_criteria")

    def _check_entry(self, entry: CompileEntry) -> None:
        self._check_compiler(entry.compiler)
        if entry.task != "generate":
            raise UsageError(
                f"{entry.id}: compiler optimum builds generation models only; give the model task: generate "
                f"(a forward model on Neuron uses compiler neuronx)"
            )

    @staticmethod
    def _sequence_length(entry: CompileEntry, options: dict[str, Any], model: Any) -> int:
        """The compiled context: prompt + new_tokens, or the longer one compiler_args asks for."""
        needed = prompt_length(entry) + int(entry.new_tokens or 0)
        asked = options.get("sequence_length")
        if asked is None:
            return needed
        if asked < needed:
            raise CompileFailed(
                entry.id,
                f"compiler_args.sequence_length {asked} is shorter than prompt {prompt_length(entry)} + new_tokens "
                f"{entry.new_tokens} = {needed} tokens",
            )
        limit = context_length(model)
        if limit is not None and asked > limit:
            raise CompileFailed(
                entry.id, f"compiler_args.sequence_length {asked} is longer than the model's context of {limit} (its config)"
            )
        return int(asked)


class TensorFlowNeuronBackend(_NeuronBackend):
    """tensorflow-neuron (TF2, Inferentia 1): ``tfn.trace(keras_model, example_inputs)``, saved
    with ``.save(folder)``, loaded with ``tf.keras.models.load_model`` (``tf.saved_model.load``
    where Keras refuses the folder). Compiler flags go to
    neuron-cc through the ``NEURON_CC_FLAGS`` environment variable (``tfn.trace`` takes none)."""

    name = "tensorflow-neuron"
    framework = "tensorflow"
    compilers = ("neuron",)
    sdk_module = "tensorflow.neuron"
    sdk_package = "tensorflow-neuron[cc]"
    compiler_package = "neuron-cc"
    hardware = "Inferentia 1"

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        self._check_compiler(compiler)
        return ""  # a SavedModel folder

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        self._check_compiler(entry.compiler)
        path = self._require_path(entry, artifact_path)
        tfn = self.import_sdk()
        args, trace_kwargs = neuron_compiler_args(entry)
        model = build_model(entry.model)
        inputs = tf_inputs(entry)
        try:
            with _neuron_cc_flags(args):
                traced = tfn.trace(model, _trace_example(model, inputs), **trace_kwargs)
        except Exception as e:  # any neuron-cc failure becomes this entry's recorded error
            raise CompileFailed(entry.id, f"tfn.trace failed: {type(e).__name__}: {e}") from e
        traced.save(str(path))

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        self._check_compiler(entry.compiler)
        if artifact_path is None or not os.path.isdir(artifact_path):
            raise ModelLoadError(f"{entry.id}: SavedModel folder not found: {artifact_path}")
        tf = import_tensorflow()
        self.import_sdk()  # registers the Neuron op that the SavedModel calls
        try:
            model = tf.keras.models.load_model(str(artifact_path))
        except (ValueError, OSError):
            # Keras 3 loads only .keras files; a SavedModel folder still loads through TF itself.
            model = tf.saved_model.load(str(artifact_path))
        return lambda *inputs: call_model(model, inputs)

    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        return arguments_of(tf_inputs(entry, seed))

    def to_numpy(self, output: Any) -> Any:
        return tf_to_numpy(output)


def _trace_example(model: Any, inputs: tuple[Any, ...]) -> Any:
    # tfn.trace calls func(example) for a tensor or a list and func(*example) for a tuple:
    # pick the form that matches how call_model calls the model.
    from neuronperf.backends.tensorflow_backend import is_keras_model

    if is_keras_model(model):
        return inputs[0] if len(inputs) == 1 else list(inputs)
    return tuple(inputs)


@contextlib.contextmanager
def _neuron_cc_flags(args: list[str]) -> Iterator[None]:
    """Append ``args`` to NEURON_CC_FLAGS for the duration of a tfn.trace call."""
    before = os.environ.get("NEURON_CC_FLAGS")
    if args:
        os.environ["NEURON_CC_FLAGS"] = " ".join(filter(None, [before, shlex.join(args)]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NEURON_CC_FLAGS", None)
        else:
            os.environ["NEURON_CC_FLAGS"] = before


def _version(package: str, module: Any) -> str:
    """The installed version of ``package``; the module's ``__version__`` when the package has no
    metadata (a source checkout); "unknown" when neither is known."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))
