"""The spec's JSON Schema, shipped in the package (``schema.json``) and printed by ``neuronperf schema``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("schema.json")


@cache
def schema_text() -> str:
    """The spec's JSON Schema, as shipped in the package."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


def schema() -> dict:
    """The spec's JSON Schema as a dict (a fresh copy)."""
    return json.loads(schema_text())  # type: ignore[no-any-return]


@cache
def validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_text()))
