"""The Ray executor: a sweep's entries fan out over a Ray cluster, one entry per node at a time.

Ray's scheduler places the entries, not neuronperf. Each entry is one Ray task that asks for
what the entry occupies (``entry_resources``): on a CPU, one core per measuring thread times
``cpus_per_thread``; on CUDA one GPU per model copy; on Neuron ``n_models x pipeline_size``
``neuron_cores``. Ray packs tasks onto nodes without handing a core or device to two of them,
and tells each task which GPUs or NeuronCores are its own (CUDA_VISIBLE_DEVICES,
NEURON_RT_VISIBLE_CORES), which the backends' pinning then divides among the copies.

The task runs the same code as the local executor on its node: ``core.measure_repeats`` with
``supervisor.measure``, so all copies and threads of an entry, and its shared measured window,
stay on one machine. It sends back the measurements and the bytes of the copy files the
workers wrote; the driver writes those into the entry's samples folder, so the output folder
looks the same whatever executor filled it. Artifacts travel the other way through Ray's
object store (``max_artifact_mb``): the driver's ``models/`` and model index stay the record.

Entries are submitted as the cluster has room for them (the driver keeps count of the
resources its tasks asked for), so the tasks in flight are the entries being measured: a
killed driver loses those, and a rerun measures them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from neuronperf.entries import Measurement
from neuronperf.errors import BackendUnavailable, UsageError
from neuronperf.executors.base import Executor
from neuronperf.measure.task import BackendLoader, BenchmarkTask
from neuronperf.util.atomic import atomic_write_bytes

#: What a task lost with its node is retried (Ray's own task retries), by default.
DEFAULT_MAX_RETRIES = 1
#: Artifacts larger than this are not shipped through Ray's object store (it lives in the
#: nodes' shared memory); a larger one is an error row that says so.
DEFAULT_MAX_ARTIFACT_MB = 2048
#: How long the driver tries to reach a given ``--address`` before it gives up.
CONNECT_TIMEOUT_S = 10.0
#: Beyond each repeat's ``benchmark.timeout`` (which the supervisor enforces on the node), what
#: a task may take to start, receive its artifact and return, before the driver cancels it.
TASK_SLACK_S = 120.0
#: How often the driver looks for overdue tasks while it waits for results.
POLL_S = 1.0
#: Ray's name of the resource NeuronCores are counted in.
NEURON_RESOURCE = "neuron_cores"
RAY_EXTRA_HINT = "pip install 'neuronperf-sweep[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or ``BackendUnavailable`` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailable(f"executor 'ray' needs Ray, which is not installed here: {RAY_EXTRA_HINT}") from None
    return ray


def entry_resources(task: BenchmarkTask, cpus_per_thread: int = 1) -> dict[str, float]:
    """The Ray resources one entry occupies while it runs (names as in ``ray.nodes()``).

    CPU entries: ``cpus_per_thread`` cores for each measuring thread of each copy, so entries
    that share a node never share cores by count. CUDA: one GPU per copy; Neuron:
    ``pipeline_size`` NeuronCores per copy; device entries take one core for the supervisor."""
    if task.device_type == "cuda":
        return {"CPU": 1.0, "GPU": float(task.n_models)}
    if task.device_type == "neuron":
        return {"CPU": 1.0, NEURON_RESOURCE: float(task.devices_needed)}
    return {"CPU": float(task.n_models * task.workers_per_model * cpus_per_thread)}


def node_label(hostname: str, node_id: str) -> str:
    """How a row names a Ray node: its host name and the start of Ray's node id (several
    logical nodes may share a host)."""
    return f"{hostname}/{node_id[:8]}"


@dataclass(frozen=True)
class _Artifact:
    """An artifact shipped to the nodes: its bytes in the object store (``ref`` is wrapped in a
    tuple so that Ray hands the task the reference, and the task fetches it only if needed)."""

    name: str
    digest: str
    is_dir: bool
    ref: tuple[Any, ...]


@dataclass(frozen=True)
class _NodeJob:
    """What one Ray task receives: everything to measure one entry on its node."""

    task: BenchmarkTask
    preflight: Optional[Callable[[str, int], None]]
    artifact: Optional[_Artifact]
    cpus_per_thread: int
    start_method: Optional[str]


@dataclass(frozen=True)
class _NodeResult:
    """What one Ray task sends back: the measurements and, per repeat, the copy files' bytes
    (and a peak search's probes: its measurements are those of the probe its answer rests on)."""

    node: str
    node_id: str
    measurements: tuple[Measurement, ...]
    error: Optional[str]
    files: tuple[tuple[tuple[str, bytes], ...], ...]
    probes: tuple[Any, ...] = ()


@dataclass
class _Flight:
    work: Any
    need: dict[str, float]
    deadline: float
    alive_at_submit: dict[str, str]  # node id -> label


class RayExecutor(Executor):
    """Measures entries on the nodes of a Ray cluster, as many at once as it has room for.

    ``address`` is a running cluster's (``host:port``, ``ray://host:port`` or ``auto``); None
    starts a local Ray instance for the run (``num_cpus`` caps it) and stops it afterwards."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, *, cpus_per_thread: int = 1,
                 max_retries: int = DEFAULT_MAX_RETRIES, max_artifact_mb: float = DEFAULT_MAX_ARTIFACT_MB,
                 num_cpus: Optional[int] = None, start_method: Optional[str] = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S):
        for what, value, low in (("cpus_per_thread", cpus_per_thread, 1), ("max_retries", max_retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"ray.{what} must be an integer >= {low}, got {value!r}")
        self.address = address
        self.cpus_per_thread = cpus_per_thread
        self.max_retries = max_retries
        self.max_artifact_bytes = int(max_artifact_mb * 1024 * 1024)
        self.start_method = start_method
        self._environments: dict[str, dict[str, Any]] = {}
        self._node_ids: dict[str, str] = {}  # label -> node id
        self._probe: Optional[Callable[[], dict[str, Any]]] = None
        self._artifacts: dict[str, _Artifact] = {}
        ray = import_ray()
        if address not in (None, "auto", "local"):
            _check_reachable(str(address), connect_timeout_s)
        try:
            # A run without an address gets a Ray of its own ("local"), never whatever cluster
            # happens to run on this machine.
            ray.init(address=address or "local", num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     ignore_reinit_error=False)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError... by version
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UsageError(f"--executor ray: cannot connect to {where}: {_first_line(e)}") from None
        self._ray = ray
        self._remote = ray.remote(_run_on_node)
        self._probe_remote = ray.remote(_probe_on_node)

    # -- the cluster ------------------------------------------------------------------------

    def _alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def _label(self, node: Mapping[str, Any]) -> str:
        return node_label(str(node.get("NodeManagerHostname") or node.get("NodeManagerAddress")), str(node["NodeID"]))

    def cannot_host(self, task: BenchmarkTask) -> Optional[str]:
        need = entry_resources(task, self.cpus_per_thread)
        nodes = self._alive_nodes()
        if any(_fits(need, n.get("Resources") or {}) for n in nodes):
            return None
        short = []
        for name, amount in need.items():
            largest = max((float((n.get("Resources") or {}).get(name, 0)) for n in nodes), default=0.0)
            if largest < amount:
                short.append((name, amount, largest))
        why = {"neuron": f"n_models {task.n_models} x pipeline_size {task.pipeline_size}",
               "cuda": f"n_models {task.n_models}"}.get(
            task.device_type, f"n_models {task.n_models} x workers_per_model {task.workers_per_model} x ray.cpus_per_thread {self.cpus_per_thread}")
        needs = " and ".join(f"{_amount(amount)} {name}" for name, amount, _ in short) or "more than any node has"
        has = "; ".join(f"the largest node has {_amount(largest)} {name}" for name, _, largest in short)
        return (f"infeasible: this entry needs {needs} ({why}); {has or 'no node has all of it'} "
                f"({len(nodes)} Ray node{'s' if len(nodes) != 1 else ''} alive)")

    def node_environments(self, probe: Callable[[], dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Probe every alive node (a tiny task pinned to each), so that a node whose environment
        differs is found before anything is compiled; nodes that join later are probed when
        their first result arrives (``environment_of``)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._probe = probe
        nodes = self._alive_nodes()
        refs = [
            self._probe_remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(probe, self.cpus_per_thread)
            for n in nodes
        ]
        for n, env in zip(nodes, self._ray.get(refs, timeout=TASK_SLACK_S)):
            label = self._label(n)
            self._environments[label] = env
            self._node_ids[label] = str(n["NodeID"])
        return dict(self._environments)

    def environment_of(self, node: str) -> Optional[dict[str, Any]]:
        if node not in self._environments and self._probe is not None and node in self._node_ids:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            ref = self._probe_remote.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(self._node_ids[node], soft=False),
            ).remote(self._probe, self.cpus_per_thread)
            with contextlib.suppress(self._ray.exceptions.RayError):
                self._environments[node] = self._ray.get(ref, timeout=TASK_SLACK_S)
        return self._environments.get(node)

    # -- measuring --------------------------------------------------------------------------

    def measure(self, task: BenchmarkTask, samples_dir: str) -> Measurement:
        """One repeat of ``task`` on some node of the cluster (``measure_entries`` is the
        sweep's way: it runs several entries at once)."""
        from neuronperf.measure.contract import EntryWork
        from neuronperf.results.samples import repeat_dir

        once = dataclasses.replace(task, settings=dataclasses.replace(task.settings, repeat=1))
        with tempfile.TemporaryDirectory(prefix="neuronperf-ray-") as parent:
            outcome = next(self.measure_entries([EntryWork(ref=None, task=once, samples_dir=parent)], lambda work: None))
            os.makedirs(samples_dir, exist_ok=True)
            produced = repeat_dir(parent, 0)
            for name in os.listdir(produced) if os.path.isdir(produced) else []:
                shutil.move(os.path.join(produced, name), os.path.join(samples_dir, name))
        if outcome.error is not None or not outcome.measurements:
            return Measurement(status=outcome.status, error=outcome.error or "nothing was measured")
        return outcome.measurements[0]  # type: ignore[no-any-return]

    def measure_entries(self, works: Iterable[Any], started: Callable[[Any], None]) -> Iterator[Any]:
        from neuronperf.measure.contract import EntryOutcome

        ray = self._ray
        free = self._cluster_totals()
        flights: dict[Any, _Flight] = {}
        pending = iter(works)
        upcoming: Any = None
        exhausted = False
        try:
            while True:
                while not exhausted:
                    if upcoming is None:
                        upcoming = next(pending, None)
                        if upcoming is None:
                            exhausted = True
                            break
                    need = entry_resources(upcoming.task, self.cpus_per_thread)
                    if flights and not _fits(need, free):
                        break  # the cluster is full: wait for an entry to finish
                    try:
                        ref, flight = self._submit(upcoming, need)
                    except _NotShipped as e:
                        started(upcoming)
                        yield EntryOutcome(upcoming.ref, error=str(e))
                        upcoming = None
                        continue
                    started(upcoming)
                    flights[ref] = flight
                    _take(free, need)
                    upcoming = None
                if not flights:
                    return
                ready, _ = ray.wait(list(flights), num_returns=1, timeout=POLL_S)
                now = time.monotonic()
                for ref in list(flights):
                    if ref in ready:
                        flight = flights.pop(ref)
                        _give(free, flight.need)
                        yield self._collect(ref, flight)
                    elif flights[ref].deadline < now:
                        flight = flights.pop(ref)
                        _give(free, flight.need)
                        ray.cancel(ref, force=True)
                        task = flight.work.task
                        limit = task.settings.repeat * task.settings.timeout + TASK_SLACK_S
                        yield EntryOutcome(flight.work.ref, status="timeout",
                                           error=f"timed out after {limit:g} s: its Ray task did not return "
                                                 f"(benchmark.timeout {task.settings.timeout:g} s per repeat, plus "
                                                 f"{TASK_SLACK_S:g} s to start and report); it was cancelled")
        finally:
            # Ctrl-C, a stopped sweep or an error in the caller: no task outlives the run. A
            # running task gets KeyboardInterrupt, so its supervisor stops its workers.
            for ref in flights:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def _cluster_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for n in self._alive_nodes():
            for name, amount in (n.get("Resources") or {}).items():
                totals[name] = totals.get(name, 0.0) + float(amount)
        return totals

    def _submit(self, work: Any, need: dict[str, float]) -> tuple[Any, _Flight]:
        task: BenchmarkTask = work.task
        options: dict[str, Any] = {
            "num_cpus": need.get("CPU", 0.0),
            "num_gpus": need.get("GPU", 0.0),
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "name": f"neuronperf:{task.entry_id}",
        }
        custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU")}
        if custom:
            options["resources"] = custom
        job = _NodeJob(task=task, preflight=work.preflight, artifact=self._ship(task),
                       cpus_per_thread=self.cpus_per_thread, start_method=self.start_method)
        ref = self._remote.options(**options).remote(job)
        deadline = time.monotonic() + task.settings.repeat * task.settings.timeout + TASK_SLACK_S
        alive = {str(n["NodeID"]): self._label(n) for n in self._alive_nodes()}
        return ref, _Flight(work, need, deadline, alive)

    def _ship(self, task: BenchmarkTask) -> Optional[_Artifact]:
        """Put the task's artifact into the object store, once per artifact and run."""
        loader = task.loader
        if not isinstance(loader, BackendLoader) or not loader.artifact_path:
            return None
        path = loader.artifact_path
        if path not in self._artifacts:
            data, is_dir = _pack(path)
            if len(data) > self.max_artifact_bytes:
                raise _NotShipped(
                    f"artifact {os.path.basename(path)} is {len(data) / 2**20:.0f} MB, more than the "
                    f"{self.max_artifact_bytes / 2**20:.0f} MB the Ray executor ships to nodes (max_artifact_mb)"
                )
            import hashlib

            self._artifacts[path] = _Artifact(os.path.basename(path.rstrip(os.sep)), hashlib.sha256(data).hexdigest(),
                                              is_dir, (self._ray.put(data),))
        return self._artifacts[path]

    def _collect(self, ref: Any, flight: _Flight) -> Any:
        from neuronperf.measure.contract import EntryOutcome
        from neuronperf.results.samples import repeat_dir

        ray = self._ray
        work = flight.work
        try:
            result: _NodeResult = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return EntryOutcome(work.ref, error="cancelled")
        except ray.exceptions.RayTaskError as e:  # the task's own code raised (not a measuring failure)
            return EntryOutcome(work.ref, error=f"on a Ray node: {_first_line(getattr(e, 'cause', None) or e)}")
        except ray.exceptions.RayError as e:  # the worker or its node was lost, retries spent
            # Ray names the node in the error of a task lost with it; else, the nodes that
            # have died since the task was submitted.
            named = re.search(r"node ID: ([0-9a-f]{8,})", str(e))
            if named and named.group(1) in flight.alive_at_submit:
                lost = [flight.alive_at_submit[named.group(1)]]
            else:
                alive = {str(n["NodeID"]) for n in self._alive_nodes()}
                lost = sorted(label for node_id, label in flight.alive_at_submit.items() if node_id not in alive)
            where = f"node {', '.join(lost)} was lost" if lost else "its Ray worker was lost"
            return EntryOutcome(work.ref, node=lost[0] if len(lost) == 1 else None,
                                error=f"{where} while it ran (retried {self.max_retries} times): "
                                      f"{type(e).__name__}: {_first_line(e)}")
        self._node_ids.setdefault(result.node, result.node_id)
        for r, files in enumerate(result.files):
            folder = repeat_dir(work.samples_dir, r)
            os.makedirs(folder, exist_ok=True)
            for name, data in files:
                atomic_write_bytes(os.path.join(folder, os.path.basename(name)), data)
        return EntryOutcome(work.ref, measurements=result.measurements, error=result.error, node=result.node,
                            probes=result.probes)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ray.shutdown()  # stops the local instance, or only disconnects from a cluster


class _NotShipped(Exception):
    """An artifact the executor refuses to ship (too large)."""


# ---- on the node -----------------------------------------------------------------------------


def _run_on_node(job: _NodeJob) -> _NodeResult:
    """One entry, measured on the node Ray placed this task on (the body of the Ray task)."""
    import ray

    from neuronperf.measure import supervisor
    from neuronperf.measure.contract import EntryWork, measure_repeats

    node_id = ray.get_runtime_context().get_node_id()
    node = node_label(socket.gethostname(), node_id)
    folder = tempfile.mkdtemp(prefix="neuronperf-ray-")
    try:
        task = job.task
        if job.artifact is not None:
            assert isinstance(task.loader, BackendLoader)
            path = _artifact_on_node(job.artifact, task.loader.artifact_path)
            task = dataclasses.replace(task, loader=dataclasses.replace(task.loader, artifact_path=path))
        with _thread_shares(task, job.cpus_per_thread):
            outcome = measure_repeats(
                EntryWork(ref=None, task=task, samples_dir=folder, preflight=job.preflight),
                lambda t, d: supervisor.measure(t, d, start_method=job.start_method), node,
            )
        files = []
        for r in range(len(outcome.measurements)):
            repeat = os.path.join(folder, f"repeat-{r}")
            names = sorted(n for n in os.listdir(repeat) if n.endswith(".npz")) if os.path.isdir(repeat) else []
            files.append(tuple((n, _read(os.path.join(repeat, n))) for n in names))
        return _NodeResult(node, node_id, outcome.measurements, outcome.error, tuple(files), outcome.probes)
    except Exception as e:  # a backend missing on this node, an artifact that cannot be written
        return _NodeResult(node, node_id, (), f"on node {node}: {type(e).__name__}: {_first_line(e)}", ())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _probe_on_node(probe: Callable[[], dict[str, Any]], cpus_per_thread: int) -> dict[str, Any]:
    """The node's environment as the entries' copies see it (with their thread settings)."""
    with _thread_shares(None, cpus_per_thread):
        return probe()


@contextlib.contextmanager
def _thread_shares(task: Optional[BenchmarkTask], cpus_per_thread: int) -> Iterator[None]:
    """Size the copies' thread pools by what the task asked Ray for, not by the node's cores:
    Ray sets OMP_NUM_THREADS to the task's CPUs, which would give each of n x m threads all of
    them. Ray reuses its worker processes, so the previous values are put back."""
    if task is not None and task.device_type != "cpu":
        yield
        return
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NEURONPERF_CPU_THREADS")}
    if saved["NEURONPERF_CPU_THREADS"] is None:  # a share set on the node by its admin wins
        os.environ["OMP_NUM_THREADS"] = os.environ["NEURONPERF_CPU_THREADS"] = str(cpus_per_thread)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _artifact_on_node(artifact: _Artifact, driver_path: Optional[str]) -> str:
    """Where the artifact is on this node: the driver's own file when this node shares it (same
    path, same bytes), else a copy in a node-local cache named by the content's digest."""
    import hashlib

    import ray

    if driver_path and not artifact.is_dir and os.path.isfile(driver_path):
        with open(driver_path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() == artifact.digest:
                return driver_path
    root = os.path.join(tempfile.gettempdir(), "neuronperf-artifacts")
    os.makedirs(root, exist_ok=True)
    cache = os.path.join(root, artifact.digest[:32])
    target = os.path.join(cache, artifact.name)
    if os.path.exists(target):
        return target
    data = ray.get(artifact.ref[0])
    staging = tempfile.mkdtemp(prefix=".staging-", dir=root)
    if artifact.is_dir:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.12+, and patch releases since 3.8.17
                tar.extractall(staging, filter="data")
            else:
                tar.extractall(staging)  # noqa: S202 - the driver packed it from its own models/
    else:
        with open(os.path.join(staging, artifact.name), "wb") as f:
            f.write(data)
    try:
        os.rename(staging, cache)  # atomic: two tasks on one node never see half an artifact
    except OSError:  # another task on this node got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ---- helpers ---------------------------------------------------------------------------------


def _pack(path: str) -> tuple[bytes, bool]:
    if os.path.isdir(path):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=os.path.basename(path.rstrip(os.sep)))
        return buffer.getvalue(), True
    return _read(path), False


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _fits(need: Mapping[str, float], have: Mapping[str, Any]) -> bool:
    return all(float(have.get(name, 0.0)) + 1e-9 >= amount for name, amount in need.items() if amount > 0)


def _take(free: dict[str, float], need: Mapping[str, float]) -> None:
    for name, amount in need.items():
        free[name] = free.get(name, 0.0) - amount


def _give(free: dict[str, float], need: Mapping[str, float]) -> None:
    for name, amount in need.items():
        free[name] = free.get(name, 0.0) + amount


def _amount(value: float) -> str:
    return str(int(value)) if math.isclose(value, round(value)) else f"{value:g}"


def _first_line(error: Any) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, in one line, when nothing listens at ``address`` (Ray itself retries for
    minutes before it gives up)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host:
        raise UsageError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    if port is None:
        port = 10001 if parsed.scheme == "ray" else 6379
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise UsageError(f"--executor ray: cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


__all__ = ["DEFAULT_MAX_RETRIES", "NEURON_RESOURCE", "RayExecutor", "entry_resources", "import_ray", "node_label"]
