"""torchvision classification architectures (``torchvision: <name>``): random weights unless
``pretrained: true`` (the architecture's DEFAULT weights), the image size from those weights'
documented transforms (299 for inception_v3, 224 for most), a close-names hint for a typo.

torchvision (and torch) are imported inside functions: this runs in worker processes and
compile jobs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Optional

from neuronperf.errors import ModelLoadError
from neuronperf.sources.timm import closest

TORCHVISION_INSTALL = "pip install torchvision (the build that matches your torch)"
DEFAULT_IMAGE_SIZE = 224


def import_torchvision(name: str = "") -> Any:
    try:
        import torchvision
    except ImportError as e:
        raise ModelLoadError(f"torchvision {name!r}: needs torchvision ({e}); install with: {TORCHVISION_INSTALL}") from e
    except RuntimeError as e:  # a torchvision built for another torch: "operator torchvision::nms does not exist"
        raise ModelLoadError(f"torchvision {name!r}: torchvision cannot be imported beside this torch ({_one_line(e)}); "
                             f"install with: {TORCHVISION_INSTALL}") from e
    return torchvision


def classification_models() -> list[str]:
    """The names of torchvision's image classification models (``torchvision.models``'s own)."""
    torchvision = import_torchvision()
    return list(torchvision.models.list_models(module=torchvision.models))


def check_name(name: str) -> None:
    """A ``ModelLoadError`` naming the closest classification models when ``name`` is none."""
    torchvision = import_torchvision(name)
    names = classification_models()
    if name in names:
        return
    if name in torchvision.models.list_models():
        raise ModelLoadError(f"torchvision {name!r}: not an image classification model; torchvision: serves those "
                             f"(detection, segmentation and video models take other inputs: use a factory)")
    raise ModelLoadError(f"torchvision {name!r}: no such classification model in torchvision {torchvision.__version__}{closest(name, names)}")


def describe(name: str, kwargs: Optional[Mapping[str, Any]] = None) -> dict:
    """What one call takes: the forward's first parameter (``x``) and (3, size, size), the size
    being the crop of the DEFAULT weights' transforms (read from code, nothing downloaded), or
    ``image_size`` in ``kwargs``."""
    check_name(name)
    torchvision = import_torchvision(name)
    kwargs = dict(kwargs or {})
    size = kwargs.get("image_size")
    if not isinstance(size, int):
        size = DEFAULT_IMAGE_SIZE
        try:
            weights = torchvision.models.get_model_weights(name).DEFAULT
            crop = weights.transforms().crop_size
            size = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
        except (ValueError, AttributeError, TypeError):  # no weights enum: the common size
            pass
    return {"name": _first_parameter(name, kwargs), "shape": [3, size, size], "dtype": "float32", "low": None, "high": None}


def _first_parameter(name: str, kwargs: Mapping[str, Any]) -> str:
    import torch

    torchvision = import_torchvision(name)
    try:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None, **kwargs)
    except Exception as e:  # a kwargs problem: said the same way as by load
        raise ModelLoadError(f"torchvision {name!r}: get_model failed: {type(e).__name__}: {_one_line(e)}") from None
    parameters = list(inspect.signature(model.forward).parameters)
    return parameters[0] if parameters else "x"


def load(name: str, pretrained: bool = False, kwargs: Optional[Mapping[str, Any]] = None) -> Any:
    """``torchvision.models.get_model(name, weights=None or "DEFAULT", **kwargs)`` in eval mode."""
    check_name(name)
    torchvision = import_torchvision(name)
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **dict(kwargs or {}))
    except Exception as e:  # one line for this model, whatever torchvision raised
        text = _one_line(e)
        if pretrained and ("urlopen" in text.lower() or "connect" in text.lower() or "resolution" in text.lower()):
            raise ModelLoadError(
                f"torchvision {name!r}: pretrained weights cannot be downloaded (no network) and are not in torch's "
                f"cache (TORCH_HOME); download them where the network is reachable, or leave pretrained out for random weights"
            ) from None
        raise ModelLoadError(f"torchvision {name!r}: get_model failed: {type(e).__name__}: {text}") from None
    return model.eval()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
