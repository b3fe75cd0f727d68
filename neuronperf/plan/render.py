"""A plan told to people and programs: its counts, one line of them, and the JSON that
``neuronperf plan --json`` prints.
"""

from __future__ import annotations

import json
from typing import Any

from neuronperf.entries import (
    Plan,
)
from neuronperf.plan.keys import compile_keys, run_keys


def counts(plan: Plan) -> dict[str, Any]:
    """The plan's numbers: planned (before exclusions), excluded (total and per rule), kept."""
    return {
        "planned": len(plan.run_entries) + plan.n_excluded,
        "excluded": plan.n_excluded,
        "excluded_by": dict(plan.excluded),
        "run_entries": len(plan.run_entries),
        "compile_entries": len(plan.compile_entries),
    }


def counts_line(plan: Plan) -> str:
    """e.g. "48 planned, 6 excluded by exclude[1]: 42 run entries, 14 compile entries"."""
    c = counts(plan)
    text = f"{c['planned']} planned"
    by_rule = [f"{n} excluded by {label}" for label, n in plan.excluded]
    if by_rule:
        text += ", " + ", ".join(by_rule)
    runs, compiles = c["run_entries"], c["compile_entries"]
    return text + f": {runs} run {_entries(runs)}, {compiles} compile {_entries(compiles)}"


def inputs_lines(plan: Plan) -> list[str]:
    """What each compiled model is called with, one line per compile entry, batch dimension
    included: ``distilbert-seq_len64-bs8-p1: input_ids=int64[8,64] in [0,30522),
    attention_mask=int64[8,64] all 1``. Named inputs are passed by keyword, others by position."""
    lines = []
    for entry in plan.compile_entries:
        shown = []
        for i, tensor in enumerate(entry.inputs):
            text = f"{tensor.name or f'[{i}]'}={tensor.dtype}[{','.join(str(d) for d in (entry.batch_size, *tensor.shape))}]"
            if tensor.low is not None and tensor.high is not None:
                low, high = _number(tensor.low), _number(tensor.high)
                integral = tensor.dtype.startswith(("int", "uint"))
                text += f" all {low}" if integral and tensor.high - tensor.low == 1 else f" in [{low},{high})"
            shown.append(text)
        lines.append(f"{entry.id}: {', '.join(shown)}")
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The machine-readable plan that ``neuronperf plan --json`` prints."""
    ckeys = compile_keys(plan.compile_entries)
    compiled = []
    by_compile: dict[int, tuple[str, str, dict[str, Any]]] = {}
    for entry, key in zip(plan.compile_entries, ckeys):
        params = dict(entry.params)
        by_compile[id(entry)] = (entry.id, key, params)
        compiled.append({"id": entry.id, "key": key, "input_idx": entry.input_idx, **entry.to_dict()})
    runs = []
    for run, key in zip(plan.run_entries, run_keys(plan.run_entries)):
        compile_id, compile_key, params = by_compile[id(run.compile)]
        serving = run.serving
        suffix = serving.id_suffix() if serving is not None else ""
        runs.append(
            {
                "id": f"{compile_id}-m{run.n_models}-w{run.workers_per_model}{suffix}",
                "key": key,
                "compile_id": compile_id,
                "compile_key": compile_key,
                "model": run.compile.model.name,
                "params": params,
                "batch_size": run.compile.batch_size,
                "pipeline_size": run.compile.pipeline_size,
                "n_models": run.n_models,
                "workers_per_model": run.workers_per_model,
                # The server scenario's axes; absent in the closed loop, as before it existed.
                **({"rate": "max" if serving.rate is None else serving.rate,
                    "max_queue_delay_ms": serving.max_queue_delay_ms} if serving is not None else {}),
            }
        )
    return {
        "name": plan.name,
        "output_dir": plan.output_dir,
        "counts": counts(plan),
        "compile_entries": compiled,
        "run_entries": runs,
    }


def plan_json(plan: Plan) -> str:
    """``plan_dict`` as JSON text, serialized in one call."""
    return json.dumps(plan_dict(plan), indent=None, separators=(",", ":"), default=str)


def _entries(n: int) -> str:
    return "entry" if n == 1 else "entries"
