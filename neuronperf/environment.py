"""The environment a sweep ran in, and whether two environments' results may be mixed.

The environment is recorded once per run (in ``run.json``), not once per row. Its *fingerprint*
is the part that changes results: the CPU model, the logical core count, the Python minor version
and the versions of the frameworks and compilers used. The hostname, kernel, memory size and
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


def capture_environment(versions: Mapping[str, Optional[str]]) -> dict[str, Any]:
    """Describe this machine and toolchain; ``versions`` maps each framework/compiler used
    (e.g. ``{"torch": "2.3.1"}``) to its version."""
    from neuronperf import __version__

    return {
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
    }


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
    return fingerprint


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
    saved = environment_fingerprint(saved_env)
    now = environment_fingerprint(current_env)
    differences = [
        f"{name} {saved[name]!r} (saved) vs {now[name]!r} (now)"
        for name in saved
        if name in now and saved[name] != now[name]
    ]
    if differences:
        raise EnvironmentMismatch(
            "output_dir holds results from another environment: "
            + "; ".join(differences)
            + f"; rerun with {ALLOW_FLAG} to mix them, or use --fresh or another output_dir"
        )

