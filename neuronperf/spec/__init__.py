"""The spec stage: a sweep YAML file in, a validated, typed ``Spec`` out.

Pure and fast: it reads one file and imports no user code, backend or framework. The document is
read with every value's position (``yaml_source``), checked against the shipped JSON Schema
(``schema``), then by one pass per part of the spec (``check_*``, run in order by ``checker``);
every problem is located (``FILE:LINE:COL: key.path: message``) and all of a file's problems are
raised together as one ``SpecError``. ``build`` makes the frozen values of ``values``.
"""

from __future__ import annotations

from neuronperf.spec.load import load_spec, parse_spec, spec_problem
from neuronperf.spec.schema import SCHEMA_FILE, schema, schema_text
from neuronperf.spec.values import (
    EXCLUDE_AXES,
    GENERATE_CAPABLE,
    GENERATE_ONLY_COMPILERS,
    MAX_COPIES,
    MAX_RUN_ENTRIES,
    SLO_COLUMNS,
    SWEEP_AXES,
    TASKS,
    CompileSettings,
    EvaluateSpec,
    ExcludeRule,
    InputTemplate,
    ModelSpec,
    Spec,
    SweepAxes,
    default_compile_jobs,
    substitute,
)
from neuronperf.spec.wording import parse_path

__all__ = [
    "EXCLUDE_AXES", "GENERATE_CAPABLE", "GENERATE_ONLY_COMPILERS", "MAX_COPIES", "MAX_RUN_ENTRIES",
    "SCHEMA_FILE", "SLO_COLUMNS", "SWEEP_AXES", "TASKS", "CompileSettings", "EvaluateSpec",
    "ExcludeRule", "InputTemplate", "ModelSpec", "Spec", "SweepAxes", "default_compile_jobs",
    "load_spec", "parse_path", "parse_spec", "schema", "schema_text", "spec_problem", "substitute",
]
