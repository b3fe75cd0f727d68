"""The state every check pass shares: the YAML as read (values and their positions), the
spec's folder, and the problems found so far, each located at its key path."""

from __future__ import annotations

from neuronperf.errors import Problem
from neuronperf.spec.wording import locate
from neuronperf.spec.yaml_source import KeyPath, LoadedYaml, format_path, one_line


class CheckContext:
    """Collects every problem of one file; the passes add to it, ``checker.check`` reads it."""

    def __init__(self, loaded: LoadedYaml, source: str, base_dir: str):
        self.loaded = loaded
        self.source = source
        self.base_dir = base_dir
        self.problems: list[Problem] = [
            Problem(source, p.line, p.col, format_path(p.path), p.message) for p in loaded.problems
        ]

    def problem(self, path: KeyPath, message: str, at_key: bool = False) -> None:
        line, col = locate(self.loaded.value_pos, self.loaded.key_pos, path, at_key)
        self.problems.append(Problem(self.source, line, col, format_path(path), one_line(message)))

    def line_of(self, path: KeyPath) -> int:
        return locate(self.loaded.value_pos, self.loaded.key_pos, path, False)[0]
