"""The backend interface: how a framework turns a compile entry into an artifact, and an artifact
into a callable inside a worker process.

Backends know nothing of executors, the journal or the CLI. They import their framework lazily,
inside methods, so that ``import neuronperf`` and the spec/plan stages stay framework-free.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from neuronperf.entries import CompileEntry


@dataclass(frozen=True)
class ThreadDevice:
    """How one measuring thread drives its model: ``context`` is entered once around all of the
    thread's calls (warm-up included: torch's inference mode, a CUDA stream of the thread's own),
    and ``sync`` runs inside every timed call to wait for the work that thread queued."""

    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    sync: Optional[Callable[[], None]] = None


class Backend(abc.ABC):
    """One framework on one or more device types, with one or more compilers."""

    #: Registry name (the entry-point name), e.g. "torch" or "torch-neuronx".
    name: ClassVar[str]
    #: The spec's ``framework`` value this backend serves.
    framework: ClassVar[str]
    #: The spec's ``device_type`` values this backend serves.
    device_types: ClassVar[tuple[str, ...]]
    #: Compilers this backend offers; ``default_compiler`` picks one per device.
    compilers: ClassVar[tuple[str, ...]]
    #: Whether ``pipeline_size > 1`` means something to this backend.
    supports_pipeline: ClassVar[bool] = False
    #: Modules that worker processes import once, in the forkserver, before they fork (they must
    #: not start threads or touch a device when imported); torch always is, when installed.
    worker_preload: ClassVar[tuple[str, ...]] = ()
    #: Environment variables the driver sets before it starts the workers' server (which
    #: imports torch), so that they hold in every worker from its first import on.
    worker_env: ClassVar[Mapping[str, str]] = {}

    def default_compiler(self, device_type: str) -> str:
        """The compiler used when the spec names none."""
        return self.compilers[0]

    @abc.abstractmethod
    def check_available(self, device_type: str) -> None:
        """Raise ``BackendUnavailable`` (with the install command) if this cannot run here."""

    @abc.abstractmethod
    def compiler_version(self, compiler: str) -> str:
        """A version string that changes whenever the compiler's output may change."""

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        """File suffix of the artifact (".pt", ".onnx"); "" for a folder; None for no artifact."""
        return ".pt"

    def check_compiler_args(self, entry: CompileEntry) -> None:  # noqa: B027 - accepting all is a fine default
        """Raise ``UsageError`` if ``entry.compiler_args`` means nothing to this compiler. Called
        once before any compile, so that a typo is one spec error, not a failure per entry."""

    @abc.abstractmethod
    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        """Build the artifact for ``entry`` at ``artifact_path`` (a file or a folder).

        Runs in a compile job process. ``artifact_path`` is None when ``artifact_suffix`` is
        None (for example the eager compiler, which builds nothing ahead of time)."""

    @abc.abstractmethod
    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        """Load the artifact (or build the eager model) in a worker; return ``model(*inputs)``."""

    @abc.abstractmethod
    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        """The framework-native inputs of one call, batch dimension included."""

    def to_numpy(self, output: Any) -> Any:
        """Convert a model output to numpy (nested tuples/lists/dicts kept), for comparisons."""
        return output

    def synchronize(self, device_type: str) -> None:  # noqa: B027 - a no-op default is right
        """Wait for queued device work (CUDA) so that a timer covers it; no-op on CPUs."""

    def use_cpu_threads(self, threads: int) -> None:  # noqa: B027 - frameworks without a pool ignore it
        """In a worker on CPU, after loading: let each call's operators use ``threads`` threads
        (the measuring thread's share of the cores), unless the user chose otherwise."""

    def measuring_threads(self, device_type: str, model: Any) -> Callable[[], ThreadDevice]:
        """Called in a worker's main thread once the model is loaded and set up; the function it
        returns runs first thing in each measuring thread (thread pools and CUDA streams are
        per thread) and says how that thread calls the model."""
        if device_type == "cpu":
            return ThreadDevice
        device = ThreadDevice(sync=lambda: self.synchronize(device_type))
        return lambda: device

    def visible_devices_env(self, device_type: str, copy_idx: int, pipeline_size: int) -> dict[str, str]:
        """Environment variables that pin model copy ``copy_idx`` to its own device(s)."""
        return {}

    def device_memory_peak(self, device_type: str) -> Optional[int]:
        """In a worker, after its window: the most device memory the framework's allocator has
        held for this process, in bytes (``device_mem_mb_peak``); None where it cannot tell."""
        return None

    def copy_env(self, entry: CompileEntry, copy_idx: int) -> dict[str, str]:
        """The environment of copy ``copy_idx`` of ``entry``: its device pinning, and whatever
        else the entry asks of the runtime (the Neuron backends add the logical NeuronCore
        config the artifact was compiled for)."""
        return self.visible_devices_env(entry.device_type, copy_idx, entry.pipeline_size)

    def check_target(self, entries: Sequence[CompileEntry], instance_type: Optional[str]) -> None:  # noqa: B027 - most backends run anywhere they import
        """Raise ``UsageError`` (one line) when this machine, or the spec's ``instance_type``,
        cannot run ``entries`` with this backend. Called once when a sweep has work to do."""

    def row_columns(self, entry: CompileEntry) -> dict[str, Any]:
        """Columns every row of ``entry`` carries beyond the figures (the Neuron backends record
        the SDK the row ran on); read in the driver's process."""
        return {}

    def device_count(self, device_type: str) -> int:
        """How many copies can run side by side on this machine (for n_models "max")."""
        return 1


def arguments_of(inputs: Sequence[Any]) -> tuple[Any, ...]:
    """A model is called as ``model(*inputs)``: a tuple input is passed as positional arguments."""
    return tuple(inputs)
