"""The order of the checks: one pass per part of the spec, all run, every problem collected.

Each pass lives in its own module and is named for what it checks (``check_target.target_pass``,
``check_models.models_pass``, ...); a pass that needs what an earlier one found (the resolved
target, each model's params, the sweep's axes) takes it as an argument. The ``Spec`` is built
only when no pass found a problem.
"""

from __future__ import annotations

from typing import Optional

from neuronperf.spec.build import make_spec
from neuronperf.spec.check_benchmark import benchmark_pass
from neuronperf.spec.check_document import finite_pass, schema_pass
from neuronperf.spec.check_models import models_pass
from neuronperf.spec.check_search import search_pass
from neuronperf.spec.check_serving import serving_pass
from neuronperf.spec.check_sources import sources_pass
from neuronperf.spec.check_sweep import exclude_pass, lnc_pass, size_pass, sweep_pass
from neuronperf.spec.check_target import target_pass
from neuronperf.spec.check_task import task_pass
from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import LNC_AXIS, Spec
from neuronperf.spec.wording import describe


def check(ctx: CheckContext) -> Optional[Spec]:
    """Run every pass over the document in ``ctx``; the ``Spec``, or None when ``ctx.problems``
    holds why not."""
    data = ctx.loaded.data
    if data is None and ctx.problems:
        return None  # the file could not be read as YAML at all
    if not isinstance(data, dict):
        ctx.problem((), f"the top level must be a mapping (version: 1, framework: ..., models: ...), got {describe(data)}")
        return None
    finite_pass(ctx, data, ())
    schema_pass(ctx, data)
    target = target_pass(ctx, data)
    models = data.get("models")
    params_by_model = models_pass(ctx, models) if isinstance(models, list) else []
    sweep = data.get("sweep")
    axes = sweep_pass(ctx, sweep if isinstance(sweep, dict) else {}, target)
    lnc = lnc_pass(ctx, sweep if isinstance(sweep, dict) else {}, target, data.get("instance_type"))
    if lnc:
        axes[LNC_AXIS[1]] = lnc
    axes.update(serving_pass(ctx, data))
    exclude = data.get("exclude")
    if isinstance(exclude, list):
        exclude_pass(ctx, exclude, models if isinstance(models, list) else [], params_by_model, axes)
    benchmark = data.get("benchmark")
    if isinstance(benchmark, dict):
        benchmark_pass(ctx, benchmark)
    if isinstance(models, list):
        sources_pass(ctx, models, target)
        task_pass(ctx, models, target)
    search_pass(ctx, data)
    size_pass(ctx, params_by_model, axes)
    if ctx.problems:
        return None
    return make_spec(ctx, data, target, axes)
