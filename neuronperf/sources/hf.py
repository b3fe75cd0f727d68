"""Hugging Face checkpoints (``hf:`` with ``hf_task:`` and ``hf_kwargs:``): where a checkpoint
is, what its config says, which inputs one call takes, and loading it through transformers'
Auto classes.

Two halves. The pure half (``locate``, ``read_config``, ``call_inputs``, ``identity``) reads
``config.json`` as JSON and hashes files: the plan stage's callers use it, and it imports no
framework. The loading half (``check_task``, ``load``) imports transformers inside functions and
runs in compile jobs and worker processes. Every failure is a ``ModelLoadError`` of one line that
names the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

from neuronperf.errors import ModelLoadError
from neuronperf.sources.digest import content_digest

TRANSFORMERS_INSTALL = "pip install transformers"


@dataclass(frozen=True)
class HfTask:
    """One ``hf_task``: the Auto class that loads it, and what one call of it takes."""

    auto_class: str
    #: transformers' table of model types this Auto class serves
    #: (``transformers.models.auto.modeling_auto.<name>``).
    mapping: str
    #: "text" (token ids) or "vision" (pixel values).
    modality: str


#: The tasks an ``hf:`` model may name. ``causal-lm`` serves ``task: generate`` too.
HF_TASKS: dict[str, HfTask] = {
    "feature-extraction": HfTask("AutoModel", "MODEL_MAPPING_NAMES", "text"),
    "text-classification": HfTask("AutoModelForSequenceClassification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "text"),
    "token-classification": HfTask("AutoModelForTokenClassification", "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", "text"),
    "question-answering": HfTask("AutoModelForQuestionAnswering", "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES", "text"),
    "fill-mask": HfTask("AutoModelForMaskedLM", "MODEL_FOR_MASKED_LM_MAPPING_NAMES", "text"),
    "causal-lm": HfTask("AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "text"),
    "image-classification": HfTask("AutoModelForImageClassification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "vision"),
}

#: The sequence length (forward tasks) and prompt length (``task: generate``) when the model
#: declares no ``seq_len``/``prompt_len`` parameter.
DEFAULT_SEQ_LEN = 128
DEFAULT_PROMPT_LEN = 32
#: The image side when a vision config names none (most ImageNet classifiers).
DEFAULT_IMAGE_SIZE = 224

#: Names under which configs give the longest sequence their position embeddings allow.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")
#: A hub id: "name" or "owner/name", of letters, digits, "-", "_" and ".".
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


# ---- where the checkpoint is (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class HfLocation:
    """A checkpoint: a local folder (``path``) or a hub id (``hub_id`` at ``revision``)."""

    spec_value: str  # what the spec wrote, for messages
    path: Optional[str] = None
    hub_id: Optional[str] = None
    revision: str = "main"

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def label(self) -> str:
        return f"hf {self.spec_value!r}"


def locate(value: str, base_dir: str = ".", hf_kwargs: Optional[Mapping[str, Any]] = None) -> HfLocation:
    """Where ``hf: value`` points: a folder (relative to the spec's folder) when one exists there
    or the value is written as a path (``./x``, ``/x``, ``~/x``), else a hub id."""
    revision = str((hf_kwargs or {}).get("revision") or "main")
    expanded = os.path.expanduser(value)
    path = expanded if os.path.isabs(expanded) else os.path.join(base_dir, expanded)
    # A hub id has at most one "/" and never starts with ".", "/" or "~"; anything else is a path.
    written_as_path = value.startswith((".", "/", "~")) or not _HUB_ID.match(value)
    if os.path.isdir(path) or written_as_path:
        return HfLocation(value, path=os.path.abspath(path), revision=revision)
    return HfLocation(value, hub_id=value, revision=revision)


def hub_cache_dir() -> str:
    """The hub cache huggingface_hub reads (``HF_HUB_CACHE``, else ``HF_HOME/hub``), found
    without importing it."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return os.path.join(home, "hub")


def cached_snapshot(hub_id: str, revision: str = "main") -> Optional[str]:
    """The folder of ``hub_id`` at ``revision`` in the local hub cache, or None when it is not
    there (huggingface_hub's documented layout: ``models--owner--name/refs/<revision>`` holds a
    commit hash, ``snapshots/<commit>/`` the files)."""
    repo = os.path.join(hub_cache_dir(), "models--" + hub_id.replace("/", "--"))
    commit = revision
    if not _COMMIT.match(revision):
        try:
            with open(os.path.join(repo, "refs", revision), encoding="utf-8") as f:
                commit = f.read().strip()
        except OSError:
            return None
    folder = os.path.join(repo, "snapshots", commit)
    return folder if os.path.isdir(folder) else None


def read_config(location: HfLocation) -> dict:
    """The checkpoint's ``config.json`` as a dict (a folder's own, or the hub cache's copy).

    Raises ``ModelLoadError`` for a folder that is not a checkpoint. For a hub id that is not in
    the cache it raises ``ConfigNotCached``: transformers must fetch the config (in a worker)."""
    if location.is_local:
        assert location.path is not None
        if not os.path.isdir(location.path):
            raise ModelLoadError(f"{location.label()}: no such folder: {location.path}")
        config_path = os.path.join(location.path, "config.json")
        if not os.path.isfile(config_path):
            raise ModelLoadError(
                f"{location.label()}: {location.path} is not a Hugging Face checkpoint (it has no config.json; "
                f"write one with model.save_pretrained(folder))"
            )
    else:
        assert location.hub_id is not None
        snapshot = cached_snapshot(location.hub_id, location.revision)
        config_path = os.path.join(snapshot, "config.json") if snapshot else ""
        if not snapshot or not os.path.isfile(config_path):
            raise ConfigNotCached(location)
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{location.label()}: cannot read {config_path}: {e}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{location.label()}: {config_path} is not a JSON object")
    return config


class ConfigNotCached(ModelLoadError):
    """A hub checkpoint whose config is not in the local cache: only transformers can fetch it."""

    def __init__(self, location: HfLocation):
        self.location = location
        super().__init__(f"{location.label()}: config.json is not in the local hub cache ({hub_cache_dir()})")


# ---- what one call takes (pure) -----------------------------------------------------------------


def call_inputs(config: Mapping[str, Any], task: str, length: Union[int, str], label: str = "hf",
                generate: bool = False) -> list[dict]:
    """The named tensors of one call, without the batch dimension, as input dicts
    (``name``, ``shape``, ``dtype``, ``low``, ``high``); ``length`` is the sequence length, an
    integer (capped at the config's context length) or a ``"$param"`` reference.

    Text: ``input_ids`` in ``[0, vocab_size)``, an all-ones ``attention_mask`` and, where the
    config has a token-type vocabulary, all-zero ``token_type_ids`` (one segment, as a tokenizer
    gives for one sentence). ``generate``: the prompt's ``input_ids`` alone (the generation
    contract). Vision: ``pixel_values`` of the config's channels and image size, float32."""
    spec = HF_TASKS.get(task)
    if spec is None:
        raise ModelLoadError(f"{label}: unknown hf_task {task!r}; choose one of: {', '.join(HF_TASKS)}")
    if spec.modality == "vision":
        channels = _positive(config.get("num_channels", 3), 3)
        height, width = image_size(config)
        return [{"name": "pixel_values", "shape": [channels, height, width], "dtype": "float32", "low": None, "high": None}]
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        model_type = config.get("model_type", "?")
        raise ModelLoadError(
            f"{label}: hf_task {task} takes token ids, and this checkpoint (model_type {model_type!r}) has no vocab_size "
            f"in its config.json; choose a task of its architecture, or give the model's inputs: yourself"
        )
    context = context_length(config)
    if isinstance(length, int) and context is not None:
        length = min(length, context)  # the default length, on a model with a shorter context
    ids = {"name": "input_ids", "shape": [length], "dtype": "int64", "low": 0, "high": vocab}
    if generate:
        return [ids]
    tensors = [ids, {"name": "attention_mask", "shape": [length], "dtype": "int64", "low": 1, "high": 2}]
    type_vocab = config.get("type_vocab_size")
    if isinstance(type_vocab, int) and not isinstance(type_vocab, bool) and type_vocab > 0:
        tensors.append({"name": "token_type_ids", "shape": [length], "dtype": "int64", "low": 0, "high": 1})
    return tensors


def context_length(config: Mapping[str, Any]) -> Optional[int]:
    """The longest sequence the config's position embeddings allow, or None if it names none."""
    for key in _CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def image_size(config: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of the images a vision config expects (224 x 224 when it names none)."""
    size = config.get("image_size", DEFAULT_IMAGE_SIZE)
    if isinstance(size, dict):
        if "shortest_edge" in size:
            side = _positive(size["shortest_edge"], DEFAULT_IMAGE_SIZE)
            return side, side
        return _positive(size.get("height"), DEFAULT_IMAGE_SIZE), _positive(size.get("width"), DEFAULT_IMAGE_SIZE)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return _positive(size[0], DEFAULT_IMAGE_SIZE), _positive(size[1], DEFAULT_IMAGE_SIZE)
    side = _positive(size, DEFAULT_IMAGE_SIZE)
    return side, side


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


# ---- identity (pure) ----------------------------------------------------------------------------


def identity(location: HfLocation, hf_kwargs: Optional[Mapping[str, Any]] = None) -> dict:
    """What makes this checkpoint's results what they are, for entry keys: a local folder's
    content digest (not its path: moving a checkout keeps its results), or a hub id and the
    revision asked for (pin ``revision`` in ``hf_kwargs`` to tie results to one commit)."""
    if location.is_local:
        assert location.path is not None
        return {"hf_digest": content_digest(location.path)}
    return {"hf": location.hub_id, "revision": location.revision}


# ---- loading (transformers, in compile jobs and workers) ----------------------------------------


def import_transformers(label: str) -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ModelLoadError(f"{label}: needs transformers ({e}); install with: {TRANSFORMERS_INSTALL}") from e
    return transformers


def hub_offline_hint(location: HfLocation) -> str:
    """The one line said when a hub checkpoint cannot be had: it names the id and HF_HUB_OFFLINE."""
    assert location.hub_id is not None
    cache = hub_cache_dir()
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return (
            f"{location.label()}: not in the local hub cache ({cache}) at revision {location.revision!r}, and "
            f"HF_HUB_OFFLINE is set, so nothing is downloaded; download {location.hub_id} where the hub is reachable, "
            f"or save the model to a folder and write hf: ./folder"
        )
    return (
        f"{location.label()}: the Hugging Face Hub ({_endpoint()}) cannot be reached and {location.hub_id} at revision "
        f"{location.revision!r} is not in the local hub cache ({cache}); download it where the hub is reachable and run "
        f"with HF_HUB_OFFLINE=1, or save the model to a folder and write hf: ./folder"
    )


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


_hub_reachable: dict[str, bool] = {}


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within ``timeout`` (asked once per
    process). huggingface_hub retries an unreachable hub for half a minute before it gives up;
    this answers in milliseconds where there is no network, so the error comes at once."""
    endpoint = _endpoint()
    if endpoint not in _hub_reachable:
        import socket
        from urllib.parse import urlparse

        parsed = urlparse(endpoint)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
                _hub_reachable[endpoint] = True
        except OSError:
            _hub_reachable[endpoint] = False
    return _hub_reachable[endpoint]


@contextlib.contextmanager
def offline_when_unreachable() -> Iterator[None]:
    """Within: huggingface_hub reads only its cache when HF_HUB_OFFLINE is set now or the hub
    cannot be reached (set through its ``constants`` module, which it reads at each call but
    fills from the environment once, at import), so a library that downloads through it (timm's
    pretrained weights) fails at once rather than after half a minute of retries."""
    if not _offline() and hub_reachable():
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    was = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def source_kwargs(location: HfLocation, hf_kwargs: Optional[Mapping[str, Any]]) -> tuple[str, dict]:
    """What to pass to ``from_pretrained``: the folder or hub id, and ``hf_kwargs`` (plus
    ``local_files_only`` for a cached hub id when the hub is offline or cannot be reached).
    Raises the one-line offline error for a hub id that is neither reachable nor cached."""
    kwargs = dict(hf_kwargs or {})
    if location.is_local:
        assert location.path is not None
        return location.path, kwargs
    assert location.hub_id is not None
    # Offline (by HF_HUB_OFFLINE, read now: huggingface_hub reads it once, at its import) or
    # unreachable: the cache or nothing, said at once.
    if _offline() or not hub_reachable():
        if cached_snapshot(location.hub_id, location.revision) is None:
            raise ModelLoadError(hub_offline_hint(location))
        kwargs.setdefault("local_files_only", True)
    return location.hub_id, kwargs


def load_config(location: HfLocation, hf_kwargs: Optional[Mapping[str, Any]] = None) -> Any:
    """transformers' ``AutoConfig`` of the checkpoint (fetched from the hub when it must be)."""
    source, kwargs = source_kwargs(location, hf_kwargs)  # an unreachable hub is said first
    transformers = import_transformers(location.label())
    config_kwargs = {k: v for k, v in kwargs.items() if k in ("revision", "trust_remote_code", "local_files_only", "token", "cache_dir")}
    try:
        return transformers.AutoConfig.from_pretrained(source, **config_kwargs)
    except OSError as e:
        raise _load_error(location, e) from None
    except (ValueError, KeyError) as e:
        raise ModelLoadError(f"{location.label()}: transformers cannot read its config: {_one_line(e)}") from None


def supported_tasks(model_type: str) -> list[str]:
    """The ``hf_task`` values whose Auto class serves ``model_type`` (a config's ``model_type``)."""
    from transformers.models.auto import modeling_auto

    return [name for name, task in HF_TASKS.items() if model_type in getattr(modeling_auto, task.mapping, {})]


def task_class(location: HfLocation, task: str, model_type: str) -> Any:
    """The transformers class that ``task`` loads for ``model_type``; a one-line error naming
    the tasks this architecture has when it has not this one."""
    transformers = import_transformers(location.label())
    from transformers.models.auto import modeling_auto

    spec = HF_TASKS.get(task)
    if spec is None:
        raise ModelLoadError(f"{location.label()}: unknown hf_task {task!r}; choose one of: {', '.join(HF_TASKS)}")
    class_name = getattr(modeling_auto, spec.mapping, {}).get(model_type)
    if class_name is None:
        others = supported_tasks(model_type)
        has = f"; model_type {model_type!r} has: {', '.join(others)}" if others else f"; transformers has no task for model_type {model_type!r}"
        raise ModelLoadError(f"{location.label()}: hf_task {task} ({spec.auto_class}) does not serve this architecture{has}")
    if isinstance(class_name, (list, tuple)):
        class_name = class_name[0]
    return getattr(transformers, class_name)


def check_task(location: HfLocation, task: str, config: Mapping[str, Any], input_names: list[str]) -> None:
    """Without loading weights: that ``task`` serves this architecture and that its forward
    takes every input ``input_names`` names (a config with a token-type vocabulary whose model
    takes no token types is said, not traced into a confusing failure)."""
    import inspect

    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise ModelLoadError(f"{location.label()}: config.json names no model_type, so transformers cannot choose a class")
    cls = task_class(location, task, model_type)
    try:
        parameters = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return
    missing = [n for n in input_names if n not in parameters]
    if missing:
        raise ModelLoadError(f"{location.label()}: {cls.__name__}.forward takes no {', '.join(missing)}; give the model's inputs: yourself")


def load(location: HfLocation, task: str, hf_kwargs: Optional[Mapping[str, Any]] = None,
         generate: bool = False) -> Any:
    """The checkpoint loaded by ``task``'s Auto class with ``hf_kwargs``, in eval mode.

    Outputs stay transformers' ``ModelOutput`` (TorchScript with ``strict=False`` and
    torch.export keep it); compilers that need plain tuples call the model with
    ``TUPLE_CALL`` (``return_dict=False`` per call: in transformers 5, ``config.return_dict =
    False`` breaks GPT-2 and ViT, whose heads read the inner model's ``ModelOutput``). A forward
    pass of a causal LM builds no KV cache (``use_cache`` off): one call is one forward; a
    generating model keeps its cache, ``generate`` needs it."""
    transformers = import_transformers(location.label())
    spec = HF_TASKS.get(task)
    if spec is None:
        raise ModelLoadError(f"{location.label()}: unknown hf_task {task!r}; choose one of: {', '.join(HF_TASKS)}")
    if location.is_local:
        read_config(location)  # a folder that is not a checkpoint is said as such
    source, kwargs = source_kwargs(location, hf_kwargs)
    auto = getattr(transformers, spec.auto_class)
    try:
        model = auto.from_pretrained(source, **kwargs)
    except OSError as e:
        raise _load_error(location, e) from None
    except ValueError as e:
        text = _one_line(e)
        if "Unrecognized configuration class" in text:
            model_type = _model_type(location, hf_kwargs)
            others = supported_tasks(model_type) if model_type else []
            has = f"; model_type {model_type!r} has: {', '.join(others)}" if others else ""
            raise ModelLoadError(f"{location.label()}: hf_task {task} ({spec.auto_class}) does not serve this architecture{has}") from None
        raise ModelLoadError(f"{location.label()}: {spec.auto_class}.from_pretrained failed: {text}") from None
    except TypeError as e:  # an hf_kwargs key the model's constructor does not take
        raise ModelLoadError(f"{location.label()}: {spec.auto_class}.from_pretrained failed (check hf_kwargs): {_one_line(e)}") from None
    model.eval()
    config = getattr(model, "config", None)
    if not generate and config is not None and getattr(config, "use_cache", None):
        config.use_cache = False
    return model


#: Keyword arguments that make a transformers model return a plain tuple, for the compilers that
#: need one (the ONNX exporter, the Neuron tracers).
TUPLE_CALL = {"return_dict": False}


def _model_type(location: HfLocation, hf_kwargs: Optional[Mapping[str, Any]]) -> Optional[str]:
    try:
        value = read_config(location).get("model_type")
    except ModelLoadError:
        try:
            value = getattr(load_config(location, hf_kwargs), "model_type", None)
        except ModelLoadError:
            return None
    return value if isinstance(value, str) else None


def _load_error(location: HfLocation, error: OSError) -> ModelLoadError:
    """One line for transformers' OSErrors: unreachable hub, unknown id, a folder without weights."""
    text = _one_line(error)
    if location.is_local:
        if "does not appear to have a file named" in text or "no file named" in text.lower():
            return ModelLoadError(
                f"{location.label()}: {location.path} has a config.json but no weights "
                f"(model.safetensors or pytorch_model.bin); save them with model.save_pretrained(folder)"
            )
        return ModelLoadError(f"{location.label()}: cannot load {location.path}: {text}")
    if _offline() or "couldn't connect" in text.lower() or "offline mode" in text.lower() or "cannot find the requested files" in text.lower():
        return ModelLoadError(hub_offline_hint(location))
    if "is not a local folder and is not a valid model identifier" in text or "404" in text:
        return ModelLoadError(f"{location.label()}: no such model on the Hugging Face Hub (nor a folder of that name beside the spec)")
    return ModelLoadError(f"{location.label()}: cannot load {location.hub_id}: {text}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
