"""The target: framework, device_type, compiler and executor, and whether the target can
pipeline a model (``sweep.pipeline_sizes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from neuronperf.spec import catalog
from neuronperf.spec.context import CheckContext
from neuronperf.spec.instances import family_problem
from neuronperf.spec.values import EXECUTORS, PLANNED_EXECUTORS
from neuronperf.spec.wording import suggestion
from neuronperf.spec.yaml_source import (
    KeyPath,
)

# Names people write for these values; difflib alone would not find them.
FRAMEWORK_ALIASES = {"pytorch": "torch", "onnx": "onnxruntime", "ort": "onnxruntime", "tf": "tensorflow"}


# Backend registry names that people write as a framework: what they mean in spec terms.
BACKEND_NAMES = {
    "torch-neuron": ("torch", "neuron", "neuron"),
    "torch-neuronx": ("torch", "neuron", "neuronx"),
    "tensorflow-neuron": ("tensorflow", "neuron", "neuron"),
}


def plugin_frameworks() -> tuple[str, ...]:
    """Framework names that installed plug-ins register (not the built-in backend names)."""
    from neuronperf.spec.catalog import BUILTIN_BACKENDS, registered_backends

    return tuple(sorted(n for n in registered_backends() if n not in BUILTIN_BACKENDS))


@dataclass(frozen=True)
class Target:
    """framework / device_type / compiler as far as they are known to be valid (else None)."""

    framework: Optional[str]
    device_type: Optional[str]
    compiler: Optional[str]
    builtin: bool  # a framework of the catalog (not a plug-in)


def target_pass(ctx: CheckContext, data: dict) -> Target:
    """Check framework / device_type / compiler / executor; return the resolved values (None
    where unknown) so that later checks can use what is known."""
    framework = data.get("framework")
    device = data.get("device_type") if data.get("device_type") in catalog.DEVICE_TYPES else None
    compiler = data.get("compiler") if isinstance(data.get("compiler"), str) else None
    builtin = False
    if isinstance(framework, str) and framework:
        if framework in catalog.COMPILERS:
            builtin = True
        elif framework in BACKEND_NAMES:
            fw, dev, comp = BACKEND_NAMES[framework]
            ctx.problem(("framework",), f"'{framework}' is a backend, not a framework; write framework: {fw}, device_type: {dev}, compiler: {comp}")
            framework = None
        elif framework not in plugin_frameworks():
            known = sorted(catalog.COMPILERS)
            hint = suggestion(framework, known + list(plugin_frameworks()), FRAMEWORK_ALIASES)
            ctx.problem(
                ("framework",),
                f"unknown framework '{framework}'{hint} (built in: {', '.join(known)}; "
                "plug-ins register under the 'neuronperf.backends' entry-point group)",
            )
            framework = None
    else:
        framework = None
    if builtin and device is not None and device not in catalog.COMPILERS[str(framework)]:
        offered = ", ".join(catalog.COMPILERS[str(framework)])
        ctx.problem(("device_type",), f"framework '{framework}' does not run on '{device}' (choose: {offered})")
        device = None
    if builtin and device is not None:
        offered_compilers = catalog.COMPILERS[str(framework)][device]
        if compiler is None and "compiler" not in data:
            compiler = offered_compilers[0]
        elif compiler is not None and compiler not in offered_compilers:
            ctx.problem(
                ("compiler",),
                f"'{compiler}' is not a compiler of {framework} on {device} "
                f"(choose: {', '.join(offered_compilers)}){suggestion(compiler, list(offered_compilers))}",
            )
            compiler = None
    elif framework is not None and not builtin and "compiler" not in data:
        ctx.problem(("framework",), f"framework '{framework}' is a plug-in: name its compiler with a 'compiler:' key")
    if builtin and device == "neuron" and compiler is not None and "compiler" in data:
        # A compiler the named instance cannot run is one line here, not a failure per entry on
        # the machine. (A spec that names no compiler gets the installed SDK's path, checked
        # when the sweep starts.)
        problem = family_problem(str(framework), compiler, data.get("instance_type") if isinstance(data.get("instance_type"), str) else None)
        if problem:
            ctx.problem(("compiler",), problem)
    executor = data.get("executor", "local")
    if isinstance(executor, str) and executor not in EXECUTORS:
        if executor in PLANNED_EXECUTORS:
            ctx.problem(("executor",), f"executor '{executor}' is not available yet; use 'local' (the default)")
        else:
            ctx.problem(("executor",), f"unknown executor '{executor}' (choose: {', '.join(EXECUTORS)}){suggestion(executor, list(EXECUTORS + PLANNED_EXECUTORS))}")
    return Target(framework, device, compiler, builtin)


def pipeline_check(ctx: CheckContext, path: KeyPath, size: int, target: Target) -> None:
    fw, dev, comp = target.framework, target.device_type, target.compiler
    if not target.builtin or dev is None or comp is None:
        return  # unknown or plug-in target: the backend decides when the sweep starts
    if (fw, dev, comp) not in catalog.PIPELINE_CAPABLE:
        capable = ", ".join("/".join(t) for t in sorted(catalog.PIPELINE_CAPABLE))
        ctx.problem(path, f"pipeline_size {size} needs a pipelining compiler; {fw} on {dev} with {comp} runs whole models only (pipelining: {capable})")
