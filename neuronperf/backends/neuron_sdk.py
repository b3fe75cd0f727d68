"""Which AWS Neuron SDK is installed, which path it gives torch, and what its compiler is told.

No SDK module is imported here: versions come from package metadata, the OS package manager and
sysfs, so the driver process can name the SDK a sweep runs on without touching a NeuronCore.

One pip name, two APIs. ``torch-neuronx`` up to 2.9.x is the PyTorch/XLA library
(``torch_neuronx.trace``, ``DataParallel``); from PyTorch 2.10 on, the same pip name is
TorchNeuron, the native PyTorch backend (device ``neuron``, ``torch.compile(backend="neuron")``).
Sources: "Announcing Transition to PyTorch Native Support for AWS Trainium in the Next Neuron
Release Supporting PyTorch 2.10" (PyTorch 2.9 is the last XLA-based version);
"Update a manual PyTorch installation" for Neuron 2.33 ("torch-neuronx for PyTorch 2.13 and 2.14
is TorchNeuron ... the PyTorch/XLA-based torch-neuronx for PyTorch 2.9 last shipped in Neuron
2.31"); "Troubleshooting: TorchNeuron" ("torch-neuronx 2.14.x is the native backend"). Version
strings seen in the release content pages: 2.9.0.2.15.32035 (XLA, Neuron 2.31) and 2.14.3.0
(TorchNeuron, Neuron 2.33, "Best practices for TorchNeuron").

Compiler flags. The Logical NeuronCore configuration is ``--logical-nc-config N`` (alias ``-lnc``;
``--lnc`` in the NCC_EARG001 page and the profiler guide) and must equal the runtime's
``NEURON_LOGICAL_NC_CONFIG`` ("Logical NeuronCore configuration"). Defaults that changed under
users' feet are recorded with each row: neuronx-cc 2.22 (Neuron 2.27.0, "Neuron Compiler release
notes") made ``--auto-cast`` default to ``none`` (it was ``matmult``) and turned
``--enable-mixed-precision-accumulation`` on by default.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any, Callable, Optional

from neuronperf.errors import UsageError

#: torch-neuronx from this PyTorch version on is TorchNeuron (native); before it, PyTorch/XLA.
NATIVE_FROM = (2, 10)
#: neuronx-cc from this version on defaults to --auto-cast=none and mixed-precision accumulation.
AUTO_CAST_NONE_FROM = (2, 22)

LNC_ENV = "NEURON_LOGICAL_NC_CONFIG"
LNC_FLAG = "--logical-nc-config"
#: Every spelling of the LNC flag that the Neuron docs use.
LNC_FLAG_SPELLINGS = ("--logical-nc-config", "-lnc", "--lnc")
#: The OS packages of the runtime library and the driver (the release content pages' names).
RUNTIME_PACKAGE = "aws-neuronx-runtime-lib"
DRIVER_PACKAGE = "aws-neuronx-dkms"
#: The loaded driver's version (Linux's sysfs module ABI). The Neuron runtime troubleshooting
#: page warns that ``modinfo neuron`` shows the file on disk, which can differ from what is
#: loaded after a failed reload; sysfs shows what runs.
DRIVER_SYSFS_VERSION = "/sys/module/neuron/version"


def parse_version(text: Optional[str]) -> tuple[int, ...]:
    """The leading dotted integers of a version string ("2.9.0.2.15.32035" -> (2, 9, 0, 2, 15,
    32035); "2.9.0-standin" -> (2, 9, 0)); () when it starts with none."""
    if not text:
        return ()
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def torch_neuronx_path(version: Optional[str]) -> Optional[str]:
    """The path an installed torch-neuronx gives torch: "native" (TorchNeuron) or "xla-trace";
    None when the version cannot be read."""
    parsed = parse_version(version)
    if len(parsed) < 2:
        return None
    return "native" if parsed[:2] >= NATIVE_FROM else "xla-trace"


# ---- installed versions --------------------------------------------------------------------------


def _run_quietly(command: list[str]) -> Optional[str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class SdkVersions:
    """The versions of the Neuron SDK parts a row depends on; None where a part is not installed
    or cannot be read. The runtime and driver are OS packages, the rest pip packages."""

    torch_neuronx: Optional[str] = None
    neuronx_cc: Optional[str] = None
    runtime: Optional[str] = None
    driver: Optional[str] = None
    torch_neuron: Optional[str] = None
    neuron_cc: Optional[str] = None

    def to_dict(self) -> dict[str, Optional[str]]:
        return asdict(self)

    @property
    def torch_path(self) -> Optional[str]:
        """The torch path the installed SDK offers: native, xla-trace, inf1 (torch-neuron
        only) or None."""
        path = torch_neuronx_path(self.torch_neuronx)
        if path is None and self.torch_neuron:
            return "inf1"
        return path


def pip_version(package: str) -> Optional[str]:
    """An installed distribution's version from its metadata, without importing it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def os_package_version(
    package: str,
    run: Callable[[list[str]], Optional[str]] = _run_quietly,
    which: Callable[[str], Optional[str]] = shutil.which,
) -> Optional[str]:
    """An OS package's version from dpkg (Ubuntu DLAMIs) or rpm (Amazon Linux), or None."""
    queries = (
        ("dpkg-query", ["dpkg-query", "-W", "-f=${Version}", package]),
        ("rpm", ["rpm", "-q", "--qf", "%{VERSION}", package]),
    )
    for tool, command in queries:
        if which(tool):
            found = run(command)
            # rpm prints "package X is not installed" with a non-zero exit: _run_quietly drops it
            if found:
                return found
    return None


def loaded_driver_version(read: Callable[[str], Optional[str]] = _read_text) -> Optional[str]:
    """The version of the neuron kernel module that is loaded, from sysfs."""
    return read(DRIVER_SYSFS_VERSION)


def read_sdk_versions(
    pip: Callable[[str], Optional[str]] = pip_version,
    os_package: Callable[[str], Optional[str]] = os_package_version,
    driver: Callable[[], Optional[str]] = loaded_driver_version,
) -> SdkVersions:
    """What is installed here. Each reader can be replaced (the tests do; so may a plug-in)."""
    return SdkVersions(
        torch_neuronx=pip("torch-neuronx"),
        neuronx_cc=pip("neuronx-cc"),
        runtime=os_package(RUNTIME_PACKAGE),
        driver=driver() or os_package(DRIVER_PACKAGE),
        torch_neuron=pip("torch-neuron"),
        neuron_cc=pip("neuron-cc"),
    )


# ---- compiler flags: LNC and the defaults that changed -------------------------------------------


def lnc_in_flags(flags: Sequence[str]) -> Optional[int]:
    """The LNC that compiler flags ask for (the right-most wins, as neuronx-cc reads them), or
    None; ``UsageError`` for a value other than 1 or 2."""
    found: Optional[str] = None
    items = list(flags)
    for i, flag in enumerate(items):
        name, eq, value = flag.partition("=")
        if name in LNC_FLAG_SPELLINGS:
            found = value if eq else (items[i + 1] if i + 1 < len(items) else "")
    if found is None:
        return None
    if found not in ("1", "2"):
        raise UsageError(f"{LNC_FLAG} {found!r}: the logical NeuronCore config is 1 or 2")
    return int(found)


def flags_for_lnc(flags: Sequence[str], lnc: Optional[int], where: str = "compiler_args") -> list[str]:
    """``flags`` compiling for ``lnc``: the LNC flag is added when absent; a flag asking for
    another LNC is a ``UsageError`` (the compiler's and the runtime's LNC must agree)."""
    out = list(flags)
    if lnc is None:
        return out
    asked = lnc_in_flags(out)
    if asked is None:
        return [*out, LNC_FLAG, str(lnc)]
    if asked != lnc:
        raise UsageError(
            f"{where} compile for logical NeuronCore config {asked} but this entry runs at LNC {lnc} "
            f"({LNC_ENV}={lnc}); the compiler flag and the runtime variable must agree: set it with "
            f"sweep.logical_nc_configs and drop {LNC_FLAG} from compiler_args"
        )
    return out


def _has_flag(flags: Iterable[str], *names: str) -> bool:
    return any(flag.partition("=")[0] in names for flag in flags)


def implicit_defaults(flags: Sequence[str], neuronx_cc: Optional[str]) -> tuple[str, ...]:
    """The documented defaults that changed between neuronx-cc versions and that ``flags`` leave
    to the compiler, spelled as flags ("--auto-cast=none"); () when the version is unknown."""
    version = parse_version(neuronx_cc)
    if not version:
        return ()
    new = version[:2] >= AUTO_CAST_NONE_FROM
    out: list[str] = []
    if not _has_flag(flags, "--auto-cast"):
        out.append("--auto-cast=none" if new else "--auto-cast=matmult")
    if new and not _has_flag(flags, "--enable-mixed-precision-accumulation", "--disable-mixed-precision-accumulation"):
        out.append("--enable-mixed-precision-accumulation")
    return tuple(out)


def environ_lnc(environ: Optional[dict[str, str]] = None) -> Optional[int]:
    """The LNC this process's environment asks the runtime for, or None when unset; a value
    other than 1 or 2 is a ``UsageError`` naming the variable."""
    value = (os.environ if environ is None else environ).get(LNC_ENV, "").strip()
    if not value:
        return None
    if value not in ("1", "2"):
        raise UsageError(f"{LNC_ENV}={value!r}: the logical NeuronCore config is 1 or 2")
    return int(value)


# ---- what a Neuron row records -------------------------------------------------------------------

#: The columns every Neuron row carries, so that ``compare`` across an SDK upgrade can name what
#: changed: the path, the LNC, the SDK parts' versions, and the compiler flags in effect.
NEURON_COLUMNS = (
    "neuron_path",
    "neuron_lnc",
    "torch_neuronx_version",
    "neuronx_cc_version",
    "neuron_runtime_version",
    "neuron_driver_version",
    "neuron_cc_flags",
    "neuron_cc_defaults",
)


def neuron_columns(
    path: Optional[str],
    lnc: Optional[int],
    versions: SdkVersions,
    flags: Sequence[str] = (),
    defaults: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``NEURON_COLUMNS`` of one row: ``flags`` are the compiler flags neuronperf passed
    (the LNC flag included), ``defaults`` the changed defaults they leave to the compiler."""
    return {
        "neuron_path": path,
        "neuron_lnc": lnc,
        "torch_neuronx_version": versions.torch_neuronx,
        "neuronx_cc_version": versions.neuronx_cc,
        "neuron_runtime_version": versions.runtime,
        "neuron_driver_version": versions.driver,
        "neuron_cc_flags": shlex.join(flags) if flags else None,
        "neuron_cc_defaults": " ".join(defaults) if defaults else None,
    }
