"""How spec problems are located and worded: positions of key paths, value descriptions, and
"did you mean" hints.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from neuronperf.spec.values import REFERENCE
from neuronperf.spec.yaml_source import (
    KeyPath,
    Position,
)

DEVICE_ALIASES = {"gpu": "cuda", "inf1": "neuron", "inf2": "neuron", "trn1": "neuron", "inferentia": "neuron"}


def parse_path(text: str) -> KeyPath:
    """``"models[0].factory"`` -> ``("models", 0, "factory")``."""
    parts: list[Union[str, int]] = []
    for token in re.finditer(r"\[(\d+)\]|([^.\[\]]+)", text):
        parts.append(int(token.group(1)) if token.group(1) is not None else token.group(2))
    return tuple(parts)


def locate(value_pos: Mapping[KeyPath, Position], key_pos: Mapping[KeyPath, Position], path: KeyPath, at_key: bool) -> Position:
    if at_key and path in key_pos:
        return key_pos[path]
    for n in range(len(path), -1, -1):
        if path[:n] in value_pos:
            return value_pos[path[:n]]
    return (1, 1)


def references(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    """Every ``"$name"`` string inside a kwargs value, with its key path."""
    if isinstance(value, str):
        ref = REFERENCE.match(value)
        return [(path, ref.group(1))] if ref else []
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in references(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in references(v, (*path, i))]
    return []


def suggestion(value: Any, choices: Sequence[str], aliases: Optional[Mapping[str, str]] = None, listed: bool = False) -> str:
    """"; did you mean 'x'?" for a close match (or a known alias), else ""."""
    if not isinstance(value, str):
        return ""
    if aliases and value.lower() in aliases and aliases[value.lower()] in choices:
        return f"; did you mean '{aliases[value.lower()]}'?"
    close = closest(value, choices)
    if close:
        return f"; did you mean '{close}'?"
    if listed or len(choices) > 20:
        return ""
    return f" (allowed: {', '.join(choices)})"


def closest(value: str, choices: Sequence[str]) -> Optional[str]:
    """The choice that ``value`` most likely misspells (case-insensitively), if any."""
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def same_value(a: Any, b: Any) -> bool:
    # True == 1 in Python, but a bool parameter value must not match an integer one.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def is_integral(value: Any) -> bool:
    return is_number(value) and (isinstance(value, int) or float(value).is_integer())


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or is_number(value)


def id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return show(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (int, float)):
        return show(value)
    return f"a {type(value).__name__} value"


TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
    "null": "null",
}


def type_phrase(types: list[str]) -> str:
    if "integer" in types and "number" in types:
        types = [t for t in types if t != "integer"]
    words = [TYPE_WORDS.get(t, t) for t in types]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
