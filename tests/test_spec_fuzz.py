"""Fuzzing: mutated valid specs end in exit 0 or exit 2 with located messages, never a traceback.

Mutations work on the parsed document (drop a key, retype a value, misspell a key) and on the
raw text (duplicate a line, truncate, insert bytes), starting from every valid spec we ship.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.pure

ROOT = Path(__file__).parent.parent
# Configs whose models come from a checkpoint or a library (hf:, timm:) are left out: validating
# them reads what they name (test_configs does that beside checkpoints it makes).
SEEDS = sorted((ROOT / "tests" / "data" / "specs" / "valid").glob("*.yaml")) + [
    p for p in sorted((ROOT / "configs").glob("*.yaml"))
    if not any(f"\n    {key}: " in p.read_text() for key in ("hf", "timm", "torchvision", "file"))]
SEED_TEXTS = [p.read_bytes() for p in SEEDS]
LOCATED = re.compile(r"^\S.*:\d+:\d+: \S")

# Values of every YAML type, including awkward ones.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["$seq_len", "$nope", "$$x", "float32", "torch", "neuron", "eager", "ray", "", "-1", "0"]),
    st.lists(st.integers(-3, 5), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(-2, 3), max_size=3),
    st.just({"shape": ["$seq_len"], "dtype": "int64"}),
    st.just([{}]),
)


def paths_of(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every key path into a parsed document."""
    found = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths_of(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths_of(v, (*path, i))
    return found


def parent_and_key(doc: Any, path: tuple) -> tuple[Any, Any]:
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node, path[-1]


@st.composite
def structural_mutants(draw) -> bytes:
    doc = yaml.safe_load(draw(st.sampled_from(SEED_TEXTS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in paths_of(doc) if p]
        if not paths:
            break
        parent, key = parent_and_key(doc, draw(st.sampled_from(paths)))
        op = draw(st.sampled_from(["drop", "retype", "misspell", "copy_sibling"]))
        if op == "drop":
            del parent[key]
        elif op == "retype":
            # A copy: st.just() values are shared between examples and must stay unchanged.
            parent[key] = copy.deepcopy(draw(odd_values))
        elif op == "misspell" and isinstance(key, str) and key:
            i = draw(st.integers(0, len(key) - 1))
            new_key = key[:i] + draw(st.sampled_from(["", "x", key[i] * 2, "_", "s"])) + key[i + 1 :]
            parent[new_key] = parent.pop(key)
        elif op == "copy_sibling" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")


@st.composite
def text_mutants(draw) -> bytes:
    raw = draw(st.sampled_from(SEED_TEXTS))
    op = draw(st.sampled_from(["duplicate_line", "truncate", "insert", "delete_span"]))
    if op == "duplicate_line":
        lines = raw.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        return b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    at = draw(st.integers(0, len(raw)))
    if op == "truncate":
        return raw[:at]
    if op == "insert":
        junk = draw(st.one_of(st.binary(min_size=1, max_size=6), st.sampled_from([b":", b"- ", b"\t", b"[", b"{", b"&a", b"*a", b"!!python/name:os.system ", b"\xff", b"\x00", b"\n  "])))
        return raw[:at] + junk + raw[at:]
    end = draw(st.integers(at, min(len(raw), at + 40)))
    return raw[:at] + raw[end:]


def check_outcome(cli, tmp_path_factory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_bytes(content)
    code, out, err = cli("validate", str(path))
    assert "Traceback" not in err
    if code == 0:
        assert out.startswith(f"{path}: ok (") and err == ""
    else:
        assert code == 2, err
        lines = err.splitlines()
        assert lines, "exit 2 without a message"
        for line in lines:
            assert line.startswith(f"{path}:") and LOCATED.match(line), line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(structural_mutants())
def test_structural_mutations(cli, tmp_path_factory, content):
    check_outcome(cli, tmp_path_factory, content)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text_mutants())
def test_text_mutations(cli, tmp_path_factory, content):
    check_outcome(cli, tmp_path_factory, content)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes(cli, tmp_path_factory, content):
    check_outcome(cli, tmp_path_factory, content)


def test_seeds_are_valid(cli):
    # The mutations start from valid specs, so that most mutants are one mistake away from valid.
    code, out, err = cli("validate", *map(str, SEEDS))
    assert code == 0, err
    assert len(out.splitlines()) == len(SEEDS)
