"""Stable identities: the content hash of each compile and run entry, computed fast for large plans.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from neuronperf.entries import (
    CompileEntry,
    RunEntry,
    stable_hash,
)


def compile_keys(entries: Sequence[CompileEntry]) -> list[str]:
    """``entry.key`` of each compile entry (computed once each)."""
    return [stable_hash(e.to_dict()) for e in entries]


def run_keys(entries: Sequence[RunEntry]) -> list[str]:
    """``entry.key`` of each run entry, fast: the hash state of the canonical JSON up to the
    run axes is computed once per (compile entry, settings) pair, then copied per run entry."""
    if not entries:
        return []
    prefixes: dict[tuple[int, int], Any] = {}  # id()s of a shared compile entry and settings
    keys = []
    for e in entries:
        shared = (id(e.compile), id(e.benchmark))
        prefix = prefixes.get(shared)
        if prefix is None:
            # Exactly what json.dumps(sort_keys=True, separators=(",", ":")) writes for to_dict().
            head = f'{{"benchmark":{_canonical(e.benchmark.identity_dict())},"compile":{_canonical(e.compile.to_dict())},"n_models":'
            prefix = prefixes[shared] = hashlib.sha256(head.encode("utf-8"))
        h = prefix.copy()
        serving = f',"serving":{_canonical(e.serving.identity_dict())}' if e.serving is not None else ""
        h.update(f'{_canonical_int(e.n_models)}{serving},"workers_per_model":{_canonical_int(e.workers_per_model)}}}'.encode())
        keys.append(h.hexdigest()[:16])
    # The shortcut mirrors RunEntry.to_dict; should that ever change, fall back to the definition.
    if keys[0] != entries[0].key or keys[-1] != entries[-1].key:
        return [e.key for e in entries]
    return keys


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _canonical_int(value: Any) -> str:
    # json.dumps writes an int as str() does; anything else takes the general path.
    return str(value) if type(value) is int else _canonical(value)
