"""The worker task's earlier import path (documented before the stages became folders): the
task and its model loaders now live in ``neuronperf.measure.task``. Kept so that scripts written
against it keep working."""

from __future__ import annotations

from neuronperf.measure.task import (
    BackendLoader,
    BenchmarkTask,
    FactoryLoader,
    LoadFnLoader,
    ModelLoader,
    call_args,
    check_task,
    factory_loader,
)

__all__ = [
    "BackendLoader", "BenchmarkTask", "FactoryLoader", "LoadFnLoader", "ModelLoader", "call_args",
    "check_task", "factory_loader",
]
