"""Where a plan's artifacts go and the model index that the compile stage fills in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from neuronperf.entries import (
    CompileEntry,
    Plan,
    TensorSpec,
)
from neuronperf.plan.keys import compile_keys
from neuronperf.util.paths import safe_file_stem

#: The folder of output_dir (and of a model index) that holds the compiled artifacts.
MODELS_DIR = "models"


def plan_inputs(plan: Plan) -> list[tuple[tuple[TensorSpec, ...], int]]:
    """The plan's distinct example inputs as (tensor specs, batch size), in ``input_idx`` order."""
    found: dict[int, tuple[tuple[TensorSpec, ...], int]] = {}
    for entry in plan.compile_entries:
        found.setdefault(entry.input_idx, (entry.inputs, entry.batch_size))
    return [found[i] for i in sorted(found)]


def artifact_relpath(entry: CompileEntry, suffix: Optional[str], key: Optional[str] = None) -> str:
    """Where ``entry``'s artifact goes, relative to the model index's folder:
    ``models/<compile id>-<key[:8]><suffix>``. ``suffix`` is the backend's artifact suffix
    ("" for a folder); None means no artifact at all (eager), and the name is then
    ``<compiler>:<compile id>-<key[:8]>``, which names no file. ``key`` defaults to ``entry.key``."""
    stem = safe_file_stem(entry.id, key or entry.key)
    if suffix is None:
        return f"{entry.compiler}:{stem}"
    return f"{MODELS_DIR}/{stem}{suffix}"


def planned_index(plan: Plan, suffix: Optional[str] = ".pt", keys: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The model index the compile stage will fill in (``compile_s``, and ``filename`` if it
    chooses another), one config per compile entry, in the seed's format plus identity keys."""
    from neuronperf.version import __version__

    keys = list(keys) if keys is not None else compile_keys(plan.compile_entries)
    configs = []
    for entry, key in zip(plan.compile_entries, keys):
        configs.append(
            {
                "filename": artifact_relpath(entry, suffix, key),
                "input_idx": entry.input_idx,
                "batch_size": entry.batch_size,
                "pipeline_size": entry.pipeline_size,
                "compile_s": None,
                "id": entry.id,
                "key": key,
                "model_name": entry.model.name,
                "params": dict(entry.params),
            }
        )
    return {"version": __version__, "model_configs": configs}
