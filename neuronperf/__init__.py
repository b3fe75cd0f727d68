"""neuronperf: declarative benchmark sweeps for ML inference, and the NeuronPerf Python API.

``import neuronperf`` is cheap: it imports no framework. ``neuronperf.torch``,
``neuronperf.tensorflow`` and ``neuronperf.cpu`` import theirs only when a call needs it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from neuronperf import cpu, model_index, tensorflow, torch
from neuronperf.api.reporting import get_reports, print_reports, write_csv, write_json
from neuronperf.api.timer import Timer, set_verbosity, timestamp_convert
from neuronperf.metrics import (
    BaseEvalMetric,
    list_metrics,
    register_metric,
    register_metric_from_existing,
)
from neuronperf.version import __version__


def compile(  # noqa: A001 - NeuronPerf's public name
    compile_fn: Callable[..., Any], model: Any, inputs: Any, batch_sizes: Any = None,
    pipeline_sizes: Any = None, models_dir: str = "models", model_name: Optional[str] = None,
    filename: Optional[str] = None, compiler_args: Any = None, suffix: str = ".pt",
) -> str:
    """Compile with your own function: ``compile_fn(model, example_input, filename,
    batch_size=, pipeline_size=, compiler_args=)`` must write the artifact at ``filename``.
    Returns the model index path."""
    from neuronperf.api.compiling import compile_with_function

    return compile_with_function(
        compile_fn, model, inputs, batch_sizes, pipeline_sizes, models_dir, model_name,
        filename, compiler_args, suffix,
    )


def benchmark(load_fn: Callable[..., Any], model_filename: str, inputs: Any, **kwargs: Any) -> list:
    """Benchmark a model that ``load_fn(model_filename, device_id=int)`` loads in each worker
    process (so ``load_fn`` must be a top-level function); return one report per configuration.

    Takes the keyword arguments of ``neuronperf.torch.benchmark``; ``device_type`` defaults to
    "cpu" (on "neuron" each copy is pinned to its own cores).
    """
    from neuronperf.api.benchmarking import benchmark_loader

    device_type = kwargs.pop("device_type", "cpu")
    return benchmark_loader("load_fn", load_fn, model_filename, inputs, device_type=device_type, **kwargs)


__all__ = [
    "__version__",
    "BaseEvalMetric", "list_metrics", "register_metric", "register_metric_from_existing",
    "Timer", "benchmark", "compile", "cpu", "get_reports", "model_index", "print_reports",
    "set_verbosity", "tensorflow", "timestamp_convert", "torch", "write_csv", "write_json",
]
