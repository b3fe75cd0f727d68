"""``neuronperf.cpu``: benchmark a Python model class on the CPU (NeuronPerf's API).

The class is instantiated inside each worker process, so it must be importable at module top
level (a class defined under ``if __name__ == "__main__":`` cannot reach the workers).
"""

from __future__ import annotations

from typing import Any

from neuronperf import api


def benchmark(model_class: Any, inputs: Any, *args: Any, **kwargs: Any) -> list:
    """Benchmark ``model_class()`` on ``inputs``; return one report per configuration.

    Accepts the keyword arguments of ``neuronperf.torch.benchmark`` (batch_sizes, duration,
    n_models, workers_per_model, the callbacks, return_timers, cost_per_hour, model_name...).
    """
    from neuronperf.benchmark import factory_loader

    if args:
        kwargs = {**dict(zip(("batch_sizes", "duration"), args)), **kwargs}
    kwargs.pop("device_type", None)
    name = kwargs.pop("model_name", None) or getattr(model_class, "__name__", "model")
    return api.benchmark_loader(
        factory_loader(model_class), name, inputs, device_type="cpu", model_name=name, **kwargs
    )
