"""The run environment: what is captured, what must match, and the mismatch message."""

from __future__ import annotations

import json
import os
import platform
import socket

import pytest

from neuronperf import __version__
from neuronperf.errors import EnvironmentMismatch, JournalError
from neuronperf.results.environment import (
    capture_environment,
    check_compatible,
    environment_fingerprint,
)

pytestmark = pytest.mark.pure


def test_capture_describes_this_machine():
    env = capture_environment({"torch": "2.3.1", "neuronx-cc": None})
    assert env["format"] == 1
    assert env["logical_cores"] == os.cpu_count()
    assert env["hostname"] == socket.gethostname()
    assert env["python"] == platform.python_version()
    assert env["neuronperf"] == __version__
    assert env["versions"] == {"torch": "2.3.1", "neuronx-cc": None}
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]
    assert env["memory_total_bytes"] is None or env["memory_total_bytes"] > 0
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            assert env["cpu_model"] == " ".join(names[0].split())
    json.dumps(env, allow_nan=False)  # it goes into run.json


def test_fingerprint_ignores_host_kernel_and_python_patch_level():
    env = capture_environment({"torch": "2.3.1"})
    other_host = dict(env, hostname="another-host", kernel="9.9", python=env["python"].rsplit(".", 1)[0] + ".99",
                      memory_total_bytes=1, neuronperf="9.9.9")
    assert environment_fingerprint(other_host) == environment_fingerprint(env)
    check_compatible(env, other_host)  # no error


def test_mismatch_names_each_field_saved_vs_now_and_the_flag():
    saved = capture_environment({"torch": "2.1.0", "torchscript": "2.1.0"})
    now = dict(saved, cpu_model="AMD EPYC 9R14", logical_cores=192, versions={"torch": "2.3.1", "torchscript": "2.1.0"})
    with pytest.raises(EnvironmentMismatch) as caught:
        check_compatible(saved, now)
    message = str(caught.value)
    assert "\n" not in message
    assert f"cpu_model {saved['cpu_model']!r} (saved) vs 'AMD EPYC 9R14' (now)" in message
    assert f"logical_cores {saved['logical_cores']!r} (saved) vs 192 (now)" in message
    assert "versions.torch '2.1.0' (saved) vs '2.3.1' (now)" in message
    assert "torchscript" not in message
    assert "--allow-env-mismatch" in message
    assert caught.value.exit_code == 2


def test_python_minor_version_matters():
    saved = capture_environment({})
    now = dict(saved, python="2.7.18")
    with pytest.raises(EnvironmentMismatch, match=r"python '\d+\.\d+' \(saved\) vs '2\.7' \(now\)"):
        check_compatible(saved, now)


def test_a_framework_on_one_side_only_is_not_a_mismatch():
    saved = capture_environment({"torch": "2.3.1"})
    now = capture_environment({"torch": "2.3.1", "onnxruntime": "1.18.0"})
    check_compatible(saved, now)
    check_compatible(now, saved)


def test_newer_saved_environment_is_refused():
    saved = dict(capture_environment({}), format=7)
    with pytest.raises(JournalError, match="written by a newer neuronperf"):
        check_compatible(saved, capture_environment({}))
