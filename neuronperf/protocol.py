"""The messages between the benchmark stage (parent) and its worker processes, defined once.

Each message is a frozen dataclass sent as one JSON text over a ``multiprocessing`` pipe. Every
message carries the protocol version, so a parent and a worker from different neuronperf
versions (for example on a Ray cluster) fail with a clear error instead of a confusing one.

The conversation of one model copy::

    worker -> parent   Loaded   the model is loaded (load_ms)
    worker -> parent   Ready    warm-up done on every thread (warmup_ms)
    parent -> worker   Go       the shared measured window and each thread's call quota
    worker -> parent   Samples  raw timings of every thread, and the copy's CPU/memory figures
    worker -> parent   Error    instead of any of the above: the phase and the exception text

The worker's task itself (model loader, inputs, callbacks) is pickled once when the process
starts; it holds user objects that JSON cannot carry. Everything after that is JSON. Raw timings
travel inside it as base64 of little-endian int64 arrays: a fast model measured for a minute makes
millions of calls, and packed they decode in about half the time of JSON lists of numbers.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Optional, Union

from neuronperf.entries import CopyStats, WorkerSamples
from neuronperf.errors import NeuronPerfError

PROTOCOL_VERSION = 2


class ProtocolError(NeuronPerfError):
    """A message could not be decoded: malformed JSON, an unknown type or another version."""


@dataclass(frozen=True)
class Loaded:
    """The copy loaded its model in ``load_ms`` milliseconds."""

    TYPE: ClassVar[str] = "loaded"
    load_ms: float


@dataclass(frozen=True)
class Ready:
    """Every thread of the copy finished its warm-up; ``warmup_ms`` is the mean warm-up call."""

    TYPE: ClassVar[str] = "ready"
    warmup_ms: float
    warmup_calls: int


@dataclass(frozen=True)
class Go:
    """Measure calls that start in [start_ns, end_ns) (``time.perf_counter_ns`` clock).

    ``quotas[t]`` is the most calls thread ``t`` may measure (None: no limit)."""

    TYPE: ClassVar[str] = "go"
    start_ns: int
    end_ns: int
    quotas: tuple[Optional[int], ...]


@dataclass(frozen=True)
class Samples:
    """The copy's raw timings, one ``WorkerSamples`` per thread, and its ``CopyStats``."""

    TYPE: ClassVar[str] = "samples"
    workers: tuple[WorkerSamples, ...]
    copy: CopyStats


@dataclass(frozen=True)
class Error:
    """The copy failed in ``phase`` ("loading", "warming up", "measuring"...)."""

    TYPE: ClassVar[str] = "error"
    phase: str
    message: str


Message = Union[Loaded, Ready, Go, Samples, Error]

MESSAGE_TYPES: dict[str, type[Any]] = {cls.TYPE: cls for cls in (Loaded, Ready, Go, Samples, Error)}


def encode(message: Message) -> bytes:
    """The JSON text of ``message``, with its type and the protocol version."""
    if isinstance(message, Samples):
        # asdict would deep-copy every sample tuple; the timings go as packed arrays instead.
        body: dict[str, Any] = {
            "workers": [
                {f.name: _pack(getattr(w, f.name)) if f.name in _ARRAY_FIELDS else getattr(w, f.name)
                 for f in fields(w)}
                for w in message.workers
            ],
            "copy": asdict(message.copy),
        }
    else:
        body = asdict(message)
    body["type"] = message.TYPE
    body["v"] = PROTOCOL_VERSION
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> Message:
    """Parse one message; raise ``ProtocolError`` for anything that is not a valid message."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"malformed message: {e}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"malformed message: expected a JSON object, got {type(body).__name__}")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} received, {PROTOCOL_VERSION} expected: "
            "the parent and the worker run different neuronperf versions"
        )
    kind = body.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}; known: {', '.join(MESSAGE_TYPES)}")
    try:
        return _build(cls, body)
    except (TypeError, ValueError, KeyError) as e:
        raise ProtocolError(f"malformed {kind!r} message: {e}") from None


def send(conn: Any, message: Message) -> None:
    """Send one message over a ``multiprocessing`` connection."""
    conn.send_bytes(encode(message))


def recv(conn: Any) -> Message:
    """Receive one message (raises ``EOFError`` when the other end has closed)."""
    return decode(conn.recv_bytes())


def _build(cls: type[Any], body: dict[str, Any]) -> Message:
    expected = {f.name for f in fields(cls)}
    if set(body) != expected:
        missing, extra = sorted(expected - set(body)), sorted(set(body) - expected)
        raise ValueError(f"missing fields {missing}, unexpected fields {extra}")
    if cls is Go:
        return Go(
            start_ns=_int(body["start_ns"]),
            end_ns=_int(body["end_ns"]),
            quotas=tuple(None if q is None else _int(q) for q in body["quotas"]),
        )
    if cls is Samples:
        workers = tuple(
            WorkerSamples(
                copy_idx=_int(w["copy_idx"]),
                thread_idx=_int(w["thread_idx"]),
                start_ns=_unpack(w["start_ns"]),
                latency_ns=_unpack(w["latency_ns"]),
                infer_ns_total=_int(w["infer_ns_total"]),
                preprocess_ns_total=_int(w["preprocess_ns_total"]),
                postprocess_ns_total=_int(w["postprocess_ns_total"]),
            )
            for w in body["workers"]
        )
        for w in workers:
            if len(w.start_ns) != len(w.latency_ns):
                raise ValueError(f"thread {w.thread_idx}: {len(w.start_ns)} start times but {len(w.latency_ns)} latencies")
        return Samples(workers=workers, copy=CopyStats(**body["copy"]))
    return cls(**body)  # type: ignore[no-any-return]


_ARRAY_FIELDS = ("start_ns", "latency_ns")


def _pack(values: Any) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(values, dtype="<i8").tobytes()).decode("ascii")


def _unpack(text: Any) -> tuple[int, ...]:
    import numpy as np

    if not isinstance(text, str):
        raise ValueError(f"expected packed int64 timings (base64 text), got {type(text).__name__}")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError(f"packed timings of {len(raw)} bytes are not a whole number of int64")
    return tuple(np.frombuffer(raw, dtype="<i8").tolist())


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value
