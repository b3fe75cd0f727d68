"""Built-in model sources beside ``factory:``: one value type (``ModelSource``) and the three
things every stage asks of a source: what one call takes (``describe``), whether the model can
be built (``check``, in a worker) and the model itself (``build``, in compile jobs and workers).

``describe`` is pure where the answer is in files (a local Hugging Face folder, a hub checkpoint
in the local cache, given inputs): the driver and ``neuronperf plan`` call it in their own
process. Where it needs a library (timm, torchvision, transformers fetching a config, onnx
reading a graph), ``needs_worker`` says so and the caller runs ``describe_all`` in a worker
process, as factories are checked, so the driver never imports a framework.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from neuronperf.entries import SOURCE_KINDS, ModelSource, freeze
from neuronperf.errors import ModelLoadError
from neuronperf.sources import files, hf

#: The library whose version shapes each source's model (for the environment fingerprint).
LIBRARIES = {"hf": ("transformers",), "timm": ("timm",), "torchvision": ("torchvision",), "file": ()}
#: The parameter that sizes a vision model's generated image (``seq_len``/``prompt_len`` size
#: text: ``length_reference``).
IMAGE_PARAM = "image_size"


def make_source(kind: str, value: str, *, hf_task: Optional[str] = None, kwargs: Optional[Mapping[str, Any]] = None,
                pretrained: bool = False, base_dir: str = ".") -> ModelSource:
    """A ``ModelSource`` from plain values."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown model source {kind!r}")
    return ModelSource(kind, value, hf_task, freeze(dict(kwargs or {})), bool(pretrained), base_dir=base_dir)


@dataclass(frozen=True)
class SourceDescription:
    """What ``describe`` finds: the named tensors of one call (input dicts, shapes without the
    batch dimension, ``$param`` references kept), and what makes the model's results what they
    are (``identity``: a content digest, a hub id and revision, an architecture and its weights)."""

    inputs: tuple[Mapping[str, Any], ...]
    identity: Mapping[str, Any]
    #: More that the planner checks: ``max_length``, the longest sequence a text model takes.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"inputs": [dict(t) for t in self.inputs], "identity": dict(self.identity), **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceDescription:
        extra = {k: v for k, v in data.items() if k not in ("inputs", "identity")}
        return cls(tuple(dict(t) for t in data["inputs"]), dict(data["identity"]), extra)


def needs_worker(source: ModelSource, inputs_given: bool = False) -> bool:
    """Whether ``describe`` must import a library (so the driver runs it in a worker)."""
    if inputs_given:
        return False
    if source.kind in ("timm", "torchvision"):
        return True
    if source.kind == "hf":
        location = hf.locate(source.value, source.base_dir, source.kwargs_dict())
        return not location.is_local and hf.cached_snapshot(location.hub_id or "", location.revision) is None
    if source.kind == "file":
        try:
            return files.artifact_kind(files.resolve_path(source.value, source.base_dir), source.label) in ("onnx",)
        except ModelLoadError:
            return False  # describe says what is wrong, in this process
    return False


def length_reference(declared: Sequence[str], task: str) -> Any:
    """The sequence length of generated text inputs: ``$prompt_len``/``$seq_len`` when the model
    declares that parameter, else the default length."""
    order = ("prompt_len", "seq_len") if task == "generate" else ("seq_len", "prompt_len")
    for name in order:
        if name in declared:
            return f"${name}"
    return hf.DEFAULT_PROMPT_LEN if task == "generate" else hf.DEFAULT_SEQ_LEN


def describe(source: ModelSource, declared: Sequence[str] = (), task: str = "forward",
             params: Optional[Mapping[str, Any]] = None, inputs_given: bool = False) -> SourceDescription:
    """The inputs and identity of ``source``; ``declared`` are the model's parameter names
    (``seq_len``, ``prompt_len`` and ``image_size`` size what is generated), ``params``
    one combination of their values where a file's own shapes need them (ONNX). With
    ``inputs_given`` (the spec gives them) only the identity is found, which never needs a
    library. Raises ``ModelLoadError`` of one line."""
    kwargs = source.kwargs_dict()
    if inputs_given:
        return SourceDescription((), _identity(source, kwargs))
    extra: dict[str, Any] = {}
    if source.kind == "hf":
        location = hf.locate(source.value, source.base_dir, kwargs)
        try:
            config = hf.read_config(location)
        except hf.ConfigNotCached:
            config = hf.load_config(location, kwargs).to_dict()
        length = length_reference(declared, task)
        inputs = hf.call_inputs(config, source.hf_task or "", length, source.label, generate=task == "generate")
        if hf.context_length(config) is not None and hf.HF_TASKS[source.hf_task or ""].modality == "text":
            extra["max_length"] = hf.context_length(config)
        if IMAGE_PARAM in declared:
            for tensor in inputs:
                if tensor["name"] == "pixel_values":
                    tensor["shape"] = [tensor["shape"][0], f"${IMAGE_PARAM}", f"${IMAGE_PARAM}"]
    elif source.kind in ("timm", "torchvision"):
        tensor = _vision_module(source.kind).describe(source.value, kwargs)
        if IMAGE_PARAM in declared:
            tensor["shape"] = [tensor["shape"][0], f"${IMAGE_PARAM}", f"${IMAGE_PARAM}"]
        inputs = [tensor]
    else:
        path = files.resolve_path(source.value, source.base_dir)
        inputs = files.onnx_inputs(path, params) if files.artifact_kind(path, source.label) == "onnx" else []
    return SourceDescription(tuple(inputs), _identity(source, kwargs), extra)


def _identity(source: ModelSource, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What makes the model's results what they are (see ``ModelSource.identity``)."""
    identity: dict[str, Any]
    if source.kind == "hf":
        identity = {**hf.identity(hf.locate(source.value, source.base_dir, kwargs), kwargs), "hf_task": source.hf_task}
        if kwargs:
            identity["hf_kwargs"] = dict(kwargs)
    elif source.kind in ("timm", "torchvision"):
        identity = {source.kind: source.value, "pretrained": source.pretrained}
        if kwargs:
            identity["kwargs"] = dict(kwargs)
    else:
        identity = files.identity(files.resolve_path(source.value, source.base_dir))
    return identity


def describe_all(requests: Sequence[tuple[str, ModelSource, Sequence[str], str, bool]]) -> dict[str, dict]:
    """``describe`` for several models, by name, each request ``(name, source, declared,
    task, inputs_given)``: ``{"ok": description JSON}`` or ``{"error": one line}`` each (what
    a worker process returns to the driver)."""
    answers: dict[str, dict] = {}
    for name, source, declared, task, inputs_given in requests:
        try:
            answers[name] = {"ok": describe(source, declared, task, inputs_given=inputs_given).to_json()}
        except ModelLoadError as e:
            answers[name] = {"error": str(e)}
    return answers


def check(source: ModelSource, inputs: Sequence[Mapping[str, Any]], task: str = "forward") -> None:
    """What only the model's library can say, without loading weights: an ``hf_task`` that does
    not serve the architecture, a forward that takes not the generated inputs, an unknown timm
    or torchvision name (with the closest names)."""
    kwargs = source.kwargs_dict()
    if source.kind == "hf":
        location = hf.locate(source.value, source.base_dir, kwargs)
        try:
            config = hf.read_config(location)
        except hf.ConfigNotCached:
            config = hf.load_config(location, kwargs).to_dict()
        hf.check_task(location, source.hf_task or "", config, [str(t["name"]) for t in inputs if t.get("name")])
    elif source.kind in ("timm", "torchvision"):
        _vision_module(source.kind).check_name(source.value)
    else:
        files.artifact_kind(files.resolve_path(source.value, source.base_dir), source.label)


def check_all(requests: Sequence[tuple[str, ModelSource, Sequence[Mapping[str, Any]], str]]) -> dict[str, str]:
    """``check`` for several models: the one-line error of each that fails, by name."""
    failures = {}
    for name, source, inputs, task in requests:
        try:
            check(source, inputs, task)
        except ModelLoadError as e:
            failures[name] = str(e)
    return failures


def build(source: ModelSource, task: str = "forward", dtype: Optional[str] = None) -> Any:
    """The model, in eval mode: loaded by ``hf_task``'s Auto class (see ``hf.load``), or built
    by timm/torchvision (random weights unless ``pretrained``), cast to
    ``dtype`` when one is given. A ``file:`` source has no model to build: its backend loads the
    artifact."""
    from neuronperf.sources.dtypes import cast_model

    kwargs = source.kwargs_dict()
    if source.kind == "hf":
        location = hf.locate(source.value, source.base_dir, kwargs)
        model = hf.load(location, source.hf_task or "", kwargs, generate=task == "generate")
    elif source.kind in ("timm", "torchvision"):
        model = _vision_module(source.kind).load(source.value, source.pretrained, kwargs)
    else:
        raise ModelLoadError(f"{source.label}: a file: artifact is loaded as it is, never built")
    return cast_model(model, dtype)


def _vision_module(kind: str) -> Any:
    if kind == "timm":
        from neuronperf.sources import timm

        return timm
    from neuronperf.sources import torchvision

    return torchvision
