"""timm architectures (``timm: <name>``): random weights unless ``pretrained: true``, the image
size from the architecture's own pretrained config, and a close-names hint for a typo.

timm (and torch) are imported inside functions: this runs in worker processes and compile jobs.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Mapping
from typing import Any, Optional

from neuronperf.errors import ModelLoadError

TIMM_INSTALL = "pip install timm"


def import_timm(name: str = "") -> Any:
    try:
        import timm
    except ImportError as e:
        raise ModelLoadError(f"timm {name!r}: needs timm ({e}); install with: {TIMM_INSTALL}") from e
    return timm


def check_name(name: str) -> None:
    """A ``ModelLoadError`` naming the closest architectures when timm has no ``name``."""
    timm = import_timm(name)
    if not timm.is_model(name):
        raise ModelLoadError(f"timm {name!r}: no such architecture in timm {timm.__version__}{closest(name, timm.list_models())}")


def closest(name: str, choices: list[str]) -> str:
    """"; closest: a, b, c" (or "" when nothing is close)."""
    found = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
    return f"; closest: {', '.join(found)}" if found else ""


def describe(name: str, kwargs: Optional[Mapping[str, Any]] = None) -> dict:
    """What one call takes, without building weights: the image tensor's name (the forward's
    first parameter) and shape (channels, height, width) from the pretrained config, with
    ``in_chans``/``img_size`` in ``kwargs`` taking precedence."""
    check_name(name)
    timm = import_timm(name)
    kwargs = dict(kwargs or {})
    config = timm.get_pretrained_cfg(name)
    channels, height, width = tuple(getattr(config, "input_size", None) or (3, 224, 224))
    channels = int(kwargs.get("in_chans", channels))
    size = kwargs.get("img_size")
    if isinstance(size, int):
        height = width = size
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        height, width = int(size[0]), int(size[1])
    return {"name": _first_parameter(name, kwargs), "shape": [channels, int(height), int(width)],
            "dtype": "float32", "low": None, "high": None}


def _first_parameter(name: str, kwargs: Mapping[str, Any]) -> str:
    """The name of the forward's first parameter (``x`` for timm's models), read from a model
    built on the meta device (no memory, no weights)."""
    import torch

    timm = import_timm(name)
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:  # a kwargs problem: said the same way as by load
        raise ModelLoadError(f"timm {name!r}: timm.create_model failed: {type(e).__name__}: {_one_line(e)}") from None
    parameters = list(inspect.signature(model.forward).parameters)
    return parameters[0] if parameters else "x"


def load(name: str, pretrained: bool = False, kwargs: Optional[Mapping[str, Any]] = None) -> Any:
    """``timm.create_model(name, pretrained=..., **kwargs)`` in eval mode. Random weights unless
    ``pretrained`` (which downloads them from the hub, or reads its cache)."""
    check_name(name)
    timm = import_timm(name)
    from neuronperf.sources.hf import offline_when_unreachable

    try:
        with offline_when_unreachable() if pretrained else contextlib.nullcontext():
            model = timm.create_model(name, pretrained=bool(pretrained), **dict(kwargs or {}))
    except Exception as e:  # timm raises many types; each is one line for this model
        text = _one_line(e)
        if pretrained and _looks_offline(e, text):
            raise ModelLoadError(
                f"timm {name!r}: pretrained weights cannot be downloaded (the Hugging Face Hub cannot be reached, or "
                f"HF_HUB_OFFLINE is set) and are not in the local cache; download them where the hub is reachable, "
                f"or leave pretrained out for random weights (latency does not depend on their values)"
            ) from None
        raise ModelLoadError(f"timm {name!r}: timm.create_model failed: {type(e).__name__}: {text}") from None
    return model.eval()


def _looks_offline(error: BaseException, text: str) -> bool:
    names = {type(e).__name__ for e in _chain(error)}
    return bool(names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError"}) \
        or "offline" in text.lower() or "connect" in text.lower()


def _chain(error: BaseException) -> list[BaseException]:
    seen = []
    current: Optional[BaseException] = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
