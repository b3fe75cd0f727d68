"""The environment a sweep ran in, and whether two environments' results may be mixed.

The environment is recorded once per run (in ``run.json``), not once per row. Its *fingerprint*
is the part that changes results: the CPU model, the logical core count, the cores usable here
(affinity) and the cgroup CPU quota, the thread-pool variables (``OMP_NUM_THREADS``...), the
Python minor version, the versions of the frameworks, compilers and factory libraries
(``transformers``) used, and on cuda the GPU models, driver and CUDA runtime, on neuron the
runtime and driver. Everything is read from files and package metadata: no framework is imported. The hostname, kernel, memory size and
neuronperf's own version are recorded but not compared: the same hardware and toolchain on
another host (the next instance of a fleet) gives comparable numbers.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Mapping
from typing import Any, Optional

from neuronperf.errors import EnvironmentMismatch, JournalError

ENVIRONMENT_FORMAT = 1
#: The flag of ``neuronperf run`` that lets results of differing environments be mixed.
ALLOW_FLAG = "--allow-env-mismatch"


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def total_memory_bytes() -> Optional[int]:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unsupported here: memory is informational only
        return None


#: Environment variables that size the thread pools a model runs on (the worker sets
#: NEURONPERF_CPU_THREADS itself; set by the user it overrides that share).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NEURONPERF_CPU_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
)
#: Where the CUDA runtime's version can be read without importing a framework.
_CUDA_RUNTIME_DISTRIBUTIONS = ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime")
_NEURON_RUNTIME_LIB = "/opt/aws/neuron/lib/libnrt.so.1"
#: Python packages of the Neuron runtime side (the compilers are versioned by their backends).
_NEURON_RUNTIME_DISTRIBUTIONS = ("libneuronxla", "aws-neuronx-runtime-discovery")


def distribution_version(name: str) -> Optional[str]:
    """The installed version of the distribution ``name`` (from package metadata: nothing is
    imported), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def thread_settings() -> dict[str, Optional[str]]:
    """The thread-pool variables of this environment (None where unset)."""
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def cpu_quota() -> Optional[float]:
    """The CPU time this cgroup may use, in cores (``cpu.max`` of cgroup v2, or the CFS quota
    of v1), or None when unlimited or unknown: a container limited to 2 cores measures
    differently from the machine's 64."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf-8") as f:
            quota, _, period = f.read().partition(" ")
        return None if quota == "max" else round(int(quota) / int(period), 3)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="utf-8") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="utf-8") as f:
            period_us = int(f.read())
        return None if quota_us <= 0 else round(quota_us / period_us, 3)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cores() -> Optional[int]:
    """How many cores this process may run on (its CPU affinity: ``taskset``, cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def gpu_info() -> dict[str, Any]:
    """The NVIDIA GPUs' models, the driver's version and the CUDA runtime's version, read from
    ``/proc/driver/nvidia`` and package metadata (no framework import, no nvidia-smi)."""
    models = []
    gpus = "/proc/driver/nvidia/gpus"
    try:
        for bus_id in sorted(os.listdir(gpus)):
            models.append(_field(os.path.join(gpus, bus_id, "information"), "Model"))
    except OSError:
        pass
    driver = None
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as f:
            words = f.readline().split()
        # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5 ..."
        driver = next((w for w in words if w[:1].isdigit() and "." in w), None)
    except OSError:
        pass
    cuda = next(filter(None, map(distribution_version, _CUDA_RUNTIME_DISTRIBUTIONS)), None)
    return {"models": models, "driver": driver, "cuda_runtime": cuda}


def neuron_info() -> dict[str, Any]:
    """The Neuron runtime library (the versioned file ``libnrt.so.1`` points to), the Neuron
    driver's version and the runtime-side Python packages."""
    runtime = None
    if os.path.exists(_NEURON_RUNTIME_LIB):
        runtime = os.path.basename(os.path.realpath(_NEURON_RUNTIME_LIB))
    driver = None
    try:
        with open("/sys/module/neuron/version", encoding="utf-8") as f:
            driver = f.read().strip() or None
    except OSError:
        pass
    packages = {name: distribution_version(name) for name in _NEURON_RUNTIME_DISTRIBUTIONS}
    return {"runtime": runtime, "driver": driver, "packages": packages}


def _field(path: str, name: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return " ".join(value.split())
    except OSError:
        pass
    return None


def capture_environment(
    versions: Mapping[str, Optional[str]], device_type: Optional[str] = None
) -> dict[str, Any]:
    """Describe this machine and toolchain; ``versions`` maps each framework/compiler used
    (e.g. ``{"torch": "2.3.1"}``) and each library a factory builds on to its version. On
    ``cuda`` the GPUs, driver and CUDA runtime are recorded too, on ``neuron`` the runtime."""
    from neuronperf.version import __version__

    env: dict[str, Any] = {
        "format": ENVIRONMENT_FORMAT,
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "memory_total_bytes": total_memory_bytes(),
        "os": platform.system(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "neuronperf": __version__,
        "versions": {str(k): (None if v is None else str(v)) for k, v in versions.items()},
        "threads": thread_settings(),
        "cpu_quota": cpu_quota(),
        "usable_cores": usable_cores(),
    }
    if device_type == "cuda":
        env["gpu"] = gpu_info()
    elif device_type == "neuron":
        env["neuron"] = neuron_info()
    return env


def environment_fingerprint(env: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``env`` that must be equal for two runs' results to be mixed."""
    python = str(env.get("python", ""))
    fingerprint: dict[str, Any] = {
        "cpu_model": env.get("cpu_model"),
        "logical_cores": env.get("logical_cores"),
        # Patch releases of Python do not change inference speed; minor releases can.
        "python": ".".join(python.split(".")[:2]),
    }
    for name, version in sorted(dict(env.get("versions") or {}).items()):
        fingerprint[f"versions.{name}"] = version
    # Recorded since format 1 gained them: an older run.json lacks the keys, and what it did
    # not record is not compared (its results stay usable).
    for name, value in sorted(dict(env.get("threads") or {}).items()):
        fingerprint[f"threads.{name}"] = value
    for name in ("cpu_quota", "usable_cores"):
        if name in env:
            fingerprint[name] = env[name]
    for group in ("gpu", "neuron"):
        if isinstance(env.get(group), dict):
            for name, value in sorted(env[group].items()):
                fingerprint[f"{group}.{name}"] = value
    return fingerprint


def fingerprint_differences(
    first: Mapping[str, Any], second: Mapping[str, Any], labels: tuple[str, str] = ("saved", "now")
) -> list[str]:
    """Each fingerprint field that differs, as ``name 'a' (first label) vs 'b' (second label)``;
    a field one side did not record is not a difference."""
    a, b = environment_fingerprint(first), environment_fingerprint(second)
    return [f"{name} {a[name]!r} ({labels[0]}) vs {b[name]!r} ({labels[1]})" for name in a if name in b and a[name] != b[name]]


def check_compatible(saved_env: Mapping[str, Any], current_env: Mapping[str, Any]) -> None:
    """Raise ``EnvironmentMismatch`` naming every differing fingerprint field (saved vs now).

    A framework recorded on one side only is not a difference: a sweep that adds a model of
    another framework does not invalidate earlier results."""
    version = saved_env.get("format", ENVIRONMENT_FORMAT)
    if isinstance(version, int) and version > ENVIRONMENT_FORMAT:
        raise JournalError(
            f"the saved environment was written by a newer neuronperf (format {version}; this one "
            f"reads up to {ENVIRONMENT_FORMAT}); upgrade neuronperf or use another output_dir"
        )
    differences = fingerprint_differences(saved_env, current_env)
    if differences:
        raise EnvironmentMismatch(
            "output_dir holds results from another environment: "
            + "; ".join(differences)
            + f"; rerun with {ALLOW_FLAG} to mix them, or use --fresh or another output_dir"
        )

