"""NeuronPerf's ``compile``/``benchmark``/``evaluate`` for one framework, with the original
signatures: ``neuronperf.torch`` and ``neuronperf.tensorflow`` are instances of this class.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from neuronperf.api.benchmarking import benchmark_artifacts
from neuronperf.api.compiling import compile_model
from neuronperf.errors import (
    UsageError,
)


class FrameworkAPI:
    """NeuronPerf's ``compile``/``benchmark`` pair for one framework (``neuronperf.torch``,
    ``neuronperf.tensorflow``): the same signatures, bound to that framework's backends."""

    def __init__(self, framework: str):
        self.framework = framework

    def compile(
        self,
        model: Any,
        inputs: Any,
        batch_sizes: Any = None,
        pipeline_sizes: Any = None,
        models_dir: str = "models",
        model_name: Optional[str] = None,
        filename: Optional[str] = None,
        compiler_args: Any = None,
        verbosity: int = 1,
        device_type: str = "neuron",
        compiler: Optional[str] = None,
        **kwargs: Any,
    ) -> str:
        """Compile ``model`` for each (batch size x pipeline size); return the model index path.

        ``inputs[i]`` is the example input for ``batch_sizes[i]`` (recorded as ``input_idx``).
        """
        from neuronperf.api.timer import set_verbosity

        if kwargs:
            raise UsageError(f"compile() got unexpected arguments: {', '.join(sorted(kwargs))}")
        set_verbosity(verbosity)
        return compile_model(
            self.framework, model, inputs, batch_sizes=batch_sizes, pipeline_sizes=pipeline_sizes,
            models_dir=models_dir, model_name=model_name, filename=filename,
            compiler_args=compiler_args, device_type=device_type, compiler=compiler,
        )

    def benchmark(
        self,
        model_filename_or_index: Any,
        inputs: Any,
        batch_sizes: Any = None,
        duration: Optional[float] = None,
        n_models: Any = None,
        workers_per_model: Any = None,
        pipeline_sizes: Any = None,
        env_setup_fn: Optional[Callable[..., Any]] = None,
        setup_fn: Optional[Callable[..., Any]] = None,
        preprocess_fn: Optional[Callable[..., Any]] = None,
        postprocess_fn: Optional[Callable[..., Any]] = None,
        multiprocess: bool = True,
        multiinterpreter: bool = False,
        return_timers: bool = False,
        stats_interval: float = 0.5,
        device_type: str = "neuron",
        cost_per_hour: Optional[float] = None,
        model_name: Optional[str] = None,
        verbosity: int = 1,
        **kwargs: Any,
    ) -> list:
        """Benchmark a model file or every artifact of a model index; return one report per config.

        Extra keywords: ``compiler``, ``instance_type``, ``max_infers``, ``min_calls``, ``warmup_calls``,
        ``warmup_s``, ``timeout``, ``peak_window_s``, ``repeat``; ``eval_metrics`` (then
        ``inputs`` is a dataset of ``(*inputs, target)`` items, each report gains one column per
        metric, and ``duration=0`` means one untimed pass) and ``eval_target_col``.
        """
        eval_metrics = kwargs.pop("eval_metrics", None)
        eval_target_col = kwargs.pop("eval_target_col", -1)
        if eval_metrics is not None:
            from neuronperf.measure.evaluate import EvalRequest

            kwargs["evaluation"] = EvalRequest.make(inputs, eval_metrics, eval_target_col)
            inputs = kwargs["evaluation"].example()
        return benchmark_artifacts(
            self.framework, model_filename_or_index, inputs, batch_sizes=batch_sizes,
            pipeline_sizes=pipeline_sizes, device_type=device_type, model_name=model_name,
            duration=duration, n_models=n_models, workers_per_model=workers_per_model,
            env_setup_fn=env_setup_fn, setup_fn=setup_fn, preprocess_fn=preprocess_fn,
            postprocess_fn=postprocess_fn, return_timers=return_timers, cost_per_hour=cost_per_hour,
            multiprocess=multiprocess, multiinterpreter=multiinterpreter,
            stats_interval=stats_interval, verbosity=verbosity, **kwargs,
        )

    def evaluate(
        self,
        model_index_or_path: Any,
        dataset: Any,
        metrics: Any = "accuracy",
        eval_target_col: int = -1,
        **kwargs: Any,
    ) -> list:
        """One untimed pass of each artifact over ``dataset`` (an iterable of ``(*inputs, target)``),
        in a worker process; return one report per artifact with a column per metric."""
        kwargs.setdefault("n_models", 1)
        kwargs.setdefault("workers_per_model", 1)
        return self.benchmark(model_index_or_path, dataset, duration=0, eval_metrics=metrics,
                              eval_target_col=eval_target_col, **kwargs)
