"""The journal (durable appends, torn tail, corrupt lines, versions), the output_dir lock across
real processes, and the raw samples store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from neuronperf.entries import CopyStats, Measurement, WorkerSamples
from neuronperf.errors import JournalError, OutputDirLocked, OutputWriteFailed, UsageError
from neuronperf.results import journal as journal_module
from neuronperf.results.journal import Journal
from neuronperf.results.lock import OutputDirLock
from neuronperf.results.samples import (
    copy_samples_path,
    load_repeats,
    load_samples,
    repeat_dir,
    samples_relpath,
    write_copy_samples,
    write_samples_header,
)

pytestmark = pytest.mark.pure


def test_records_are_appended_fsynced_and_readable(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    journal = Journal(str(tmp_path / "out"))
    assert not journal.exists() and journal.load() == []
    journal.record_compile("c1", "mlp-bs1-p1", "ok", artifact="models/a.pt", compile_s=1.5, compiler_version="2.3")
    journal.record_run("r1", "mlp-bs1-p1-m1-w1", {"status": "ok", "throughput_avg": 10.0}, samples_file="samples/x.npz")
    assert len(synced) >= 3  # each append, plus the folder when the file was created
    lines = (tmp_path / "out" / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["format"] == 1 and first["kind"] == "compile" and first["key"] == "c1"
    assert first["id"] == "mlp-bs1-p1" and first["status"] == "ok" and first["compile_s"] == 1.5
    assert first["artifact"] == "models/a.pt" and first["error"] is None and "time" in first
    assert second["kind"] == "run" and second["row"]["throughput_avg"] == 10.0
    assert second["samples_file"] == "samples/x.npz"
    # Another reader (a fresh object, as a rerun has) sees everything.
    assert [r["key"] for r in Journal(str(tmp_path / "out")).load()] == ["c1", "r1"]


def test_last_record_per_key_wins(tmp_path):
    journal = Journal(str(tmp_path))
    journal.record_run("r1", "a", {"status": "error", "error": "boom"})
    journal.record_run("r2", "b", {"status": "ok"})
    journal.record_run("r1", "a", {"status": "ok", "throughput_avg": 5.0})
    journal.record_compile("r1", "a-compile", "error", error="no compiler")
    runs = journal.runs()
    assert set(runs) == {"r1", "r2"} and runs["r1"]["status"] == "ok"
    assert runs["r1"]["row"]["throughput_avg"] == 5.0
    assert journal.compiles()["r1"]["status"] == "error"  # compile keys are their own namespace


def test_strict_json_in_the_journal(tmp_path):
    journal = Journal(str(tmp_path))
    journal.record_run("r", "a", {"status": "ok", "throughput_cv": float("nan")})
    assert "NaN" not in (tmp_path / "journal.jsonl").read_text()
    assert journal.runs()["r"]["row"]["throughput_cv"] is None
    with pytest.raises(UsageError, match="status"):
        journal.record_run("r", "a", {"throughput_avg": 1.0})


@pytest.mark.parametrize("tail", [b'{"format": 1, "kind": "run", "key": "r2", "st', b"\x00\x00\x00\x00", b"garbage\n"])
def test_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path, tail):
    journal = Journal(str(tmp_path))
    journal.record_run("r1", "a", {"status": "ok"})
    with open(journal.path, "ab") as f:
        f.write(tail)  # what a crash mid-append leaves
    assert [r["key"] for r in Journal(str(tmp_path)).load()] == ["r1"]
    resumed = Journal(str(tmp_path))
    resumed.record_run("r3", "c", {"status": "ok"})
    lines = Path(journal.path).read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # two whole lines, nothing torn in between
    assert [r["key"] for r in resumed.load()] == ["r1", "r3"]


def test_a_whole_last_record_that_lost_only_its_newline_is_kept(tmp_path):
    journal = Journal(str(tmp_path))
    journal.record_run("r1", "a", {"status": "ok"})
    text = Path(journal.path).read_bytes()
    Path(journal.path).write_bytes(text.rstrip(b"\n"))  # the crash came between record and newline
    resumed = Journal(str(tmp_path))
    assert [r["key"] for r in resumed.load()] == ["r1"]
    resumed.record_run("r2", "b", {"status": "ok"})
    assert [r["key"] for r in Journal(str(tmp_path)).load()] == ["r1", "r2"]


def test_corrupt_middle_line_is_a_clear_error(tmp_path):
    journal = Journal(str(tmp_path))
    journal.record_run("r1", "a", {"status": "ok"})
    with open(journal.path, "ab") as f:
        f.write(b"{broken\n")
    journal.record_run("r2", "b", {"status": "ok"})  # the tail was whole, so nothing was cut
    with pytest.raises(JournalError, match=r"journal\.jsonl:2: corrupt journal line"):
        journal.load()


def test_newer_format_is_refused_older_is_read(tmp_path):
    journal = Journal(str(tmp_path))
    journal.record_run("r1", "a", {"status": "ok"})
    newer = {"format": journal_module.JOURNAL_FORMAT + 1, "kind": "run", "key": "r2", "id": "b", "status": "ok"}
    with open(journal.path, "a") as f:
        f.write(json.dumps(newer) + "\n")
    with pytest.raises(JournalError, match=r"journal\.jsonl:2: written by a newer neuronperf \(journal format 2"):
        journal.load()
    assert journal_module.JOURNAL_FORMAT == 1  # format 1 is the oldest; its lines were read above


def test_record_without_kind_is_an_error(tmp_path):
    (tmp_path / "journal.jsonl").write_text('{"format": 1, "key": "x"}\n{"format": 1, "kind": "run", "key": "y"}\n')
    with pytest.raises(JournalError, match=r"journal\.jsonl:1: .*'kind'"):
        Journal(str(tmp_path)).load()


# ---- the lock, across real processes ---------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from neuronperf.results.lock import OutputDirLock
    lock = OutputDirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
    sys.stdin.readline()
    """
)

TRY_LOCK = textwrap.dedent(
    """
    import sys
    from neuronperf.errors import OutputDirLocked
    from neuronperf.results.lock import OutputDirLock
    try:
        with OutputDirLock(sys.argv[1]):
            print("acquired")
    except OutputDirLocked as e:
        print("refused:", e)
    """
)


def start_holder(output_dir):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, output_dir], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def try_lock_elsewhere(output_dir):
    done = subprocess.run([sys.executable, "-c", TRY_LOCK, output_dir], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_lock_refuses_a_second_process_until_released(tmp_path):
    output_dir = str(tmp_path / "out")
    holder = start_holder(output_dir)
    try:
        answer = try_lock_elsewhere(output_dir)
        assert answer.startswith("refused:") and f"(pid {holder.pid})" in answer
        assert "another neuronperf run" in answer
        # In this process too: flock belongs to the open file, not the process.
        with pytest.raises(OutputDirLocked, match=f"pid {holder.pid}"):
            OutputDirLock(output_dir).acquire()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert try_lock_elsewhere(output_dir) == "acquired"
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_freed_when_the_holder_is_killed(tmp_path):
    output_dir = str(tmp_path / "out")
    holder = start_holder(output_dir)
    assert try_lock_elsewhere(output_dir).startswith("refused:")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert try_lock_elsewhere(output_dir) == "acquired"
    with OutputDirLock(output_dir) as lock:
        assert lock.held
        info = json.loads(Path(lock.path).read_text())
        assert info == {"format": 1, "pid": os.getpid(), "since": info["since"]}
    assert not lock.held


# ---- raw samples -----------------------------------------------------------------------------


def sample_measurement():
    workers = (
        WorkerSamples(0, 0, start_ns=(10, 20, 30), latency_ns=(5, 6, 7), infer_ns_total=15),
        WorkerSamples(1, 1, start_ns=(2**62, 2**62 + 1), latency_ns=(8, 9), preprocess_ns_total=3),
    )
    copies = (CopyStats(0, 100, 12.5, 3.0, 90.0, 2**31, 1.5), CopyStats(1, 101, 13.0, 3.5, late_ns=7))
    return Measurement("ok", window_start_ns=5, window_end_ns=2**62 + 100, workers=workers, copies=copies)


def _as_written_by_workers(folder, measurement):
    """Write each copy's file as its worker would."""
    for copy_idx in sorted({w.copy_idx for w in measurement.workers}):
        threads = [w for w in measurement.workers if w.copy_idx == copy_idx]
        write_copy_samples(
            copy_samples_path(folder, copy_idx),
            [np.asarray(w.start_ns, dtype=np.int64) for w in threads],
            [np.asarray(w.latency_ns, dtype=np.int64) for w in threads],
        )


def _same(a, b):
    assert (a.status, a.error, a.window_start_ns, a.window_end_ns, a.copies) == (b.status, b.error, b.window_start_ns, b.window_end_ns, b.copies)
    assert len(a.workers) == len(b.workers)
    for x, y in zip(a.workers, b.workers):
        assert (x.copy_idx, x.thread_idx, x.infer_ns_total, x.preprocess_ns_total) == (y.copy_idx, y.thread_idx, y.infer_ns_total, y.preprocess_ns_total)
        assert list(x.start_ns) == list(y.start_ns) and list(x.latency_ns) == list(y.latency_ns)


def test_samples_round_trip_exactly_with_every_repeat(tmp_path):
    relpath = samples_relpath("mlp-bs1-p1-m2-w1", "0123456789abcdef")
    assert relpath == os.path.join("samples", "mlp-bs1-p1-m2-w1-01234567")
    folder = str(tmp_path / relpath)
    first, failed = sample_measurement(), Measurement("error", error="boom")
    for r, m in enumerate((first, first)):
        os.makedirs(repeat_dir(folder, r))
        _as_written_by_workers(repeat_dir(folder, r), m)
    write_samples_header(folder, "mlp-bs1-p1-m2-w1", "0123456789abcdef", [first, first, failed])
    repeats = load_repeats(folder)
    assert len(repeats) == 3
    _same(repeats[0], first)
    _same(repeats[1], first)
    assert repeats[2].status == "error" and repeats[2].error == "boom" and repeats[2].workers == ()
    _same(load_samples(folder), first)
    assert not [n for n in os.listdir(folder) if ".tmp" in n]  # no temp file left


def test_samples_of_format_1_still_load(tmp_path):
    m = sample_measurement()
    header = {"format": 1, "id": "x", "key": "k", "status": "ok", "error": None, "window_start_ns": 5,
              "window_end_ns": m.window_end_ns,
              "workers": [{"copy_idx": w.copy_idx, "thread_idx": w.thread_idx, "infer_ns_total": w.infer_ns_total,
                           "preprocess_ns_total": w.preprocess_ns_total, "postprocess_ns_total": 0} for w in m.workers],
              "copies": [{"copy_idx": 0, "pid": 100, "load_ms": 12.5, "warmup_ms": 3.0, "cpu_avg_percent": 90.0,
                          "peak_rss_bytes": 2**31, "mem_avg_percent": 1.5},
                         {"copy_idx": 1, "pid": 101, "load_ms": 13.0, "warmup_ms": 3.5, "cpu_avg_percent": None,
                          "peak_rss_bytes": None, "mem_avg_percent": None}]}
    arrays = {"header": np.array(json.dumps(header))}
    for i, w in enumerate(m.workers):
        arrays[f"start_ns_{i}"] = np.asarray(w.start_ns, dtype=np.int64)
        arrays[f"latency_ns_{i}"] = np.asarray(w.latency_ns, dtype=np.int64)
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    old = load_samples(str(tmp_path / "old.npz"))
    assert [list(w.start_ns) for w in old.workers] == [[10, 20, 30], [2**62, 2**62 + 1]]
    assert old.copies[0].load_ms == 12.5 and old.copies[1].late_ns == 0


def test_samples_errors(tmp_path):
    with pytest.raises(JournalError, match="samples not found"):
        load_samples(str(tmp_path / "missing"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(JournalError, match="not a readable neuronperf samples file"):
        load_samples(str(tmp_path / "bad.npz"))
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "entry.json").write_text(json.dumps({"format": 99, "repeats": []}))
    with pytest.raises(JournalError, match="written by a newer neuronperf"):
        load_samples(str(tmp_path / "newer"))
    (tmp_path / "torn").mkdir()
    write_samples_header(str(tmp_path / "torn"), "x", "k", [sample_measurement()])  # copy files missing
    with pytest.raises(JournalError, match="not a readable neuronperf samples folder"):
        load_repeats(str(tmp_path / "torn"))


def test_unwritable_output_dir_is_a_journal_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(OutputWriteFailed, match="journal.jsonl: cannot be written"):
        Journal(str(not_a_dir)).record_run("r", "a", {"status": "ok"})
    with pytest.raises(JournalError, match="cannot create the lock file"):
        OutputDirLock(str(not_a_dir)).acquire()


def test_journal_survives_a_writer_killed_mid_stream(tmp_path):
    writer = textwrap.dedent(
        """
        import sys
        from neuronperf.results.journal import Journal
        journal = Journal(sys.argv[1])
        i = 0
        while True:
            journal.record_run(f"r{i}", f"e{i}", {"status": "ok", "padding": "x" * 5000, "i": i})
            i += 1
        """
    )
    child = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)])
    path = tmp_path / "journal.jsonl"
    try:
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up and (not path.exists() or path.stat().st_size < 100_000):
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    records = Journal(str(tmp_path)).load()
    assert len(records) >= 10
    assert [r["row"]["i"] for r in records] == list(range(len(records)))  # in order, none lost mid-file
    Journal(str(tmp_path)).record_run("after", "x", {"status": "ok"})
    assert Journal(str(tmp_path)).load()[-1]["key"] == "after"
