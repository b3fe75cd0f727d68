"""Read a YAML file into plain Python values while keeping where each key and value came from.

PyYAML's loaders forget positions once a value is constructed, accept duplicate keys silently and
(outside ``SafeLoader``) execute ``!!python/...`` tags. Here the file is only *composed* into
nodes by a ``SafeLoader`` subclass, then converted by hand: every mapping key and value records
its 1-based ``(line, col)`` under its key path, duplicate keys and non-standard tags become
problems, and nothing is ever executed. All problems of a file are collected in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: A key path into the loaded document, e.g. ("models", 0, "factory").
KeyPath = tuple[Union[str, int], ...]
Position = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
# Scalar tags a spec may carry (the YAML 1.1 core types SafeLoader knows). Collections are only
# plain sequences and mappings: ``!!set``/``!!omap`` have no meaning in a spec.
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp", "binary")}
_MERGE_TAG = _TAG + "merge"
# Aliases can expand a small file into an enormous document ("billion laughs"); a spec never
# needs more values than this, and deeper nesting than this is never meaningful either.
MAX_NODES = 200_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class YamlProblem:
    """A problem found while reading the file, before any meaning is given to its keys."""

    line: int
    col: int
    path: KeyPath
    message: str


@dataclass
class LoadedYaml:
    """The document as plain values, with the positions of every key and value in it."""

    data: Any = None
    #: Where each value starts, by key path; the root document is at path ().
    value_pos: dict[KeyPath, Position] = field(default_factory=dict)
    #: Where each mapping key starts, by the key path of its value.
    key_pos: dict[KeyPath, Position] = field(default_factory=dict)
    problems: list[YamlProblem] = field(default_factory=list)


class PositionLoader(yaml.SafeLoader):
    """Safe loading only: used to compose nodes (which carry marks) and to build scalars."""


class _TooLarge(Exception):
    pass


def one_line(text: str) -> str:
    """Escape line breaks and other control characters: every problem must stay on one line,
    even when it quotes a key or value that contains them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_path(path: KeyPath) -> str:
    """``("models", 0, "factory")`` -> ``"models[0].factory"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return one_line(text)


def load_yaml_file(path: str) -> LoadedYaml:
    """Read and compose ``path``; the result holds either the data or the problems (or both)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return _failed(1, 1, f"cannot read the file: {e.strerror or e}")
    return load_yaml_bytes(raw)


def load_yaml_bytes(raw: bytes) -> LoadedYaml:
    """Like ``load_yaml_file`` for content already in memory."""
    if b"\x00" in raw:
        line, col = _byte_position(raw, raw.index(b"\x00"))
        return _failed(line, col, "this is a binary file (it contains NUL bytes), not YAML text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, col = _byte_position(raw, e.start)
        return _failed(line, col, f"not UTF-8 text (byte 0x{raw[e.start]:02x}); is this a binary file?")
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        line, col = _text_position(text, bad.start())
        return _failed(line, col, f"unexpected control character U+{ord(bad.group()):04X} in YAML text")
    return load_yaml_text(text)


def load_yaml_text(text: str) -> LoadedYaml:
    """Compose ``text`` and convert it, keeping positions."""
    loader = PositionLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = e.problem or e.context or "invalid YAML"
        if e.context and e.problem and e.problem.startswith("but "):
            detail = f"{e.context} {e.problem}"
        elif e.context and e.problem and e.context_mark and e.context_mark is not mark:
            detail += f" ({e.context} at line {e.context_mark.line + 1})"
        return _failed(line, col, f"YAML syntax error: {detail}")
    except yaml.YAMLError as e:
        return _failed(1, 1, f"YAML error: {e}")
    except RecursionError:
        return _failed(1, 1, "the document is nested too deeply")
    finally:
        loader.dispose()
    result = LoadedYaml()
    if root is None:
        result.problems.append(YamlProblem(1, 1, (), "the file is empty; a spec starts with 'version: 1'"))
        return result
    converter = _Converter(loader, result)
    try:
        result.data = converter.convert(root, ())
    except _TooLarge:
        result.data = None
        result.problems.append(
            YamlProblem(1, 1, (), f"the document expands to more than {MAX_NODES} values (aliases?)")
        )
    return result


class _Converter:
    """Turns composed nodes into plain values, recording positions and problems."""

    def __init__(self, loader: PositionLoader, result: LoadedYaml):
        self.loader = loader
        self.result = result
        self.n_nodes = 0
        self.active: set[int] = set()  # nodes being converted: an alias to one is a cycle

    def problem(self, node: Node, path: KeyPath, message: str) -> None:
        mark = node.start_mark
        self.result.problems.append(YamlProblem(mark.line + 1, mark.column + 1, path, one_line(message)))

    def convert(self, node: Node, path: KeyPath) -> Any:
        self.n_nodes += 1
        if self.n_nodes > MAX_NODES:
            raise _TooLarge
        self.result.value_pos[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if len(path) > MAX_DEPTH:
            self.problem(node, path, f"nested more than {MAX_DEPTH} levels deep")
            return None
        if id(node) in self.active:
            self.problem(node, path, "an alias refers to a value that contains it (a cycle)")
            return None
        if node.tag.startswith(_TAG + "python/"):
            self.problem(node, path, f"the tag '!!{node.tag[len(_TAG):]}' is not allowed: specs are loaded safely, tags are never executed")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _TAG + "seq":
                    self.problem(node, path, f"unsupported tag {_tag_name(node.tag)} on a list")
                    return None
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                if node.tag != _TAG + "map":
                    self.problem(node, path, f"unsupported tag {_tag_name(node.tag)} on a mapping")
                    return None
                return self.mapping(node, path)
        finally:
            self.active.discard(id(node))
        self.problem(node, path, "unsupported YAML node")
        return None

    def scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.problem(node, path, f"unsupported tag {_tag_name(node.tag)}")
            return None
        try:
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            self.problem(node, path, f"{node.value!r} is not a valid {_tag_name(node.tag)} value")
            return None

    def mapping(self, node: MappingNode, path: KeyPath) -> dict:
        merged: dict = {}
        explicit: dict = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # "<<: *defaults" copies keys the mapping does not set itself (YAML merge keys).
                for source in _merge_sources(value_node):
                    if source is None:
                        self.problem(value_node, path, "'<<' must merge a mapping or a list of mappings")
                        continue
                    value = self.convert(source, path)
                    if isinstance(value, dict):
                        for k, v in value.items():
                            merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node, path, "a key must be a plain name, not a list or a mapping")
                continue
            # The key's source text is its name: 'on:' or '1:' stay the strings "on" and "1".
            key = key_node.value
            key_path = (*path, key)
            if key in first_seen:
                first = first_seen[key].start_mark
                self.problem(key_node, key_path, f"duplicate key '{key}' (first set at line {first.line + 1})")
                continue
            first_seen[key] = key_node
            self.result.key_pos[key_path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            explicit[key] = self.convert(value_node, key_path)
        merged.update(explicit)
        return merged


def _merge_sources(node: Node) -> list:
    if isinstance(node, MappingNode):
        return [node]
    if isinstance(node, SequenceNode):
        return [item if isinstance(item, MappingNode) else None for item in node.value]
    return [None]


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _failed(line: int, col: int, message: str) -> LoadedYaml:
    return LoadedYaml(problems=[YamlProblem(line, col, (), one_line(message))])


def _byte_position(raw: bytes, offset: int) -> Position:
    before = raw[:offset]
    line_start = before.rfind(b"\n") + 1
    return before.count(b"\n") + 1, offset - line_start + 1


def _text_position(text: str, offset: int) -> Position:
    before = text[:offset]
    line_start = before.rfind("\n") + 1
    return before.count("\n") + 1, offset - line_start + 1
