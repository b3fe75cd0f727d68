"""Where each model comes from: exactly one of ``factory``, ``hf``, ``timm``, ``torchvision`` and
``file``, with the keys that go with it (``hf_task`` and ``hf_kwargs`` with ``hf``,
``pretrained`` with timm/torchvision, ``kwargs`` not with ``hf`` or ``file``), and ``inputs``
where nothing else can tell them.

Only what the spec file says is checked here (and that a ``file:`` exists, as a factory file's
existence is): whether a checkpoint, an architecture or an artifact is what it claims is asked of
``neuronperf.sources`` when the sweep is planned, and reported at the same key.
"""

from __future__ import annotations

import os
from typing import Any

from neuronperf.spec.check_target import Target
from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import MODEL_SOURCE_KEYS
from neuronperf.spec.yaml_source import KeyPath

#: A file: artifact's framework, told by its name (a folder is a SavedModel); the sources stage
#: reads the file itself (a Neuron-compiled .pt, a pickled one) when planning.
_SUFFIX_FRAMEWORK = {".onnx": "onnxruntime", ".pt2": "torch", ".pt": "torch", ".pth": "torch", ".ts": "torch",
                     ".torchscript": "torch", ".jit": "torch"}


def sources_pass(ctx: CheckContext, models: list, target: Target) -> None:
    for i, model in enumerate(models):
        if isinstance(model, dict):
            _model_source(ctx, ("models", i), model, target)


def _model_source(ctx: CheckContext, base: KeyPath, model: dict, target: Target) -> None:
    present = [key for key in MODEL_SOURCE_KEYS if key in model]
    if not present:
        ctx.problem(base, f"no model source: give one of {', '.join(MODEL_SOURCE_KEYS)}")
        return
    for extra in present[1:]:
        ctx.problem((*base, extra), f"a model has exactly one source, and this one has {' and '.join(present)}; keep one", at_key=True)
    kind = present[0]
    if "hf_task" in model and kind != "hf":
        ctx.problem((*base, "hf_task"), "hf_task goes with an hf: checkpoint", at_key=True)
    if "hf_kwargs" in model and kind != "hf":
        ctx.problem((*base, "hf_kwargs"), "hf_kwargs go with an hf: checkpoint (to from_pretrained)", at_key=True)
    if "pretrained" in model and kind not in ("timm", "torchvision"):
        ctx.problem((*base, "pretrained"), "pretrained goes with a timm: or torchvision: architecture", at_key=True)
    if "kwargs" in model and kind in ("hf", "file"):
        fix = "use hf_kwargs (passed to from_pretrained)" if kind == "hf" else "an artifact is loaded as it is"
        ctx.problem((*base, "kwargs"), f"kwargs go with a factory, timm: or torchvision:; {fix}", at_key=True)
    if kind == "hf" and "hf_task" not in model:
        ctx.problem((*base, "hf"), "an hf: checkpoint needs hf_task: what it is loaded as (feature-extraction, "
                                   "text-classification, token-classification, question-answering, fill-mask, "
                                   "causal-lm or image-classification)")
    if model.get("task") == "generate":
        if kind in ("timm", "torchvision", "file"):
            ctx.problem((*base, "task"), f"task: generate needs a causal language model (a factory, or hf: with hf_task: causal-lm); {kind}: models run forward passes")
        elif kind == "hf" and model.get("hf_task") not in (None, "causal-lm"):
            ctx.problem((*base, "hf_task"), f"task: generate needs hf_task: causal-lm (got {model.get('hf_task')})")
    if kind == "factory" and "inputs" not in model:
        ctx.problem(base, "a factory model needs inputs: the tensors of one call (hf:, timm: and torchvision: models have them from their config)")
    if kind == "file":
        _file_check(ctx, base, model, target)


def _file_check(ctx: CheckContext, base: KeyPath, model: dict, target: Target) -> None:
    value: Any = model.get("file")
    if not isinstance(value, str):
        return  # the schema said so
    path = os.path.expanduser(value)
    path = path if os.path.isabs(path) else os.path.join(ctx.base_dir, path)
    where = (*base, "file")
    if not os.path.exists(path):
        ctx.problem(where, f"no such file or folder: {os.path.abspath(path)}")
        return
    suffix = os.path.splitext(path)[1].lower()
    framework = "tensorflow" if os.path.isdir(path) else _SUFFIX_FRAMEWORK.get(suffix)
    if framework is not None and target.framework is not None and target.builtin and framework != target.framework:
        ctx.problem(where, f"{os.path.basename(path.rstrip(os.sep)) or path} runs with framework: {framework} (this spec's framework is {target.framework})")
    if "inputs" not in model and framework != "onnxruntime":
        ctx.problem(base, "this artifact declares no inputs (only an .onnx graph does): give inputs:, each with the name it is passed by, e.g. {name: input_ids, shape: [128], dtype: int64, low: 0, high: 30522}")
