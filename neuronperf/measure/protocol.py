"""The messages between the supervisor (parent) and its worker processes, defined once.

Each message is a frozen dataclass sent as one JSON text over a ``multiprocessing`` pipe. Every
message carries the protocol version, so a parent and a worker from different neuronperf
versions (for example on a Ray cluster) fail with a clear error instead of a confusing one.

The conversation of one model copy::

    worker -> parent   Loaded   the model is loaded (load_ms)
    worker -> parent   Ready    every measuring thread warmed up (warmup_ms); they keep calling
    parent -> worker   Go       the shared measured window, each thread's most and fewest calls,
                                the file the copy writes its raw timings to, and in the server
                                scenario the rate and number of requests of the window's schedule
    worker -> parent   Samples  the timings file was written: per-thread call counts and totals
    worker -> parent   Error    instead of any of the above: the phase and the exception text

The worker's task itself (model loader, inputs, callbacks) is pickled once when the process
starts; it holds user objects that JSON cannot carry. Everything after that is JSON. Raw timings
do not travel in messages: the worker writes them (int64 arrays, 16 bytes per call) straight to
the ``.npz`` file named in Go, read with ``results.samples.read_copy_samples``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Optional, Union

from neuronperf.errors import ProtocolError

PROTOCOL_VERSION = 6


@dataclass(frozen=True)
class Loaded:
    """The copy loaded its model in ``load_ms`` milliseconds."""

    TYPE: ClassVar[str] = "loaded"
    load_ms: float


@dataclass(frozen=True)
class Ready:
    """Every thread of the copy finished its warm-up; ``warmup_ms`` is the mean warm-up call,
    ``warmup_fastest_ms`` the fastest (0 without warm-up calls). The threads keep calling the
    model (unmeasured) until the window opens."""

    TYPE: ClassVar[str] = "ready"
    warmup_ms: float
    warmup_calls: int
    warmup_fastest_ms: float = 0.0


@dataclass(frozen=True)
class Go:
    """Measure calls that start in [start_ns, end_ns) (``time.perf_counter_ns`` clock).

    ``quotas[t]`` is the most calls thread ``t`` may measure (None: no limit). ``minimums[t]`` is
    the fewest: thread ``t`` keeps measuring past ``end_ns`` until it has that many, but starts
    no call at or after ``last_ns`` (what the entry's timeout leaves). The timings go to
    ``samples_path``.

    In the server scenario (``rate`` set), ``requests`` requests arrive from ``start_ns`` at
    ``rate`` per second, on the schedule that the task's arrival and seed draw; the threads serve
    them from the entry's shared queue and take none at or after ``last_ns``."""

    TYPE: ClassVar[str] = "go"
    start_ns: int
    end_ns: int
    quotas: tuple[Optional[int], ...]
    minimums: tuple[int, ...]
    last_ns: int
    samples_path: str
    rate: Optional[float] = None
    requests: int = 0


@dataclass(frozen=True)
class ThreadTotals:
    """What one measuring thread did, beside its raw timings in the samples file."""

    thread_idx: int
    calls: int
    infer_ns_total: int
    preprocess_ns_total: int
    postprocess_ns_total: int


@dataclass(frozen=True)
class Samples:
    """The copy wrote its raw timings to the Go message's ``samples_path``.

    ``late_ns``: how long after the window opened the copy received Go (0 when in time)."""

    TYPE: ClassVar[str] = "samples"
    threads: tuple[ThreadTotals, ...]
    load_ms: float
    warmup_ms: float
    late_ns: int
    #: The device allocator's peak in this copy (``Backend.device_memory_peak``), or None.
    device_mem_peak_bytes: Optional[int] = None


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
    _check_fields(cls, body)
    if cls is Go:
        if not isinstance(body["samples_path"], str):
            raise ValueError("samples_path must be a string")
        return Go(
            start_ns=_int(body["start_ns"]),
            end_ns=_int(body["end_ns"]),
            quotas=tuple(None if q is None else _int(q) for q in body["quotas"]),
            minimums=tuple(_int(m) for m in body["minimums"]),
            last_ns=_int(body["last_ns"]),
            samples_path=body["samples_path"],
            rate=None if body["rate"] is None else float(body["rate"]),
            requests=_int(body["requests"]),
        )
    if cls is Samples:
        threads = []
        for t in body["threads"]:
            if not isinstance(t, dict):
                raise ValueError("each thread's totals must be an object")
            _check_fields(ThreadTotals, t)
            threads.append(ThreadTotals(**{k: _int(v) for k, v in t.items()}))
        return Samples(
            threads=tuple(threads), load_ms=float(body["load_ms"]), warmup_ms=float(body["warmup_ms"]),
            late_ns=_int(body["late_ns"]),
            device_mem_peak_bytes=None if body["device_mem_peak_bytes"] is None else _int(body["device_mem_peak_bytes"]),
        )
    return cls(**body)  # type: ignore[no-any-return]


def _check_fields(cls: type[Any], body: dict[str, Any]) -> None:
    expected = {f.name for f in fields(cls)}
    if set(body) != expected:
        missing, extra = sorted(expected - set(body)), sorted(set(body) - expected)
        raise ValueError(f"missing fields {missing}, unexpected fields {extra}")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value
