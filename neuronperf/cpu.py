"""``neuronperf.cpu``: benchmark a Python model class on the CPU (NeuronPerf's API).

The class is instantiated inside each worker process, so it must be importable at module top
level (a class defined under ``if __name__ == "__main__":`` cannot reach the workers).
"""

from __future__ import annotations

from typing import Any

from neuronperf.api.benchmarking import benchmark_loader
from neuronperf.errors import UsageError


def benchmark(model_class: Any, inputs: Any, *args: Any, **kwargs: Any) -> list:
    """Benchmark ``model_class()`` on ``inputs``; return one report per configuration.

    Accepts the keyword arguments of ``neuronperf.torch.benchmark`` (batch_sizes, duration,
    n_models, workers_per_model, the callbacks, return_timers, cost_per_hour, model_name...).
    By default n_models is ``[1, number of CPU cores]``: a user's model need not use more than
    one thread.
    """
    if len(args) > 2:
        raise UsageError("cpu.benchmark takes at most batch_sizes and duration positionally")
    for name, value in zip(("batch_sizes", "duration"), args):
        if name in kwargs:
            raise UsageError(f"cpu.benchmark got {name} twice")
        kwargs[name] = value
    device_type = kwargs.pop("device_type", "cpu")
    if device_type != "cpu":
        raise UsageError(f"neuronperf.cpu.benchmark runs on the CPU; device_type {device_type!r} is not allowed")
    name = kwargs.pop("model_name", None) or getattr(model_class, "__name__", None) or "model"
    return benchmark_loader("class", model_class, name, inputs, device_type="cpu", model_name=name, **kwargs)
