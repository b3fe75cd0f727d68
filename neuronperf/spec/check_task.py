"""What one timed call is (``task: forward | generate``) and whether the model and the target
agree with it.
"""

from __future__ import annotations

from neuronperf.spec.check_target import Target
from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import GENERATE_CAPABLE, GENERATE_ONLY_COMPILERS, TASKS
from neuronperf.spec.yaml_source import (
    KeyPath,
)


def task_pass(ctx: CheckContext, models: list, target: Target) -> None:
    """``task: generate`` needs a ``generate`` key, one integer input (the prompt's token
    ids), no ``evaluate``, and a target that can generate; ``generate`` means nothing to a
    forward model, and a generation-only compiler runs no forward model."""
    fw, dev, comp = target.framework, target.device_type, target.compiler
    known_target = target.builtin and dev is not None and comp is not None
    for i, model in enumerate(models):
        if not isinstance(model, dict) or model.get("task", "forward") not in TASKS:
            continue
        base: KeyPath = ("models", i)
        if model.get("task", "forward") == "forward":
            if "generate" in model:
                ctx.problem((*base, "generate"), "generate applies to 'task: generate' models only; add task: generate or remove it", at_key=True)
            if known_target and (fw, dev, comp) in GENERATE_ONLY_COMPILERS:
                ctx.problem(base, f"compiler {comp} builds generation models only; give this model task: generate")
            continue
        if "generate" not in model:
            ctx.problem((*base, "task"), "task: generate needs a generate key: generate: {new_tokens: N}")
        if known_target and (fw, dev, comp) not in GENERATE_CAPABLE:
            capable = ", ".join("/".join(t) for t in sorted(GENERATE_CAPABLE))
            here = [c for f, d, c in sorted(GENERATE_CAPABLE) if (f, d) == (fw, dev)]
            fix = f"; use compiler: {here[0]}" if here else ""
            ctx.problem((*base, "task"), f"task: generate does not run on {fw}/{dev}/{comp} (framework/device_type/compiler){fix}; it runs on: {capable}")
        if "evaluate" in model:
            ctx.problem((*base, "evaluate"), "evaluate measures the accuracy of forward models; a 'task: generate' model takes none", at_key=True)
        inputs = model.get("inputs")
        if isinstance(inputs, list) and len(inputs) != 1:
            ctx.problem((*base, "inputs"), f"a 'task: generate' model takes one input, the prompt's token ids ({{shape: [$prompt_len], dtype: int64, low: 0, high: VOCAB}}); got {len(inputs)}")
        elif isinstance(inputs, list) and inputs:
            tensor = inputs[0]
            dtype = tensor.get("dtype", "float32") if isinstance(tensor, dict) else "float32"
            shape = tensor.get("shape") if isinstance(tensor, dict) else tensor
            if isinstance(dtype, str) and dtype not in ("int64", "int32"):
                ctx.problem((*base, "inputs", 0, "dtype") if isinstance(tensor, dict) and "dtype" in tensor else (*base, "inputs", 0),
                             f"the prompt's token ids are integers: give the input dtype: int64 (got {dtype})")
            if isinstance(shape, list) and len(shape) != 1:
                ctx.problem((*base, "inputs", 0), f"the prompt's token ids have one dimension without the batch, [$prompt_len]; got {len(shape)}")
            if isinstance(tensor, dict) and tensor.get("high") is None and isinstance(dtype, str) and dtype in ("int64", "int32"):
                ctx.problem((*base, "inputs", 0), "give the prompt's token ids a range, low: 0 and high: the vocabulary size, so that every id is a real token")
