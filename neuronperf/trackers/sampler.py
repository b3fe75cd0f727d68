"""The sampler: one thread in the supervisor process that polls a tracker every period.

The supervisor, for one repeat of an entry::

    sampler = Sampler(tracker_for(device_type, ...), period_s)
    sampler.start()           # opens the source; polling begins
    sampler.measure_idle()    # 2 s before any copy starts: power_w_idle
    sampler.watch(pids)       # the copies exist: their memory counts from now on
    ...                       # load, warm up, the measured window
    sampler.stop()            # one last reading, after the window's end
    sampler.telemetry(window_start_ns, window_end_ns)

Nothing here runs inside a measured process, and nothing here raises into the supervisor: a
source that cannot be opened, or a reading that fails, becomes the row's ``telemetry_note``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

from neuronperf.trackers.figures import Point, counter_delta, integrate, join_notes, span_mean
from neuronperf.trackers.values import Sample, Telemetry, Tracker

DEFAULT_PERIOD_MS = 100
#: How long idle power is measured before an entry's copies start.
IDLE_S = 2.0
_MB = 1024 * 1024  # the MB of peak_rss_mb


def tracker_for(device_type: str, *, period_s: float = DEFAULT_PERIOD_MS / 1000,
                visible_devices: Sequence[str] = ()) -> Optional[Tracker]:
    """The source of a device type's telemetry: RAPL for ``cpu``, NVML for ``cuda`` (given the
    copies' ``CUDA_VISIBLE_DEVICES`` values), neuron-monitor for ``neuron``; None for others."""
    from neuronperf.trackers.neuron_monitor import NeuronMonitorTracker
    from neuronperf.trackers.nvml import NvmlTracker
    from neuronperf.trackers.rapl import RaplTracker

    if device_type == "cpu":
        return RaplTracker()
    if device_type == "cuda":
        return NvmlTracker(visible_devices)
    if device_type == "neuron":
        return NeuronMonitorTracker(period_s)
    return None


class Sampler:
    """Polls ``tracker`` every ``period_s`` on a thread of its own, keeping every sample."""

    def __init__(self, tracker: Optional[Tracker], period_s: float = DEFAULT_PERIOD_MS / 1000, *,
                 idle_s: float = IDLE_S, clock: Callable[[], int] = time.perf_counter_ns):
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s!r}")
        self.tracker = tracker
        self.period_s = period_s
        self.idle_s = idle_s
        self._clock = clock
        self._samples: list[Sample] = []
        self._pids: frozenset[int] = frozenset()
        self._entry_start_ns: Optional[int] = None
        self._idle: Optional[tuple[int, int]] = None
        self._unusable: Optional[str] = None if tracker is not None else "no telemetry source for this device type"
        self._errors: list[str] = []
        self._poll_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._open = False

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    def start(self) -> None:
        """Open the source and start polling; a source that cannot be opened is only a note."""
        if self.tracker is None or self._open:
            return
        self._unusable = self.tracker.open()
        if self._unusable is not None:
            self.tracker.close()
            return
        self._open = True
        self._thread = threading.Thread(target=self._loop, name="neuronperf-telemetry", daemon=True)
        self._thread.start()

    def measure_idle(self) -> None:
        """Block for ``idle_s`` while polling goes on: the idle power of the device, measured
        before the entry's copies start. Skipped for a source that reads no power."""
        if not self._open or self.tracker is None or not self.tracker.reads_power() or self.idle_s <= 0:
            return
        self._poll()  # a reading at the start, so that the interval is bracketed
        start = self._clock()
        self._stopping.wait(self.idle_s)
        end = self._clock()
        self._poll()
        self._idle = (start, end)

    def watch(self, pids: Sequence[int]) -> None:
        """The entry's worker processes exist: from now on their memory is read."""
        self._pids = frozenset(int(p) for p in pids)
        self._entry_start_ns = self._clock()

    def stop(self) -> None:
        """Take a last reading (after the window's end) and close the source. Idempotent."""
        if not self._open:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._poll()
        assert self.tracker is not None
        self.tracker.close()
        self._open = False

    def telemetry(self, window_start_ns: int, window_end_ns: int) -> Telemetry:
        """The figures of the measured window ``[window_start_ns, window_end_ns]``
        (perf_counter_ns), from the samples taken so far (call ``stop`` first)."""
        if self._unusable is not None or self.tracker is None:
            return Telemetry(note=self._unusable)
        entry_from = self._entry_start_ns if self._entry_start_ns is not None else window_start_ns
        return summarise(self.tracker, self._samples, window=(window_start_ns, window_end_ns),
                         entry_start_ns=entry_from, idle=self._idle, errors=self._errors)

    def poll_now(self) -> None:
        """Take a reading now, besides the thread's (the samples stay in time order)."""
        if self._open:
            self._poll()

    # ---- internals --------------------------------------------------------------------------

    def _loop(self) -> None:
        period_ns = int(self.period_s * 1e9)
        next_ns = self._clock()
        while True:
            self._poll()
            next_ns += period_ns
            now = self._clock()
            if next_ns < now:  # a slow reading: skip the missed ticks rather than catch up
                next_ns = now + period_ns
            if self._stopping.wait((next_ns - now) / 1e9):
                return

    def _poll(self) -> None:
        assert self.tracker is not None
        with self._poll_lock:
            try:
                self._samples.extend(self.tracker.poll(self._pids))
            except Exception as e:  # a failed reading leaves a gap and a note, never a failed entry
                note = f"{self.tracker.name} reading failed: {type(e).__name__}: {e}"
                if note not in self._errors:
                    self._errors.append(note)


def summarise(tracker: Tracker, samples: Sequence[Sample], *, window: tuple[int, int],
              entry_start_ns: int, idle: Optional[tuple[int, int]] = None,
              errors: Sequence[str] = ()) -> Telemetry:
    """The telemetry figures of a repeat from its samples (docs/measurement.md defines each):
    memory, the peak over the samples since ``entry_start_ns`` (the copies started); utilisation,
    the mean of the readings that describe ``window``; energy over ``window`` and over ``idle``
    from the counter, else from sampled power; power, that energy over the interval's length."""
    window_start_ns, window_end_ns = window
    entry = [s for s in samples if s.t_ns >= entry_start_ns]
    channels, choice_note = tracker.entry_channels(entry)
    notes: list[Optional[str]] = [choice_note]
    known_devices = channels != frozenset()

    def ours(values: Mapping[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if channels is None or k in channels}

    mem_mb: Optional[float] = None
    mem_totals = [sum(m.values()) for s in entry for m in [ours(s.mem_bytes)] if m]
    if mem_totals:
        mem_mb = max(mem_totals) / _MB
    util_points = [(s.t_ns, s.span_ns, sum(u.values()) / len(u)) for s in samples for u in [ours(s.util_pct)] if u]
    util = span_mean(util_points, window_start_ns, window_end_ns)
    if util is None and known_devices and any(s.util_pct for s in samples):
        notes.append(f"no {tracker.name} utilisation reading describes the window")

    energy = power = idle_w = None
    if tracker.reads_power() and known_devices:
        window_s = (window_end_ns - window_start_ns) / 1e9
        energy = _energy(samples, channels, window_start_ns, window_end_ns)
        if energy is None:
            notes.append(f"no {tracker.name} energy reading on both sides of the window")
        elif window_s > 0:
            power = energy / window_s
        if idle is not None:
            idle_j = _energy(samples, channels, *idle)
            idle_s = (idle[1] - idle[0]) / 1e9
            idle_w = idle_j / idle_s if idle_j is not None and idle_s > 0 else None
    notes += [*tracker.notes(), *errors]
    figures = {
        "device_mem_mb_peak": mem_mb if tracker.mem_column == "device_mem_mb_peak" else None,
        "device_mem_mb_nvml_peak": mem_mb if tracker.mem_column == "device_mem_mb_nvml_peak" else None,
        "device_util_pct_avg": util,
        "power_w_avg": power,
        "power_w_idle": idle_w,
        "energy_j": energy,
    }
    read_any = any(v is not None for v in figures.values())
    return Telemetry(energy_source=tracker.name if read_any else None, note=join_notes(notes), **figures)


def _energy(samples: Sequence[Sample], channels: Optional[frozenset[str]], start_ns: int, end_ns: int) -> Optional[float]:
    """Joules over ``[start_ns, end_ns]`` on ``channels``: from the energy counter when the
    samples carry one for every channel, else integrated from sampled power."""
    energy_points = _totals(samples, "energy_j", channels)
    if energy_points is not None:
        return counter_delta(energy_points, start_ns, end_ns)
    power_points = _totals(samples, "power_w", channels)
    if power_points is not None:
        return integrate(power_points, start_ns, end_ns)
    return None


def _totals(samples: Sequence[Sample], kind: str, channels: Optional[frozenset[str]]) -> Optional[list[Point]]:
    """``(t_ns, sum over channels)`` of the samples that have every channel of ``kind``; None
    when no sample has them all. With ``channels`` None, the channels of the first sample."""
    wanted = channels
    points: list[Point] = []
    for s in samples:
        values = getattr(s, kind)
        if not values:
            continue
        if wanted is None:
            wanted = frozenset(values)
        if wanted and wanted <= set(values):
            points.append((s.t_ns, float(sum(values[c] for c in wanted))))
    return sorted(points) or None
