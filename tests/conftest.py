"""Shared fixtures: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stderr, redirect_stdout
from typing import Callable, NamedTuple

import pytest

# The Python API's tests build torch models at import time. Where torch is not installed (the
# pure-Python sessions on Python 3.9-3.13), they are not collected at all, rather than failing.
collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["test_api_*.py"]


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
