"""The NeuronPerf API's arguments, normalised: scalars where lists are allowed, example inputs
paired with batch sizes, tensor shapes read off examples, the options ``benchmark()`` accepts,
and the settings and (copies x threads) grid they mean. No call into the stages here: a bad
argument is a ``UsageError`` before anything is compiled or measured.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any, Callable, Optional

from neuronperf.entries import (
    BenchmarkSettings,
    TensorSpec,
    freeze,
)
from neuronperf.errors import (
    UsageError,
)

#: Seconds each configuration is measured when the caller does not say (NeuronPerf's documented
#: default; its code used 120).
DEFAULT_DURATION = 60.0


#: NeuronPerf's default worker threads per model copy.
DEFAULT_WORKERS_PER_MODEL = (1, 2)


def as_input_list(inputs: Any) -> list:
    """``inputs`` is one example input or a list of them (one per batch size). A tuple is ONE
    input holding several tensors (the model is called as ``model(*inputs)``)."""
    if inputs is None:
        raise UsageError("inputs is required: give one example input per batch size")
    if isinstance(inputs, list):
        if not inputs:
            raise UsageError("inputs is empty: give one example input per batch size")
        return inputs
    return [inputs]


def as_int_list(value: Any, name: str) -> Optional[list[int]]:
    """Scalars are accepted wherever lists are; every value must be a positive integer."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple, range)) else [value]
    if not values:
        raise UsageError(f"{name} is empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise UsageError(f"{name}: {v!r} is not a positive integer")
    if len(set(values)) != len(values):
        raise UsageError(f"{name}: {values} lists a value twice")
    return [int(v) for v in values]


def positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or float(value) < 0 or (float(value) == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise UsageError(f"{name} must be {kind} number, got {value!r}")
    return float(value)


def call_count(value: Any, name: str) -> int:
    """A whole number of calls, zero allowed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def batch_dim(example: Any) -> int:
    """The batch size of an example input: the first dimension of its first tensor."""
    first = example[0] if isinstance(example, (tuple, list)) and example else example
    if isinstance(first, dict):
        first = next(iter(first.values()), None)
    shape = getattr(first, "shape", None)
    if not shape:
        raise UsageError(
            f"cannot infer the batch size from an input of type {type(first).__name__} without a "
            "batch dimension; pass batch_sizes"
        )
    return int(shape[0])


def paired_batch_sizes(inputs: list, batch_sizes: Any) -> list[int]:
    """``inputs[i]`` is the example for ``batch_sizes[i]``; infer them from the inputs if unset."""
    sizes = as_int_list(batch_sizes, "batch_sizes")
    if sizes is None:
        return [batch_dim(x) for x in inputs]
    if len(sizes) != len(inputs):
        raise UsageError(
            f"{len(inputs)} example inputs but {len(sizes)} batch sizes: inputs[i] is the "
            "example input for batch_sizes[i]"
        )
    return sizes


def tensor_specs(example: Any) -> tuple[TensorSpec, ...]:
    """Shapes (without the batch dimension), dtypes and value ranges of an example input."""
    import numpy as np

    tensors = example if isinstance(example, (tuple, list)) else (example,)
    specs = []
    for t in tensors:
        if hasattr(t, "detach"):
            array = t.detach().cpu()
            # numpy has no bfloat16: its shape and range survive a float32 view
            array = (array.float() if str(array.dtype) == "torch.bfloat16" else array).numpy()
        elif hasattr(t, "shape") and hasattr(t, "dtype"):
            array = np.asarray(t)
        else:
            raise UsageError(
                f"an example input holds a {type(t).__name__}, not a tensor or array; compile "
                "needs tensors (a tuple of them for a model with several arguments, in argument order)"
            )
        if array.ndim == 0:
            raise UsageError("an example input tensor has no batch dimension (it is a scalar)")
        dtype = str(getattr(t, "dtype", array.dtype)).replace("torch.", "")
        low = high = None
        if array.dtype.kind in "iub" and array.size:
            # Integer inputs (token ids) must stay in range: keep the example's range.
            low, high = float(array.min()), float(array.max()) + 1
        specs.append(TensorSpec(tuple(int(d) for d in array.shape[1:]), dtype, low, high))
    return tuple(specs)


def compiler_args_value(compiler_args: Any) -> Any:
    """NeuronPerf passed compiler_args to the compiler as they were (a list of flags or one
    string); a mapping is a backend's own options (e.g. ``{"freeze": False}`` for TorchScript)."""
    if compiler_args is None:
        return freeze({})
    if isinstance(compiler_args, dict):
        return freeze(compiler_args)
    if isinstance(compiler_args, (list, tuple, str)):
        return freeze({"args": list(compiler_args) if not isinstance(compiler_args, str) else compiler_args})
    raise UsageError(f"compiler_args must be a list of flags, a string or a mapping, got {type(compiler_args).__name__}")


def config_grid(n_models: Any, workers_per_model: Any, device_count: Callable[[], int],
                pipeline_size: int = 1) -> list[tuple[int, int]]:
    """The (n_models, workers_per_model) pairs measured for one artifact. NeuronPerf's defaults:
    workers ``[1, 2]`` x copies ``[1, MAX]``, MAX being how many copies of ``pipeline_size``
    devices fit (``device_count`` is asked only when needed: on Neuron it runs neuron-ls)."""
    workers = as_int_list(workers_per_model, "workers_per_model") or list(DEFAULT_WORKERS_PER_MODEL)
    copies = as_int_list(n_models, "n_models")
    if copies is None:
        most = max(1, device_count() // pipeline_size)
        copies = sorted({1, most})
    return [(n, w) for n in copies for w in workers]


def specs_or_empty(example: Any) -> tuple[TensorSpec, ...]:
    try:
        return tensor_specs(example)
    except Exception:  # an exotic input (a dict, a string) still benchmarks; it just has no shape column
        return ()


#: Arguments of the original API that this implementation accepts but does not need.
IGNORED_ARGUMENTS = {
    "multiprocess": "copies always run in their own processes",
    "multiinterpreter": "copies always run in their own processes",
    "stats_interval": "statistics come from every raw sample",
}


#: Keyword arguments ``benchmark_targets`` takes from the caller.
BENCHMARK_OPTIONS = (
    "duration", "n_models", "workers_per_model", "env_setup_fn", "setup_fn", "preprocess_fn",
    "postprocess_fn", "return_timers", "cost_per_hour", "instance_type", "max_infers",
    "min_calls", "warmup_calls", "warmup_s", "timeout", "peak_window_s", "repeat", "evaluation",
    "allow_oversubscription",
)


def benchmark_options(options: dict) -> dict:
    options = dict(options)
    verbosity = options.pop("verbosity", None)
    if verbosity is not None:
        from neuronperf.api.timer import set_verbosity

        set_verbosity(int(verbosity))
    multiprocess = options.pop("multiprocess", True)
    multiinterpreter = options.pop("multiinterpreter", False)
    options.pop("stats_interval", None)
    if multiprocess is False or multiinterpreter:
        which = "multiprocess=False" if multiprocess is False else "multiinterpreter=True"
        warnings.warn(f"{which} is ignored: {IGNORED_ARGUMENTS['multiprocess']}", stacklevel=4)
    unknown = sorted(set(options) - set(BENCHMARK_OPTIONS))
    if unknown:
        raise UsageError(f"benchmark() got unexpected arguments: {', '.join(unknown)}")
    return options


def compiler_for_file(framework: str, device_type: str, path: str) -> Optional[str]:
    """The compiler an artifact was made with, from its suffix when its index does not say."""
    if framework == "torch" and device_type in ("cpu", "cuda"):
        return {".pt2": "export"}.get(os.path.splitext(path)[1], "torchscript")
    return None


def benchmark_settings(
    duration: Optional[float], *, max_infers: Any = None, min_calls: Any = None, warmup_calls: Any = 10,
    warmup_s: Any = 0.0, timeout: Any = None, peak_window_s: Any = 1.0, repeat: Any = 1, evaluating: bool = False,
    allow_oversubscription: Any = False,
) -> BenchmarkSettings:
    """The measurement settings that ``benchmark()``'s arguments mean. ``duration=0`` is allowed
    only when ``evaluating`` (one untimed pass over a dataset); the timeout defaults to twice the
    duration plus two minutes, at least five minutes."""
    duration_s = DEFAULT_DURATION if duration is None else positive_number(duration, "duration", allow_zero=evaluating)
    return BenchmarkSettings(
        duration=duration_s,
        max_infers=None if max_infers is None else (as_int_list(max_infers, "max_infers") or [0])[0],
        min_calls=None if min_calls is None else (as_int_list(min_calls, "min_calls") or [0])[0],
        warmup_calls=call_count(warmup_calls, "warmup_calls"),
        warmup_s=positive_number(warmup_s, "warmup_s", allow_zero=True),
        timeout=positive_number(timeout, "timeout") if timeout is not None else max(300.0, 2 * duration_s + 120.0),
        peak_window_s=positive_number(peak_window_s, "peak_window_s"),
        repeat=(as_int_list(repeat, "repeat") or [1])[0],
        allow_oversubscription=flag(allow_oversubscription, "allow_oversubscription"),
    )


def flag(value: Any, name: str) -> bool:
    """A ``True``/``False`` argument."""
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be True or False, got {value!r}")
    return value
