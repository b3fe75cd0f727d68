"""The raw samples store: what the workers timed, kept beside the rows so that every figure can
be recomputed.

An entry's samples folder (``samples/<safe id>-<key[:8]>``) holds one folder per repeat, with one
file per model copy (``repeat-<r>/copy-<c>.npz``: int64 start times and latencies per measuring
thread, written by the worker), and ``entry.json`` (each repeat's window, status and per-thread
and per-copy figures), written by the parent once the row is made.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import numpy as np

from neuronperf.entries import CopyStats, Measurement, ServingWindow, Telemetry, WorkerSamples
from neuronperf.errors import JournalError, ProtocolError
from neuronperf.results.journal import newer_format_error
from neuronperf.util import nofollow
from neuronperf.util.atomic import atomic_write_bytes, dumps_strict, json_ready
from neuronperf.util.paths import safe_file_stem

#: Version of the samples folders (1: one .npz file per entry, before method 2).
SAMPLES_FORMAT = 2
SAMPLES_DIR = "samples"


#: The file in an entry's samples folder that describes its repeats (format 2 on).
SAMPLES_HEADER = "entry.json"


def samples_relpath(entry_id: str, key: str) -> str:
    """Where an entry's samples go, relative to output_dir: the folder ``samples/<safe id>-<key[:8]>``
    (the id made safe for a file name: an id never reaches outside ``samples/``)."""
    return os.path.join(SAMPLES_DIR, safe_file_stem(entry_id, key))


def repeat_dir(samples_dir: str, repeat: int) -> str:
    """The folder of one repeat's copy files inside an entry's samples folder."""
    return os.path.join(samples_dir, f"repeat-{repeat}")


def write_samples_header(samples_dir: str, entry_id: str, key: str, measurements: Any) -> str:
    """Write ``entry.json`` beside the copy files that the workers wrote into ``samples_dir``:
    each repeat's window, status and per-thread and per-copy figures (the timings themselves
    stay in the workers' files, ``repeat-<r>/copy-<c>.npz``). Atomic; returns its path."""
    repeats = []
    for m in measurements:
        repeats.append({
            "status": m.status,
            "error": m.error,
            "window_start_ns": m.window_start_ns,
            "window_end_ns": m.window_end_ns,
            "other_cpu_cores": m.other_cpu_cores,
            "idle_cpu_cores": m.idle_cpu_cores,
            "workers": [
                {
                    "copy_idx": w.copy_idx,
                    "thread_idx": w.thread_idx,
                    "infer_ns_total": w.infer_ns_total,
                    "preprocess_ns_total": w.preprocess_ns_total,
                    "postprocess_ns_total": w.postprocess_ns_total,
                    # Only when set, so that headers of entries without max_infers keep their keys.
                    **({"quota": w.quota} if w.quota is not None else {}),
                }
                for w in m.workers
            ],
            "copies": [json_ready(dataclasses.asdict(c)) for c in m.copies],
            "telemetry": json_ready(m.telemetry.to_dict()) if m.telemetry is not None else None,
            # Only in the server scenario, so that closed-loop headers keep their form.
            **({"serving": m.serving.to_dict()} if m.serving is not None else {}),
        })
    header = {"format": SAMPLES_FORMAT, "id": entry_id, "key": key, "repeats": repeats}
    path = os.path.join(samples_dir, SAMPLES_HEADER)
    atomic_write_bytes(path, dumps_strict(header).encode("utf-8"), root=samples_dir)
    return path


def load_repeats(path: str) -> tuple[Measurement, ...]:
    """Every repeat's ``Measurement`` from an entry's samples folder (or from a samples file of
    format 1, which held one repeat); the timings are int64 arrays. An unreadable or newer
    folder is a ``JournalError``."""
    from neuronperf.errors import ProtocolError
    from neuronperf.results.samples import copy_samples_path, read_copy_timings

    if os.path.isfile(path):
        return (_load_samples_v1(path),)
    header_path = os.path.join(path, SAMPLES_HEADER)
    try:
        with open(header_path, encoding="utf-8") as f:
            header = json.load(f)
        version = header.get("format")
        if not isinstance(version, int):
            raise ValueError("no format version")
        if version > SAMPLES_FORMAT:
            raise newer_format_error(header_path, "samples", version, SAMPLES_FORMAT)
        out = []
        for r, repeat in enumerate(header["repeats"]):
            by_copy: dict[int, list[dict[str, Any]]] = {}
            for w in repeat["workers"]:
                by_copy.setdefault(int(w["copy_idx"]), []).append(w)
            workers = []
            for copy_idx, threads in sorted(by_copy.items()):
                copy_path = copy_samples_path(repeat_dir(path, r), copy_idx)
                timings = read_copy_timings(copy_path, len(threads))
                requests = read_copy_requests(copy_path, len(threads)) if "serving" in repeat else [None] * len(threads)
                for w, (starts, latencies, tokens), served in zip(threads, timings, requests):
                    first, count, due = served if served is not None else (None, None, None)
                    workers.append(WorkerSamples(start_ns=starts, latency_ns=latencies, token_ns=tokens,
                                                 request_first=first, request_count=count, due_ns=due, **w))
            out.append(Measurement(
                status=repeat["status"],
                error=repeat["error"],
                window_start_ns=repeat["window_start_ns"],
                window_end_ns=repeat["window_end_ns"],
                workers=tuple(workers),
                copies=tuple(CopyStats(**c) for c in repeat["copies"]),
                other_cpu_cores=repeat.get("other_cpu_cores"),
                idle_cpu_cores=repeat.get("idle_cpu_cores"),  # absent in folders written before it existed
                # Absent in folders written before telemetry existed.
                telemetry=Telemetry(**repeat["telemetry"]) if repeat.get("telemetry") else None,
                serving=ServingWindow.from_dict(repeat["serving"]) if "serving" in repeat else None,
            ))
    except JournalError:
        raise
    except FileNotFoundError as e:
        raise JournalError(f"{path}: samples not found ({e.filename})") from None
    except (OSError, ValueError, KeyError, TypeError, ProtocolError) as e:
        raise JournalError(f"{path}: not a readable neuronperf samples folder: {e}") from None
    return tuple(out)


def load_samples(path: str) -> Measurement:
    """The first repeat of ``load_repeats(path)`` (an entry measured once has only that one)."""
    return load_repeats(path)[0]


def _load_samples_v1(path: str) -> Measurement:
    """A samples file of format 1 (neuronperf before method 2): one compressed ``.npz``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            version = header.get("format")
            if version != 1:
                raise ValueError(f"format {version!r} is not a single-file samples format")
            workers = tuple(
                WorkerSamples(
                    start_ns=np.asarray(data[f"start_ns_{i}"], dtype=np.int64),
                    latency_ns=np.asarray(data[f"latency_ns_{i}"], dtype=np.int64),
                    **w,
                )
                for i, w in enumerate(header["workers"])
            )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise JournalError(f"{path}: not a readable neuronperf samples file: {e}") from None
    return Measurement(
        status=header["status"],
        error=header["error"],
        window_start_ns=header["window_start_ns"],
        window_end_ns=header["window_end_ns"],
        workers=workers,
        copies=tuple(CopyStats(**c) for c in header["copies"]),
    )


# ---- a copy's samples file (written by the worker) -------------------------------------------

#: Version of a copy's samples file.
COPY_SAMPLES_FORMAT = 1


def copy_samples_path(samples_dir: str, copy_idx: int) -> str:
    """Where copy ``copy_idx`` of a repeat writes its raw timings."""
    return os.path.join(samples_dir, f"copy-{copy_idx}.npz")


def write_copy_samples(path: str, starts: list[Any], latencies: list[Any], tokens: Optional[list[Any]] = None,
                       requests: Optional[list[Any]] = None) -> None:
    """Write one copy's raw timings (one int64 array of start times and one of latencies per
    thread; for a generation task also each thread's token stamps, ``new_tokens`` per request in
    request order; in the server scenario also, per call, the first request it served, how many,
    and when the batch was due) to ``path``, uncompressed (writing and reading stay fast for
    millions of calls), atomically (a reader never sees half a file) and without following a
    link in its folder, which must be the user's own (``util.nofollow``). A short write is
    continued; a full disk raises ``OSError``."""
    import numpy as np

    arrays: dict[str, Any] = {"format": np.array(COPY_SAMPLES_FORMAT)}
    for t, (s, lat) in enumerate(zip(starts, latencies)):
        arrays[f"start_ns_{t}"] = s
        arrays[f"latency_ns_{t}"] = lat
    for t, stamps in enumerate(tokens or ()):
        arrays[f"token_ns_{t}"] = stamps
    for t, (first, count, due) in enumerate(requests or ()):
        arrays[f"request_first_{t}"], arrays[f"request_count_{t}"], arrays[f"due_ns_{t}"] = first, count, due
    folder, name = os.path.split(os.path.abspath(path))
    with nofollow.atomic_file(folder, name) as f:
        np.savez(f, **arrays)


def read_copy_samples(path: str, n_threads: int) -> list[tuple[Any, Any]]:
    """(start_ns, latency_ns) int64 arrays of each of a copy's ``n_threads`` threads."""
    return [(start, latency) for start, latency, _ in read_copy_timings(path, n_threads)]


def read_copy_requests(path: str, n_threads: int) -> list[Optional[tuple[Any, Any, Any]]]:
    """Per thread of a server-scenario copy: (first request, requests served, due time) int64
    arrays, one item per call; None for a thread whose file holds none (a closed-loop copy)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            out: list[Optional[tuple[Any, Any, Any]]] = []
            for t in range(n_threads):
                if f"request_first_{t}" not in data.files:
                    out.append(None)
                    continue
                arrays = tuple(data[f"{name}_{t}"].astype(np.int64, copy=False)
                               for name in ("request_first", "request_count", "due_ns"))
                if any(a.shape != data[f"start_ns_{t}"].shape for a in arrays):
                    raise ProtocolError(f"{path}: thread {t} has request records of another length than its calls")
                out.append(arrays)  # type: ignore[arg-type]
            return out
    except (OSError, KeyError, ValueError) as e:
        raise ProtocolError(f"{path}: the copy's samples file cannot be read: {e}") from None


def read_copy_timings(path: str, n_threads: int) -> list[tuple[Any, Any, Optional[Any]]]:
    """(start_ns, latency_ns, token_ns) int64 arrays of each of a copy's ``n_threads`` threads,
    from one reading of the file; token_ns is None in a forward task's file, which holds none."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) > COPY_SAMPLES_FORMAT:
                raise ProtocolError(f"{path}: samples format {int(data['format'])} is newer than this neuronperf's")
            out = []
            for t in range(n_threads):
                start, latency = data[f"start_ns_{t}"], data[f"latency_ns_{t}"]
                if start.shape != latency.shape:
                    raise ProtocolError(f"{path}: thread {t} has {start.size} start times but {latency.size} latencies")
                tokens = data[f"token_ns_{t}"].astype(np.int64, copy=False) if f"token_ns_{t}" in data.files else None
                out.append((start.astype(np.int64, copy=False), latency.astype(np.int64, copy=False), tokens))
            return out
    except (OSError, KeyError, ValueError) as e:
        raise ProtocolError(f"{path}: the copy's samples file cannot be read: {e}") from None
