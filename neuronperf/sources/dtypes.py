"""Precision as a sweep axis: ``params: {dtype: [float32, bfloat16]}`` casts the model's floating
parameters and its floating inputs to that dtype (integer inputs, token ids and masks, stay as
they are). Pure, but for ``cast_model``, which imports torch inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

#: The parameter name that means "cast to this dtype", and the values it takes.
DTYPE_PARAM = "dtype"
DTYPES = ("float32", "bfloat16", "float16")
FLOATING = ("float16", "bfloat16", "float32", "float64")


def dtype_problem(value: Any) -> Optional[str]:
    """Why ``value`` cannot be a ``dtype`` parameter value (a message), or None."""
    if value in DTYPES:
        return None
    return f"{value!r} is not a dtype this axis casts to; choose from: {', '.join(DTYPES)}"


def cast_inputs(inputs: Sequence[dict], dtype: Optional[str]) -> list[dict]:
    """Input dicts with every floating input's dtype set to ``dtype`` (None: unchanged)."""
    if dtype is None:
        return [dict(t) for t in inputs]
    return [{**t, "dtype": dtype} if t.get("dtype", "float32") in FLOATING else dict(t) for t in inputs]


def cast_model(model: Any, dtype: Optional[str]) -> Any:
    """``model`` with its floating parameters and buffers in ``dtype`` (a torch module; None:
    unchanged). float32 is a no-op for a float32 model."""
    if dtype is None:
        return model
    import torch

    return model.to(getattr(torch, dtype))
