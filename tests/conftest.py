"""Shared fixtures: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import importlib.util
import io
import signal
from contextlib import redirect_stderr, redirect_stdout
from typing import Callable, NamedTuple

import pytest

# The Python API's tests build torch models at import time. Where torch is not installed (the
# pure-Python sessions on Python 3.9-3.13), they are not collected at all, rather than failing.
collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["test_api_*.py"]

# Tests send SIGINT to the sweeps they start, as a terminal's Ctrl-C would. pytest started in the
# background by a non-interactive shell (`cmd &`, nohup, some CI launchers) inherits SIGINT
# ignored, and exec hands "ignored" on to every child: Python then never raises
# KeyboardInterrupt, and those tests fail (seen in CI: a Ctrl-C'd sweep ran to the end, exit 0).
# A handler here is reset to the default in each child at exec, whatever launched pytest.
# (neuronperf itself rightly keeps an inherited "ignored": that is what a nohup'd sweep asks for.)
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``cli("plan", "x.yaml")`` -> (exit code, stdout, stderr), run in this process."""
    from neuronperf.cli import main

    def run(*argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return CliResult(code, out.getvalue(), err.getvalue())

    return run
