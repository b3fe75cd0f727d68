"""The environments a sweep's results come from: the driver's machine, or each node of a cluster.
The first run's environment is the baseline later runs are checked against; results from a
different environment are refused unless the user allows mixing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from neuronperf.entries import CompileEntry, Plan
from neuronperf.errors import (
    BackendUnavailable,
    EnvironmentMismatch,
)
from neuronperf.results.environment import (
    check_compatible,
    environment_fingerprint,
    fingerprint_differences,
)
from neuronperf.results.files import read_run_info, write_run_info


@dataclass(frozen=True)
class EnvironmentProbe:
    """Describes the machine it is called on, as ``_run_locked`` describes the driver's: a
    picklable value, so that a cluster executor runs it on each of its nodes."""

    backend: str
    compilers: tuple[str, ...]
    libraries: tuple[str, ...]
    device_type: str

    def __call__(self) -> dict[str, Any]:
        from neuronperf.measure.task import load_backend
        from neuronperf.results.environment import capture_environment, distribution_version

        versions: dict[str, Optional[str]] = {}
        for compiler in self.compilers:
            try:
                versions[f"{self.backend}/{compiler}"] = load_backend(self.backend).compiler_version(compiler)
            except BackendUnavailable:
                versions[f"{self.backend}/{compiler}"] = None
        versions.update({f"library/{name}": distribution_version(name) for name in self.libraries})
        return capture_environment(versions, self.device_type)


def factory_libraries_of(entry: CompileEntry) -> list[str]:
    from neuronperf.sources.factory import factory_libraries

    return list(factory_libraries(entry.model))


def library_versions(plan: Plan) -> dict[str, Optional[str]]:
    """``library/<name>`` -> version of each library the plan's factories build on (package
    metadata only: resuming a finished sweep imports no framework)."""
    from neuronperf.results.environment import distribution_version
    from neuronperf.sources.factory import factory_libraries

    names = {name for e in plan.compile_entries for name in factory_libraries(e.model)}
    return {f"library/{name}": distribution_version(name) for name in sorted(names)}


class RunEnvironments:
    """The environments behind output_dir's results, kept in ``run.json``: the baseline (the first
    run's, which later runs are checked against), every distinct environment that contributed
    results (so that mixing them with ``--allow-env-mismatch`` stays visible), and each node that
    measured, recorded as it hands in its first result.

    Raises ``EnvironmentMismatch`` when a node differs from the saved baseline, or when the nodes
    of a first run differ from each other, unless ``allow_mismatch``."""

    def __init__(self, output_dir: str, nodes: dict[str, dict[str, Any]], *, allow_mismatch: bool,
                 environment_of: Optional[Callable[[str], Optional[dict[str, Any]]]], run_fields: dict[str, Any]):
        self.output_dir, self.nodes, self.allow_mismatch = output_dir, nodes, allow_mismatch
        #: A cluster's way to describe a node it did not describe up front (None: local, one node "").
        self.environment_of = environment_of
        self.run_fields = run_fields
        saved = read_run_info(output_dir)
        if saved is not None and not allow_mismatch:
            for name, env in nodes.items():
                try:
                    check_compatible(saved["environment"], env)
                except EnvironmentMismatch as e:
                    raise EnvironmentMismatch(f"node {name}: {e}" if name else str(e)) from None
        self.baseline: dict[str, Any] = saved["environment"] if saved else next(iter(nodes.values()))
        if saved is None and not allow_mismatch:
            first = next(iter(nodes))
            for name, env in nodes.items():
                differ = fingerprint_differences(self.baseline, env, (f"node {first}", f"node {name}"))
                if differ:
                    raise EnvironmentMismatch(
                        f"the cluster's nodes differ: {'; '.join(differ)}; rerun with --allow-env-mismatch to mix "
                        "their results"
                    )
        self.history: list[dict[str, Any]] = list(saved.get("environments") or [self.baseline]) if saved else [self.baseline]
        for env in nodes.values():
            self._remember(env)
        #: Each node that measured, with its environment (kept across runs).
        self.measured_on: dict[str, Any] = dict((saved or {}).get("nodes") or {})
        self.write()

    def write(self) -> None:
        """Rewrite ``run.json`` (one file, rewritten as a node measures its first entry)."""
        write_run_info(self.output_dir, self.baseline, environments=self.history, nodes=self.measured_on,
                       **self.run_fields)

    def node_measured(self, node: Optional[str]) -> Optional[str]:
        """Record the environment of a node's first result; return why its rows cannot be mixed
        in, or None."""
        if node is None or node in self.measured_on:
            return None
        if self.environment_of is None:
            env = self.nodes.get("")
        else:
            env = self.nodes.get(node) or self.environment_of(node)
        if env is None:
            return None
        differ = fingerprint_differences(self.baseline, env, ("baseline", f"node {node}"))
        if differ and not self.allow_mismatch:
            return (f"measured on node {node}, whose environment differs from the baseline: {'; '.join(differ)}; "
                    "rerun with --allow-env-mismatch to mix its results")
        self.measured_on[node] = env
        self._remember(env)
        self.write()
        return None

    def _remember(self, env: dict[str, Any]) -> None:
        if all(environment_fingerprint(e) != environment_fingerprint(env) for e in self.history):
            self.history.append(env)
