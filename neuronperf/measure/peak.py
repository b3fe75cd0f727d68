"""The peak search of one entry (``sweep.rates: max``), probe by probe, recorded durably.

Each probe is a full measurement (``repeat`` windows, each in fresh worker processes) at one
rate, into ``probe-<k>/repeat-<r>/`` of the entry's samples folder, with its own ``entry.json``.
When a probe is judged, one JSON line (rate, the bound's percentile, pass or fail, why) is
appended to ``probes.jsonl`` there and fsync'd: a search killed at any point resumes from the
probes it recorded (``rate_search.next_rate`` is a function of them alone) and repeats none of
them. At the end the probe the answer rests on (the highest passing rate below every failure;
when none passed, the lowest rate tried) has its repeat files copied to ``repeat-<r>/``, so the
entry's folder reads like any other entry's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np

from neuronperf.entries import Measurement
from neuronperf.measure.rate_search import Probe, next_rate, result
from neuronperf.measure.task import BenchmarkTask
from neuronperf.results.samples import load_repeats, repeat_dir, write_samples_header
from neuronperf.stats.forward import NS_PER_MS, percentile
from neuronperf.stats.serving import (
    call_records,
    request_times,
    search_minimum,
    serving_row_figures,
)

PROBES_FILE = "probes.jsonl"


def probe_dir(samples_dir: str, k: int) -> str:
    """The folder of probe ``k`` (from 0) in an entry's samples folder."""
    return os.path.join(samples_dir, f"probe-{k}")


def read_probes(samples_dir: str) -> list[Probe]:
    """The probes an earlier attempt recorded (a torn last line, from a crash while writing it,
    is left out: that probe is measured again)."""
    path = os.path.join(samples_dir, PROBES_FILE)
    probes: list[Probe] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    probes.append(Probe.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    break
    except FileNotFoundError:
        pass
    return probes


def keep_recorded(samples_dir: str) -> None:
    """Before a search resumes: remove what an interrupted attempt left unrecorded (a probe
    folder without its line in ``probes.jsonl``, a torn line, the entry's own repeat folders),
    keep every recorded probe."""
    if not os.path.isdir(samples_dir):
        return
    probes = read_probes(samples_dir)
    keep = {PROBES_FILE, *(os.path.basename(probe_dir(samples_dir, k)) for k in range(len(probes)))}
    for name in os.listdir(samples_dir):
        if name not in keep:
            path = os.path.join(samples_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    _rewrite_probes(samples_dir, probes)


def _rewrite_probes(samples_dir: str, probes: list[Probe]) -> None:
    """The probe file holding exactly ``probes`` (drops a torn tail), replaced atomically."""
    path = os.path.join(samples_dir, PROBES_FILE)
    if not probes and not os.path.exists(path):
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for p in probes:
            f.write(json.dumps(p.to_dict(), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def record_probes(samples_dir: str, probes: tuple[Probe, ...]) -> None:
    """Write ``probes.jsonl`` where it is missing (the search ran in another folder or node)."""
    if not os.path.exists(os.path.join(samples_dir, PROBES_FILE)):
        os.makedirs(samples_dir, exist_ok=True)
        _rewrite_probes(samples_dir, list(probes))


def _append_probe(samples_dir: str, probe: Probe) -> None:
    """Record a judged probe durably: one line, flushed and fsync'd before the next probe."""
    path = os.path.join(samples_dir, PROBES_FILE)
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(probe.to_dict(), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if new:  # the file's name in its folder must survive a crash too
        fd = os.open(samples_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def search_peak(task: BenchmarkTask, samples_dir: str, measure: Callable[[BenchmarkTask, str], Measurement],
                ) -> tuple[tuple[Measurement, ...], tuple[Probe, ...]]:
    """Probe rates until the peak is found (``rate_search``); the measurements of the probe the
    answer rests on, and every probe. A probe whose measurement fails ends the search: its
    measurements come back (the row says why), with the probes before it."""
    serving = task.serving
    assert serving is not None and serving.search
    os.makedirs(samples_dir, exist_ok=True)
    probes = read_probes(samples_dir)
    kept: dict[int, tuple[Measurement, ...]] = {}
    settings = task.settings
    # The lowest rate worth probing: a probe's window holds at least search_minimum requests,
    # and below this rate it would take more than half the timeout.
    floor = search_minimum(settings.min_calls) / max(settings.timeout / 2, settings.duration)
    while True:
        rate = next_rate(probes, 1.0, serving.rate_precision, floor) if probes else None
        if probes and rate is None:
            break
        k = len(probes)
        folder = probe_dir(samples_dir, k)
        shutil.rmtree(folder, ignore_errors=True)
        probe_task = replace(task, probe_rate=rate)
        measurements: list[Measurement] = []
        for r in range(settings.repeat):
            m = measure(probe_task, repeat_dir(folder, r))
            measurements.append(m)
            if m.status != "ok":
                return tuple(measurements), tuple(probes)
        write_samples_header(folder, task.entry_id, "", measurements)
        probe = judge(measurements, task)
        _append_probe(samples_dir, probe)
        probes.append(probe)
        kept[k] = tuple(measurements)
    answer = result(probes)
    assert answer.best is not None
    best = kept.get(answer.best) or load_repeats(probe_dir(samples_dir, answer.best))
    for r in range(len(best)):
        target = repeat_dir(samples_dir, r)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(repeat_dir(probe_dir(samples_dir, answer.best), r), target)
    return best, tuple(probes)


def judge(measurements: list[Measurement], task: BenchmarkTask) -> Probe:
    """Whether a probe's windows meet every bound of the entry's slo (as a row reports them:
    the median over repeats), with at least ``min_calls`` (else 100) requests served and the
    entry keeping up; ``hopeless`` when the calls alone miss a latency bound."""
    serving = task.serving
    assert serving is not None
    stats, columns = serving_row_figures(measurements, batch_size=task.batch_size,
                                         peak_window_s=task.settings.peak_window_s, cost_per_hour=None,
                                         new_tokens=task.new_tokens, slo=serving.slo)
    figures = {**stats.to_dict(), **columns}
    windows = [m.serving for m in measurements if m.serving is not None]
    rate = windows[0].rate if windows else float("nan")
    served = min(_served(m) for m in measurements)
    least = search_minimum(task.settings.min_calls)
    reasons = []
    value: Optional[float] = None
    hopeless = False
    for column, limit in serving.slo:
        measured = figures.get(column)
        if value is None:
            value = measured
        if measured is None:
            continue
        if measured > limit:
            reasons.append(f"{column} {measured:.4g} ms > {limit:g} ms")
            q = column.rpartition("_ms_p")[2]
            if column.startswith("latency_ms_p") and q.isdigit() and _service_alone(measurements, int(q)) > limit:
                hopeless = True
                reasons.append(f"the calls alone take {_service_alone(measurements, int(q)):.4g} ms at p{q}")
    early = any(w.stopped for w in windows)
    if early:
        reasons.append(next(w.stopped for w in windows if w.stopped))
    elif columns.get("invalid_reason") and "overloaded" in str(columns["invalid_reason"]):
        reasons.append(f"overloaded: served {columns['rate_achieved']:.6g} of {rate:.6g} requests/s")
    if served < least:
        reasons.append(f"only {served} requests served, fewer than {least} (min_calls)")
    return Probe(rate=rate, passed=not reasons, value_ms=value, requests=served, reason="; ".join(reasons),
                 early=early, hopeless=hopeless)


def _served(m: Measurement) -> int:
    return sum(int(np.asarray(w.request_count).sum()) for w in m.workers if w.request_count is not None)


def _service_alone(measurements: list[Measurement], q: int) -> float:
    """The ``q``-th percentile of the requests' call times alone (no queueing), ms, median over repeats."""
    values = []
    for m in measurements:
        assert m.serving is not None
        times = request_times(call_records(m), m.serving)
        if times.index.size:
            values.append(percentile((times.end_ns - times.start_ns).astype(np.float64) / NS_PER_MS, q))
    return float(np.median(values)) if values else 0.0


def probes_extra(probes: tuple[Probe, ...]) -> dict[str, Any]:
    """The row columns of a searched entry: its answer, the probes' count and, when no rate
    passed, why (``invalid_reason``)."""
    answer = result(probes)
    extra: dict[str, Any] = {"max_rate_under_slo": answer.max_rate, "probes": len(probes)}
    if answer.max_rate is None:
        extra["valid"] = False
        extra["invalid_reason"] = answer.reason
    return extra
