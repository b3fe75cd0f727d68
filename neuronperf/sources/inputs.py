"""Generate example inputs from ``TensorSpec`` values, deterministically.

Inputs are made as numpy arrays (the common currency of every backend); each backend converts
them to its own tensor type. The same seed gives the same data in every process, so a compiled
artifact and an eager model can be compared on identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuronperf.entries import TensorSpec

_INT_DEFAULT_HIGH = 100


def make_arrays(specs: Sequence[TensorSpec], batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """One array per spec, shaped ``(batch_size, *spec.shape)``."""
    rng = np.random.default_rng(seed)
    return [_make_array(spec, batch_size, rng) for spec in specs]


def _make_array(spec: TensorSpec, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    shape = (batch_size, *spec.shape)
    dtype = spec.dtype
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith(("int", "uint")):
        low = int(spec.low) if spec.low is not None else 0
        high = int(spec.high) if spec.high is not None else _INT_DEFAULT_HIGH
        return rng.integers(low, high, size=shape).astype(dtype)
    # numpy has no bfloat16: generate float32 and let the backend cast.
    np_dtype = "float32" if dtype == "bfloat16" else dtype
    if spec.low is not None and spec.high is not None:
        values = rng.uniform(spec.low, spec.high, size=shape)
    else:
        values = rng.standard_normal(size=shape)
    return values.astype(np_dtype)
