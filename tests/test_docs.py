"""The documentation holds: every spec in it validates and its factories resolve, every Python
block marked ``<!-- runnable -->`` runs as a script, the spec reference is what the schema
gives, every result column is documented, relative links resolve, the site lists every page,
the README stays short, and no paragraph is written in two places.

The site itself (strict MkDocs: links, anchors) is built by ``nox -s docs``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from neuronperf.entries import ModelRef
from neuronperf.plan.expand import plan
from neuronperf.results.columns import RESULT_COLUMNS
from neuronperf.sources.factory import resolve_factory
from neuronperf.spec.load import load_spec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# Every hand-written page of prose in the tree (the spec reference is generated).
PROSE = [README, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md",
         *sorted(p for p in DOCS.glob("*.md") if p.name != "spec-reference.md")]
RUNNABLE_MARK = "<!-- runnable -->"


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file; a block right after the runnable mark is runnable."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            fence, lang = stripped[:3], stripped[3:].split(" ")[0]
            indent = len(lines[i]) - len(lines[i].lstrip())
            body, j = [], i + 1
            while j < len(lines) and lines[j].strip() != fence:
                body.append(lines[j][indent:])
                j += 1
            before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", before == RUNNABLE_MARK))
            i = j
        i += 1
    return blocks


def doc_blocks() -> list[Block]:
    return [b for p in [README, *sorted(DOCS.glob("*.md"))] for b in code_blocks(p)]


SPEC_BLOCKS = [b for b in doc_blocks() if b.lang == "yaml" and re.search(r"^version: 1$", b.text, re.M)]
RUNNABLE_BLOCKS = [b for b in doc_blocks() if b.runnable]


@pytest.mark.pure
def test_the_docs_hold_specs_and_runnable_blocks():
    # The parametrized tests below must not pass by finding nothing.
    assert len(SPEC_BLOCKS) >= 4, [b.where for b in SPEC_BLOCKS]
    assert len(RUNNABLE_BLOCKS) >= 3, [b.where for b in RUNNABLE_BLOCKS]
    assert all(b.lang == "python" for b in RUNNABLE_BLOCKS), "only Python blocks can be marked runnable"
    assert any(b.path == README for b in SPEC_BLOCKS), "the README's small spec is checked too"


@pytest.mark.pure
@pytest.mark.parametrize("block", SPEC_BLOCKS, ids=lambda b: b.where)
def test_every_spec_in_the_docs_validates_and_plans(block, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(block.text, encoding="utf-8")
    spec = load_spec(spec_file)  # raises SpecError, naming every problem, if the docs drifted
    # A model source names a checkpoint the docs cannot ship: planned with a stand-in
    # description (tests/test_sources_spec.py plans real ones).
    stand_in = {"inputs": [{"name": "x", "shape": [8], "dtype": "float32"}], "identity": {}}
    assert plan(spec, sources={m.name: stand_in for m in spec.models if m.source}).run_entries
    for model in spec.models:
        if model.source is None:
            # The factories the docs name exist (imported, not called: no framework is needed).
            assert callable(resolve_factory(ModelRef(model.name, model.factory, base_dir=str(tmp_path))))


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE_BLOCKS, ids=lambda b: b.where)
def test_every_runnable_python_block_runs_as_a_script(block, tmp_path):
    # As a user runs it: a script file in a folder of its own, beside the checkout's configs.
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    script = tmp_path / "snippet.py"
    script.write_text(block.text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{block.where} failed:\n{result.stdout}\n{result.stderr}"


def _reference_module():
    spec = importlib.util.spec_from_file_location("spec_reference", DOCS / "spec_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.pure
def test_the_spec_reference_page_is_generated_from_the_shipped_schema():
    assert (DOCS / "spec-reference.md").read_text(encoding="utf-8") == _reference_module().current_page(), (
        "docs/spec-reference.md is stale: run python docs/spec_reference.py")


def _reference_sections() -> dict[str, set[str]]:
    """Section key path ("" for the top level) -> the keys its table lists."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in (DOCS / "spec-reference.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            current = "" if title == "Top-level keys" else title.strip("`")
            sections[current] = set()
        elif current is not None and (m := re.match(r"\| `([^`]+)` \|", line)):
            sections[current].add(m.group(1))
    return sections


# Mappings whose keys are the user's own (kwargs, parameters, exclude rules, bounds, compiler flags).
FREE_FORM = {"models[].kwargs", "models[].params", "exclude[]", "objectives.slo", "compile.compiler_args"}


def _key_paths(value: object, path: str = ""):
    if isinstance(value, dict):
        for key, child in value.items():
            yield path, str(key)
            yield from _key_paths(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _key_paths(item, f"{path}[]")


@pytest.mark.pure
def test_the_spec_reference_lists_every_key_of_a_full_spec():
    # A spec using every key (a test fixture the validator accepts), against the generated tables.
    full = yaml.safe_load((ROOT / "tests" / "data" / "specs" / "valid" / "full.yaml").read_text())
    sections = _reference_sections()
    checked = 0
    for parent, key in _key_paths(full):
        if parent in FREE_FORM or any(parent.startswith(f + ".") for f in FREE_FORM):
            continue
        assert parent in sections, f"no section for {parent!r} in the spec reference"
        assert key in sections[parent], f"{parent or 'top level'}: {key!r} is missing from the spec reference"
        checked += 1
    assert checked >= 25


@pytest.mark.pure
def test_every_result_column_is_documented():
    text = (DOCS / "results.md").read_text(encoding="utf-8") + (DOCS / "measurement.md").read_text(encoding="utf-8")
    missing = [c for c in RESULT_COLUMNS if f"`{c}`" not in text]
    assert not missing, f"result columns without documentation: {missing}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.pure
@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target) or target.startswith(("#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: link to {target} names no file"


@pytest.mark.pure
def test_the_site_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = {next(iter(item.values())) for item in config["nav"]}
    assert listed == {p.name for p in DOCS.glob("*.md")}


@pytest.mark.pure
def test_the_readme_is_short_and_opens_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200
    top = "\n".join(lines[:30])
    assert "neuronperf run configs/quickstart.yaml" in top and "nox -s lint typecheck tests" in top
    assert "pip install neuronperf-sweep" in "\n".join(lines), "the README says how to install the package"


def _paragraphs(path: Path):
    """(normalized text, line) of each paragraph outside code blocks; a table counts as one."""
    text, line_no, start, current = path.read_text(encoding="utf-8"), 0, 0, []
    in_code = False
    for line_no, line in enumerate(text.splitlines() + [""], 1):
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.startswith("#"):
            continue
        if line.strip():
            if not current:
                start = line_no
            current.append(line.strip())
        elif current:
            yield " ".join(" ".join(current).split()), start
            current = []


@pytest.mark.pure
def test_no_paragraph_or_long_sentence_stands_in_two_places():
    # One source for every page: a paragraph (or a sentence of 15 words and more) written twice
    # drifts apart the first time someone edits one of the copies.
    seen: dict[str, list[str]] = defaultdict(list)
    for path in PROSE:
        for text, line in _paragraphs(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if len(text.split()) >= 8:
                seen[text].append(where)
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z`*(])", text):
                if len(sentence.split()) >= 15 and sentence != text:
                    seen[sentence].append(where)
    repeated = {text[:80]: places for text, places in seen.items() if len(places) > 1}
    assert not repeated, repeated
