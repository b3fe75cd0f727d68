"""The plan stage: a ``Spec`` in, a ``Plan`` of frozen compile and run entries out.

``expand`` multiplies the spec's axes and drops what the exclude rules match; ``keys`` gives each
entry its content hash (its identity for resume); ``index`` names each artifact and the model
index the compile stage fills in; ``render`` counts and prints a plan. Pure: no framework,
backend or user code.
"""

from __future__ import annotations

from neuronperf.plan.expand import plan
from neuronperf.plan.index import artifact_relpath, plan_inputs, planned_index
from neuronperf.plan.keys import compile_keys, run_keys
from neuronperf.plan.render import counts, counts_line, plan_dict, plan_json

__all__ = [
    "artifact_relpath", "compile_keys", "counts", "counts_line", "plan", "plan_dict", "plan_inputs",
    "plan_json", "planned_index", "run_keys",
]
