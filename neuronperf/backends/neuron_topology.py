"""The NeuronCores of this machine as ``neuron-ls --json-output`` reports them, and how a sweep
entry's model copies are laid out on them at a logical NeuronCore config (LNC).

``neuron-ls -j`` prints one object per Neuron device ("Neuron LS User Guide"): ``nc_count``
(NeuronCores the device presents), ``logical_neuroncore_config`` (Trn2 and later only),
``neuroncore_ids`` (the ids ``NEURON_RT_VISIBLE_CORES`` takes), ``memory_size`` and
``neuron_processes`` (pid, command, ``neuron_runtime_version``). On Trn2/Trn3 ``nc_count`` counts
logical cores: 4 per Trainium2 chip at LNC=2, 8 at LNC=1 ("Logical NeuronCore configuration").
So the physical count is ``nc_count x logical_neuroncore_config`` whatever LNC neuron-ls ran at,
and the cores at another LNC follow from it; neuronperf does not need neuron-ls to run at the
sweep's LNC.

Each model copy is one process pinned to its own cores with ``NEURON_RT_VISIBLE_CORES`` ("Neuron
Runtime configuration": a process reserves the cores it sees, and a reserved core cannot be used
by another process until the first one ends), running at the entry's LNC
(``NEURON_LOGICAL_NC_CONFIG``).

The family of the machine comes from the Neuron sysfs ("Neuron Sysfs User Guide":
``/sys/devices/virtual/neuron_device/neuron0/info/architecture/instance_type``, e.g. "Inf2"),
when the spec does not name an instance type.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from neuronperf.errors import BackendUnavailable, UsageError

#: Where the Neuron tools package installs neuron-ls when it is not on PATH.
NEURON_LS_FALLBACK = "/opt/aws/neuron/bin/neuron-ls"
NEURON_LS_TIMEOUT_S = 60
VISIBLE_CORES_ENV = "NEURON_RT_VISIBLE_CORES"
SYSFS_ROOT = "/sys/devices/virtual/neuron_device"


@dataclass(frozen=True)
class NeuronProcess:
    pid: int
    command: str = "?"
    runtime_version: Optional[str] = None

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})"


@dataclass(frozen=True)
class NeuronDevice:
    """One Neuron device (chip) as neuron-ls reports it."""

    index: int
    #: NeuronCores the device presents: logical ones at ``lnc`` on Trn2/Trn3.
    nc_count: int
    #: ``logical_neuroncore_config``; None on devices that have none (Inf1, Inf2, Trn1).
    lnc: Optional[int] = None
    core_ids: tuple[int, ...] = ()
    memory_bytes: Optional[int] = None
    processes: tuple[NeuronProcess, ...] = ()

    @property
    def physical_cores(self) -> int:
        return self.nc_count * (self.lnc or 1)


@dataclass(frozen=True)
class CoreLayout:
    """Where one entry's model copies go at one LNC: what pre-flight derives and checks."""

    lnc: int
    #: Logical NeuronCores per copy (the entry's pipeline size) and what they are made of.
    cores_per_copy: int
    physical_cores_per_copy: int
    #: How many copies of this size fit on one device (0: a copy spans devices).
    copies_per_device: int
    #: How many copies of this size the machine (or the cores granted to this process) holds.
    max_copies: int
    #: The logical cores of each copy, in copy order.
    copy_cores: tuple[tuple[int, ...], ...]

    def visible_cores(self, copy_idx: int) -> str:
        """``NEURON_RT_VISIBLE_CORES`` for copy ``copy_idx``."""
        return visible_cores_value(self.copy_cores[copy_idx])


@dataclass(frozen=True)
class NeuronTopology:
    """The Neuron devices of this machine."""

    devices: tuple[NeuronDevice, ...]

    @property
    def has_lnc(self) -> bool:
        """Whether the devices have a logical NeuronCore config (Trn2 and later)."""
        return any(d.lnc is not None for d in self.devices)

    @property
    def reported_lnc(self) -> Optional[int]:
        """The LNC neuron-ls ran at (the runtime's default here), or None on devices without one."""
        found = {d.lnc for d in self.devices if d.lnc is not None}
        return min(found) if found else None

    @property
    def physical_cores(self) -> int:
        return sum(d.physical_cores for d in self.devices)

    def check_lnc(self, lnc: int) -> None:
        """``UsageError`` unless these devices run at ``lnc``."""
        if lnc not in (1, 2):
            raise UsageError(f"logical NeuronCore config {lnc}: it is 1 or 2")
        if lnc > 1 and not self.has_lnc:
            raise UsageError(
                f"logical NeuronCore config {lnc} needs Trn2 or Trn3; this machine's Neuron devices report "
                f"none (Inf1/Inf2/Trn1 NeuronCores are not grouped), so only 1 applies"
            )
        odd = [d.index for d in self.devices if d.physical_cores % lnc]
        if odd:
            raise UsageError(f"logical NeuronCore config {lnc} does not divide the cores of Neuron device(s) {odd}")

    def cores_per_device(self, lnc: int) -> tuple[int, ...]:
        """Logical NeuronCores of each device at ``lnc``."""
        return tuple(d.physical_cores // lnc for d in self.devices)

    def logical_cores(self, lnc: int) -> int:
        return sum(self.cores_per_device(lnc))

    def core_owners(self, lnc: int, own_pid: Optional[int] = None) -> dict[int, list[str]]:
        """Logical core at ``lnc`` -> the other processes holding its device. neuron-ls lists
        processes per device, not per core, so every core of a device another process holds
        counts as busy: cautious, and right for one model server per device."""
        own_pid = os.getpid() if own_pid is None else own_pid
        owners: dict[int, list[str]] = {}
        first = 0
        for device, count in zip(self.devices, self.cores_per_device(lnc)):
            others = [p.describe() for p in device.processes if p.pid != own_pid]
            if others:
                for core in range(first, first + count):
                    owners[core] = others
            first += count
        return owners

    def layout(self, lnc: int, n_models: int, cores_per_copy: int, granted: Optional[Sequence[int]] = None) -> CoreLayout:
        """The copies of one entry side by side from the first core (or the first granted one),
        ``cores_per_copy`` logical cores each; ``BackendUnavailable`` when they do not fit."""
        self.check_lnc(lnc)
        if cores_per_copy < 1 or n_models < 1:
            raise UsageError(f"an entry needs at least one copy of at least one core, not {n_models} x {cores_per_copy}")
        total = self.logical_cores(lnc)
        pool = list(granted) if granted is not None else list(range(total))
        beyond = [c for c in pool if c >= total]
        if beyond:
            raise BackendUnavailable(
                f"{VISIBLE_CORES_ENV} grants NeuronCore(s) {ranges_text(beyond)}, but this machine has {total} at LNC {lnc}"
            )
        per_device = self.cores_per_device(lnc)
        need = n_models * cores_per_copy
        if need > len(pool):
            where = "this machine has" if granted is None else f"{VISIBLE_CORES_ENV} grants this process"
            raise BackendUnavailable(
                f"{n_models} copies x {cores_per_copy} NeuronCore(s) need {need} NeuronCores at LNC {lnc}; "
                f"{where} {len(pool)} ({lnc * len(pool)} physical)"
            )
        copies = tuple(tuple(pool[i * cores_per_copy:(i + 1) * cores_per_copy]) for i in range(n_models))
        return CoreLayout(
            lnc=lnc,
            cores_per_copy=cores_per_copy,
            physical_cores_per_copy=cores_per_copy * lnc,
            copies_per_device=(per_device[0] // cores_per_copy) if per_device else 0,
            max_copies=len(pool) // cores_per_copy,
            copy_cores=copies,
        )

    def check_free(self, layout: CoreLayout, own_pid: Optional[int] = None) -> None:
        """``BackendUnavailable`` naming the busy cores and their processes, if any core of the
        layout is held by another process."""
        owners = self.core_owners(layout.lnc, own_pid)
        wanted = [core for cores in layout.copy_cores for core in cores]
        busy = [core for core in wanted if core in owners]
        if not busy:
            return
        holders = sorted({who for core in busy for who in owners[core]})
        which = f"NeuronCores {ranges_text(busy)} are" if len(busy) > 1 else f"NeuronCore {busy[0]} is"
        at = f" at LNC {layout.lnc}" if self.has_lnc else ""
        raise BackendUnavailable(
            f"{which} in use (this entry needs cores {ranges_text(wanted)}{at}) by "
            f"{'; '.join(holders)}; stop those processes or lower n_models/pipeline_sizes"
        )


# ---- reading neuron-ls ---------------------------------------------------------------------------


def parse_neuron_ls(text: str, source: str = "neuron-ls") -> NeuronTopology:
    """The topology in ``neuron-ls --json-output``'s text; ``BackendUnavailable`` with a clear
    reason for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BackendUnavailable(f"cannot count NeuronCores: {source} printed no JSON ({e})") from e
    if not isinstance(data, list) or not all(isinstance(d, dict) and _is_count(d.get("nc_count")) for d in data):
        raise BackendUnavailable(f"cannot count NeuronCores: unexpected {source} output: {text[:200]!r}")
    devices = [_device(position, d) for position, d in enumerate(data)]
    return NeuronTopology(tuple(sorted(devices, key=lambda d: d.index)))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _device(position: int, data: Mapping[str, Any]) -> NeuronDevice:
    lnc = data.get("logical_neuroncore_config")
    ids = data.get("neuroncore_ids")
    memory = data.get("memory_size")
    processes = tuple(
        NeuronProcess(int(p["pid"]), str(p.get("command", "?")), p.get("neuron_runtime_version"))
        for p in data.get("neuron_processes") or []
        if isinstance(p, dict) and isinstance(p.get("pid"), int)
    )
    index = data.get("neuron_device")
    return NeuronDevice(
        index=index if isinstance(index, int) else position,
        nc_count=int(data["nc_count"]),
        lnc=lnc if isinstance(lnc, int) and lnc in (1, 2) else None,
        core_ids=tuple(c for c in ids if isinstance(c, int)) if isinstance(ids, list) else (),
        memory_bytes=memory if isinstance(memory, int) else None,
        processes=processes,
    )


def neuron_ls_command() -> str:
    """The neuron-ls to run: from PATH, else where the Neuron tools install it."""
    command = shutil.which("neuron-ls") or (NEURON_LS_FALLBACK if os.path.exists(NEURON_LS_FALLBACK) else None)
    if command is None:
        raise BackendUnavailable(
            "cannot count NeuronCores: neuron-ls is not on PATH nor in /opt/aws/neuron/bin; it ships "
            "with the Neuron tools (apt-get install aws-neuronx-tools, or aws-neuron-tools on Inferentia 1)"
        )
    return command


def run_neuron_ls() -> NeuronTopology:
    """Run ``neuron-ls --json-output`` and read it; ``BackendUnavailable`` when it cannot run."""
    command = neuron_ls_command()
    try:
        done = subprocess.run(
            [command, "--json-output"], capture_output=True, text=True, timeout=NEURON_LS_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BackendUnavailable(f"cannot count NeuronCores: running {command} failed: {e}") from e
    if done.returncode != 0:
        raise BackendUnavailable(
            f"cannot count NeuronCores: {command} --json-output exited with {done.returncode}: {done.stderr.strip()}"
        )
    return parse_neuron_ls(done.stdout, command)


def sysfs_family(root: str = SYSFS_ROOT) -> Optional[str]:
    """The instance family the Neuron driver reports for device 0 ("inf2"), or None."""
    try:
        with open(os.path.join(root, "neuron0", "info", "architecture", "instance_type"), encoding="utf-8") as f:
            value = f.read().strip().lower()
    except OSError:
        return None
    return value or None


# ---- NEURON_RT_VISIBLE_CORES ---------------------------------------------------------------------


def visible_cores_value(cores: Sequence[int]) -> str:
    """``NEURON_RT_VISIBLE_CORES`` for ``cores``: a range "4-7" when contiguous (the form the
    runtime guide shows), else a list "4,6"."""
    cores = list(cores)
    if len(cores) == 1:
        return str(cores[0])
    if cores == list(range(cores[0], cores[0] + len(cores))):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(str(c) for c in cores)


def granted_cores(environ: Optional[Mapping[str, str]] = None) -> Optional[list[int]]:
    """The cores ``NEURON_RT_VISIBLE_CORES`` grants this process ("4,5" or "4-7"; Ray sets it
    for a task), or None when unset."""
    value = (os.environ if environ is None else environ).get(VISIBLE_CORES_ENV, "").strip()
    if not value:
        return None
    cores: list[int] = []
    try:
        for part in value.split(","):
            low, _, high = part.strip().partition("-")
            cores.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise BackendUnavailable(f"{VISIBLE_CORES_ENV}={value!r} is not a list of cores such as 0,1 or 0-3") from None
    return cores


def ranges_text(cores: Sequence[int]) -> str:
    """"0-2, 5" for [0, 1, 2, 5]."""
    spans: list[list[int]] = []
    for core in sorted(cores):
        if spans and core == spans[-1][1] + 1:
            spans[-1][1] = core
        else:
            spans.append([core, core])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
