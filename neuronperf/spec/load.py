"""Reading a spec: a YAML file (or text) -> a validated ``Spec``, or one ``SpecError`` holding every located problem.
"""

from __future__ import annotations

import os
from typing import Union

from neuronperf.errors import Problem, SpecError
from neuronperf.spec.checker import check
from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import Spec
from neuronperf.spec.wording import locate, parse_path
from neuronperf.spec.yaml_source import (
    KeyPath,
    LoadedYaml,
    format_path,
    load_yaml_bytes,
    load_yaml_file,
    one_line,
)


def load_spec(path: Union[str, os.PathLike]) -> Spec:
    """Read and validate the spec at ``path``; raise ``SpecError`` with every problem found."""
    source = os.fspath(path)
    return _build(load_yaml_file(source), source, os.path.dirname(os.path.abspath(source)))


def parse_spec(content: Union[str, bytes], source: str = "<spec>", base_dir: str = ".") -> Spec:
    """Validate spec text that is already in memory; ``source`` names it in messages."""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    return _build(load_yaml_bytes(raw), source, os.path.abspath(base_dir))


def spec_problem(spec: Spec, key_path: Union[str, KeyPath], message: str, at_key: bool = False) -> Problem:
    """A ``Problem`` located at ``key_path`` (e.g. ``"models[0].factory"``) in the spec's file,
    or at its nearest ancestor that has a position."""
    path = parse_path(key_path) if isinstance(key_path, str) else tuple(key_path)
    line, col = locate(spec.value_pos, spec.key_pos, path, at_key)
    return Problem(spec.source, line, col, format_path(path), one_line(message))


def _build(loaded: LoadedYaml, source: str, base_dir: str) -> Spec:
    ctx = CheckContext(loaded, source, base_dir)
    spec = check(ctx)
    if ctx.problems or spec is None:
        raise SpecError(_without_echoes(ctx.problems, len(loaded.problems)))
    return spec


def _without_echoes(problems: list[Problem], n_reading: int) -> list[Problem]:
    """Drop repeats, and later problems at a path where reading the file already failed (a
    rejected tag leaves a null behind; "expected a string, got null" would only be noise)."""
    reading, rest = problems[:n_reading], problems[n_reading:]
    failed_paths = {p.path for p in reading}
    return list(dict.fromkeys(reading + [p for p in rest if p.path not in failed_paths]))
