"""The figures of a generation entry (``task: generate``): TTFT, TPOT, inter-token latency,
end-to-end latency and tokens per second, from each request's token stamps (their definitions
are in ``stats.forward``'s docstring and docs/language-models.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from neuronperf.entries import Measurement
from neuronperf.errors import UsageError
from neuronperf.stats.forward import NS_PER_MS, measuring_threads, percentile, throughput

#: The columns a generation entry's row adds, in order (``generation_stats``).
GENERATION_COLUMNS = (
    "new_tokens",
    "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99",
    "tpot_ms_p50", "tpot_ms_p90", "tpot_ms_p99",
    "itl_ms_p50", "itl_ms_p90", "itl_ms_p99",
    "e2e_ms_p50", "e2e_ms_p99",
    "output_tokens_per_s", "requests_per_s",
)


#: Those that are figures (new_tokens is an axis of the entry, like a swept parameter).
GENERATION_FIGURES = tuple(c for c in GENERATION_COLUMNS if c != "new_tokens")


@dataclass(frozen=True)
class RequestTimes:
    """Per-request figures of a generation measurement, in ns, pooled over every thread."""

    ttft_ns: np.ndarray
    tpot_ns: np.ndarray  # float: (t_N - t_1) / (N - 1); empty for N = 1
    e2e_ns: np.ndarray
    itl_ns: np.ndarray  # every gap between two consecutive tokens of a request


def request_times(measurement: Measurement, new_tokens: int) -> RequestTimes:
    """TTFT, TPOT, end-to-end and inter-token times of every measured request (module docstring)."""
    if new_tokens < 1:
        raise UsageError(f"new_tokens must be a positive integer, got {new_tokens!r}")
    ttft, tpot, e2e, itl = [], [], [], []
    for w in measurement.workers:
        start = np.asarray(w.start_ns, dtype=np.int64)
        if w.token_ns is None:
            if start.size:
                raise UsageError(f"copy {w.copy_idx} thread {w.thread_idx}: a generation measurement without token times")
            continue
        stamps = np.asarray(w.token_ns, dtype=np.int64)
        if stamps.size != start.size * new_tokens:
            raise UsageError(
                f"copy {w.copy_idx} thread {w.thread_idx}: {stamps.size} token times for {start.size} "
                f"requests of {new_tokens} tokens"
            )
        tokens = stamps.reshape(start.size, new_tokens)
        ttft.append(tokens[:, 0] - start)
        e2e.append(tokens[:, -1] - start)
        if new_tokens > 1:
            tpot.append((tokens[:, -1] - tokens[:, 0]) / (new_tokens - 1))
            itl.append(np.diff(tokens, axis=1).ravel())

    def joined(parts: list, dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return RequestTimes(joined(ttft, np.int64), joined(tpot, np.float64), joined(e2e, np.int64), joined(itl, np.int64))


def empty_generation(new_tokens: int) -> dict[str, Any]:
    """The ``GENERATION_COLUMNS`` of an entry with no figures (failed, or never measured)."""
    return {**dict.fromkeys(GENERATION_FIGURES), "new_tokens": new_tokens}


def generation_stats(measurement: Measurement, *, batch_size: int, new_tokens: int) -> dict[str, Any]:
    """The ``GENERATION_COLUMNS`` of one repeat (None where unknown: a failed measurement, or
    TPOT and inter-token latency for one token per request)."""
    out = empty_generation(new_tokens)
    if measurement.status != "ok":
        return out
    times = request_times(measurement, new_tokens)
    if not times.e2e_ns.size:
        return out

    def ms(values: np.ndarray, q: float) -> Optional[float]:
        return percentile(values.astype(np.float64) / NS_PER_MS, q) if values.size else None

    for q in (50, 90, 99):
        out[f"ttft_ms_p{q}"] = ms(times.ttft_ns, q)
        out[f"tpot_ms_p{q}"] = ms(times.tpot_ns, q)
        out[f"itl_ms_p{q}"] = ms(times.itl_ns, q)
    out["e2e_ms_p50"] = ms(times.e2e_ns, 50)
    out["e2e_ms_p99"] = ms(times.e2e_ns, 99)
    requests_per_s = throughput([t for t in measuring_threads(measurement) if t.calls], batch_size)
    out["requests_per_s"] = requests_per_s
    out["output_tokens_per_s"] = requests_per_s * new_tokens
    return out


def combine_generation(per_repeat: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several repeats' generation columns: the mean of each, as for every other figure."""
    if len(per_repeat) == 1:
        return dict(per_repeat[0])
    out = empty_generation(per_repeat[0]["new_tokens"])
    for name in GENERATION_FIGURES:
        numbers = [r[name] for r in per_repeat if r.get(name) is not None]
        out[name] = float(statistics.fmean(numbers)) if numbers else None
    return out
