"""What the entry loop and an executor exchange for one entry, and what an executor does with it
wherever it runs (its pre-flight and repeats), in one module that both import: the loop does
not import executors, and executors do not import the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from neuronperf.entries import Measurement
from neuronperf.errors import BackendUnavailable
from neuronperf.measure.task import BenchmarkTask
from neuronperf.results.samples import repeat_dir

if TYPE_CHECKING:  # the facades import this module; executors load only when something runs
    pass


@dataclass(frozen=True)
class EntryWork:
    """What an executor is given for one entry: the task, the folder its raw samples end up in
    (repeat ``r`` in ``journal.repeat_dir(samples_dir, r)``, whatever node measured it) and the
    backend's pre-flight, run where the entry runs. ``ref`` is the core's handle on the job."""

    ref: Any
    task: BenchmarkTask
    samples_dir: str
    preflight: Optional[Callable[[str, int], None]] = None


@dataclass(frozen=True)
class EntryOutcome:
    """What an executor hands back for one entry: the measurements of its repeats, or why it
    was not measured (``error``, with ``status`` "error" or "timeout"), and the node it ran on."""

    ref: Any
    measurements: tuple[Measurement, ...] = ()
    error: Optional[str] = None
    status: str = "error"
    node: Optional[str] = None
    #: A peak search's probes (``rate_search.Probe``), in the order measured; ``measurements``
    #: are then those of the probe its answer rests on.
    probes: tuple[Any, ...] = ()


def measure_repeats(work: EntryWork, measure: Callable[[BenchmarkTask, str], Measurement],
                    node: Optional[str] = None) -> EntryOutcome:
    """One entry's pre-flight and repeats, each repeat by ``measure(task, repeat_folder)``: what
    an executor does for an entry wherever it runs it (the local executor here, the Ray
    executor on the entry's node). A failing repeat ends the entry: it would fail again. An entry
    of ``sweep.rates: max`` runs its peak search instead (``peak.search_peak``: each probe measured
    ``repeat`` times, every judged probe recorded in the samples folder)."""
    if work.preflight is not None:
        try:
            work.preflight(work.task.device_type, work.task.devices_needed)
        except BackendUnavailable as e:  # busy or too few cores: this entry's row says so
            return EntryOutcome(work.ref, error=f"pre-flight: {e}", node=node)
    serving = work.task.serving
    if serving is not None and serving.search:
        from neuronperf.measure.peak import search_peak

        best, probes = search_peak(work.task, work.samples_dir, measure)
        return EntryOutcome(work.ref, measurements=best, node=node, probes=probes)
    measurements: list[Measurement] = []
    for r in range(work.task.settings.repeat):
        measurement = measure(work.task, repeat_dir(work.samples_dir, r))
        measurements.append(measurement)
        if measurement.status != "ok":
            break  # its row says which repeat failed
    return EntryOutcome(work.ref, measurements=tuple(measurements), node=node)


def infeasible(task: BenchmarkTask, device_count: Callable[[str], int]) -> Optional[str]:
    """Why this machine can never host ``task`` (more NeuronCores or GPUs than it has), or None.
    Checked before anything is compiled; CPU copies share the cores and always fit."""
    if task.device_type not in ("neuron", "cuda"):
        return None
    have = device_count(task.device_type)
    need = task.devices_needed
    if need <= have:
        return None
    unit = "NeuronCores" if task.device_type == "neuron" else "GPUs"
    return (f"infeasible: this entry needs {need} {unit} (n_models {task.n_models} x pipeline_size "
            f"{task.pipeline_size}); this machine has {have}")
