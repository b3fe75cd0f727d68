"""Generation (``task: generate``): the figures' definitions on hand-made stamps, then real GPT-2
sweeps whose rows are checked against their own raw token stamps, and the bad inputs of a run."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neuronperf.entries import Measurement, WorkerSamples
from neuronperf.errors import UsageError
from neuronperf.results.samples import load_repeats, samples_relpath
from neuronperf.stats.forward import percentile
from neuronperf.stats.generation import (
    GENERATION_COLUMNS,
    combine_generation,
    generation_stats,
    request_times,
)

MS = 1_000_000
DATA = Path(__file__).parent / "data" / "generation"


def thread(starts, token_times, latencies, copy_idx=0, thread_idx=0):
    return WorkerSamples(copy_idx, thread_idx, start_ns=np.array(starts, dtype=np.int64),
                         latency_ns=np.array(latencies, dtype=np.int64),
                         token_ns=np.array(token_times, dtype=np.int64).ravel())


# ---- the definitions, on stamps made by hand ----------------------------------------------------


@pytest.mark.pure
def test_figures_of_known_stamps():
    # Three requests of 4 tokens, back to back: TTFT 10, 12, 14 ms; 2 ms between tokens, then
    # 1 ms from the last token to the call's return.
    starts, tokens, lats, t = [], [], [], 0
    for ttft in (10, 12, 14):
        stamps = [t + ttft * MS + k * 2 * MS for k in range(4)]
        starts.append(t)
        tokens.append(stamps)
        lats.append(stamps[-1] + MS - t)
        t = stamps[-1] + MS
    m = Measurement("ok", window_start_ns=0, window_end_ns=t, workers=(thread(starts, tokens, lats),))
    times = request_times(m, 4)
    assert list(times.ttft_ns) == [10 * MS, 12 * MS, 14 * MS]
    assert list(times.tpot_ns) == [2 * MS] * 3
    assert list(times.e2e_ns) == [16 * MS, 18 * MS, 20 * MS]
    assert list(times.itl_ns) == [2 * MS] * 9
    row = generation_stats(m, batch_size=2, new_tokens=4)
    assert set(row) == set(GENERATION_COLUMNS)
    assert row["new_tokens"] == 4
    assert row["ttft_ms_p50"] == 12.0 and row["ttft_ms_p90"] == pytest.approx(13.6)
    assert row["tpot_ms_p50"] == row["tpot_ms_p99"] == 2.0
    assert row["itl_ms_p90"] == 2.0
    assert (row["e2e_ms_p50"], row["e2e_ms_p99"]) == (18.0, pytest.approx(19.96))
    # 3 calls of 2 prompts over the thread's window (first start to last return), 4 tokens each.
    window_s = t / 1e9
    assert row["requests_per_s"] == pytest.approx(3 * 2 / window_s, rel=1e-12)
    assert row["output_tokens_per_s"] == pytest.approx(3 * 2 * 4 / window_s, rel=1e-12)


@pytest.mark.pure
def test_ttft_plus_tpot_times_the_rest_is_the_end_to_end_latency():
    rng = np.random.default_rng(0)
    n, starts, tokens, lats, t = 7, [], [], [], 0
    for _ in range(50):
        gaps = rng.integers(1, 5 * MS, size=n)
        stamps = t + np.cumsum(gaps)
        starts.append(t)
        tokens.append(stamps)
        lats.append(int(stamps[-1] - t) + 1000)
        t = int(stamps[-1]) + 1000
    times = request_times(Measurement("ok", workers=(thread(starts, tokens, lats),)), n)
    assert np.allclose(times.ttft_ns + times.tpot_ns * (n - 1), times.e2e_ns, rtol=0, atol=1e-3)


@pytest.mark.pure
def test_one_token_has_no_time_per_output_token():
    m = Measurement("ok", workers=(thread([0, 10 * MS], [[4 * MS], [15 * MS]], [5 * MS, 6 * MS]),))
    row = generation_stats(m, batch_size=1, new_tokens=1)
    assert row["ttft_ms_p50"] == 4.5 and row["e2e_ms_p50"] == 4.5
    assert row["tpot_ms_p50"] is None and row["itl_ms_p50"] is None


@pytest.mark.pure
def test_several_threads_add_their_own_rates():
    a = thread([0, 10 * MS], [[5 * MS, 9 * MS], [15 * MS, 19 * MS]], [10 * MS, 10 * MS], thread_idx=0)
    b = thread([3 * MS], [[10 * MS, 20 * MS]], [20 * MS], copy_idx=1)
    row = generation_stats(Measurement("ok", workers=(a, b)), batch_size=1, new_tokens=2)
    assert row["requests_per_s"] == pytest.approx(2 / 0.020 + 1 / 0.020)
    assert row["output_tokens_per_s"] == pytest.approx(2 * row["requests_per_s"])


@pytest.mark.pure
def test_stamps_that_do_not_match_the_requests_are_refused():
    m = Measurement("ok", workers=(thread([0, 10 * MS], [[1, 2, 3]], [5, 5]),))
    with pytest.raises(UsageError, match="3 token times for 2 requests of 2 tokens"):
        request_times(m, 2)


@pytest.mark.pure
def test_a_failed_measurement_has_empty_figures_and_repeats_take_the_mean():
    failed = generation_stats(Measurement("error", error="boom"), batch_size=1, new_tokens=3)
    assert failed["new_tokens"] == 3 and all(failed[c] is None for c in GENERATION_COLUMNS if c != "new_tokens")
    combined = combine_generation([{"new_tokens": 2, "ttft_ms_p50": v, "tpot_ms_p50": None} for v in (1.0, 5.0, 2.0)])
    assert combined["ttft_ms_p50"] == pytest.approx(8 / 3) and combined["tpot_ms_p50"] is None and combined["new_tokens"] == 2


# ---- real sweeps of a tiny GPT-2 --------------------------------------------------------------------


def write_spec(folder: Path, models: str, sweep: str, duration: float = 0.6) -> Path:
    shutil.copy(DATA / "gen_models.py", folder / "gen_models.py")
    spec = folder / "gen.yaml"
    spec.write_text(textwrap.dedent("""\
        version: 1
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {out}
        models:
        {models}
        sweep: {sweep}
        benchmark: {{duration: {duration}, warmup: {{calls: 2}}, timeout: 120}}
        """).format(out=folder / "out", models=textwrap.indent(textwrap.dedent(models), "  "), sweep=sweep, duration=duration))
    return spec


def rows_of(folder: Path) -> list[dict]:
    return json.loads((folder / "out" / "results.json").read_text())


GPT2 = """\
- name: gpt2
  factory: "gen_models.py:tiny_gpt2"
  task: generate
  generate: {new_tokens: $new_tokens}
  params: {prompt_len: [4, 24], new_tokens: [1, 6]}
  inputs: [{shape: [$prompt_len], dtype: int64, low: 0, high: 100}]
"""


@pytest.mark.slow
def test_a_gpt2_sweep_agrees_with_its_own_token_stamps(tmp_path, cli):
    spec = write_spec(tmp_path, GPT2, "{batch_sizes: [1, 2]}")
    result = cli("run", str(spec))
    assert result.code == 0, result.err + result.out
    assert "Traceback" not in result.err
    rows = rows_of(tmp_path)
    assert len(rows) == 8
    combos = set()
    for row in rows:
        assert row["status"] == "ok", row["error"]
        n, batch = row["new_tokens"], row["batch_size"]
        combos.add((row["prompt_len"], n, batch))
        (m,) = load_repeats(str(tmp_path / "out" / samples_relpath(row["id"], row["key"])))
        (w,) = m.workers
        start, latency = np.asarray(w.start_ns), np.asarray(w.latency_ns)
        tokens = np.asarray(w.token_ns).reshape(start.size, n)
        # Every request made exactly n tokens, in order, inside its own call.
        assert row["total_infs"] == start.size > 0
        assert np.all(tokens[:, 0] > start) and np.all(tokens[:, -1] <= start + latency)
        assert np.all(np.diff(tokens, axis=1) > 0)
        ttft, e2e = tokens[:, 0] - start, tokens[:, -1] - start
        tpot = (tokens[:, -1] - tokens[:, 0]) / (n - 1) if n > 1 else None
        # The row's figures are these stamps' percentiles.
        assert row["ttft_ms_p50"] == pytest.approx(percentile(ttft / MS, 50), rel=1e-9)
        assert row["e2e_ms_p99"] == pytest.approx(percentile(e2e / MS, 99), rel=1e-9)
        if tpot is None:
            assert row["tpot_ms_p50"] is None
        else:
            assert row["tpot_ms_p90"] == pytest.approx(percentile(tpot / MS, 90), rel=1e-9)
            # TTFT + TPOT x (new_tokens - 1) is each request's end-to-end latency.
            assert np.allclose(ttft + tpot * (n - 1), e2e, rtol=0, atol=1.0)
        # Output tokens per second: the tokens counted over the window (one thread: its first
        # request's start to its last request's return).
        window_s = (start[-1] + latency[-1] - start[0]) / 1e9
        assert row["output_tokens_per_s"] == pytest.approx(tokens.size * batch / window_s, rel=1e-9)
        assert row["requests_per_s"] == pytest.approx(row["throughput_avg"], rel=1e-12)
        assert row["e2e_ms_p50"] <= row["latency_ms_p50"]
    assert combos == {(p, n, b) for p in (4, 24) for n in (1, 6) for b in (1, 2)}
    # Longer prompts take longer to the first token (prefill), on the same model and batch.
    by = {(r["prompt_len"], r["new_tokens"], r["batch_size"]): r for r in rows}
    assert by[(24, 6, 2)]["ttft_ms_p50"] > 0 and by[(24, 6, 2)]["tpot_ms_p50"] > 0

    again = cli("run", str(spec))
    assert again.code == 0 and "8 reused" in again.out


@pytest.mark.slow
def test_copies_and_threads_add_up_their_tokens(tmp_path, cli):
    model = GPT2.replace("[4, 24]", "[8]").replace("[1, 6]", "[4]")
    spec = write_spec(tmp_path, model, "{batch_sizes: [1], n_models: [2], workers_per_model: [2]}")
    result = cli("run", str(spec))
    assert result.code == 0, result.err + result.out
    (row,) = rows_of(tmp_path)
    (m,) = load_repeats(str(tmp_path / "out" / samples_relpath(row["id"], row["key"])))
    assert len(m.workers) == 4
    # By hand: over the span in which all four threads were generating, each request counts by
    # the part of its duration inside the span, 4 tokens each.
    spans = [(np.asarray(w.start_ns), np.asarray(w.start_ns) + np.asarray(w.latency_ns)) for w in m.workers]
    first, last = max(int(s[0]) for s, _ in spans), min(int(e[-1]) for _, e in spans)
    requests = 0.0
    for (start, end), w in zip(spans, m.workers):
        assert np.asarray(w.token_ns).size == start.size * 4
        inside = np.clip(np.minimum(end, last) - np.maximum(start, first), 0, None)
        requests += float(np.sum(inside / (end - start)))
    assert row["output_tokens_per_s"] == pytest.approx(requests * 4 / ((last - first) / 1e9), rel=1e-9)


@pytest.mark.slow
def test_models_that_cannot_serve_the_requests_are_rows_with_reasons(tmp_path, cli):
    models = """\
    - name: linear
      factory: "gen_models.py:linear"
      task: generate
      generate: {new_tokens: 4}
      inputs: [{shape: [8], dtype: int64, low: 0, high: 8}]
    - name: early
      factory: "gen_models.py:stops_early"
      task: generate
      generate: {new_tokens: 4}
      inputs: [{shape: [8], dtype: int64, low: 0, high: 8}]
    - name: long
      factory: "gen_models.py:tiny_gpt2"
      kwargs: {n_positions: 16}
      task: generate
      generate: {new_tokens: 8}
      inputs: [{shape: [12], dtype: int64, low: 0, high: 100}]
    - name: vocab
      factory: "gen_models.py:tiny_gpt2"
      task: generate
      generate: {new_tokens: 2}
      inputs: [{shape: [4], dtype: int64, low: 0, high: 5000}]
    """
    spec = write_spec(tmp_path, models, "{batch_sizes: [1]}", duration=0.3)
    result = cli("run", str(spec))
    assert result.code == 1, result.err + result.out
    assert "Traceback" not in result.err + result.out
    reasons = {r["model_name"]: r["error"] for r in rows_of(tmp_path)}
    assert "cannot generate" in reasons["linear"] and "Linear" in reasons["linear"]
    assert "a request generated 3 tokens where generate.new_tokens asks for 4" in reasons["early"]
    assert "prompt of 12 tokens + new_tokens 8 = 20 positions, more than the model's context of 16" in reasons["long"]
    assert "vocabulary has 100 tokens" in reasons["vocab"]
