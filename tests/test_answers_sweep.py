"""`run`, `summary`, `report` and `compare` on real small sweeps (a torch model that sleeps)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "sweep"


def sleepy_spec(folder: Path, sleep_ms: float = 5.0, *, out: str = "out", axes: str = "", duration: float = 1.0,
                extra: str = "", repeat: int = 1) -> Path:
    """A spec of the eager sleepy model (``sweep_models.py:sleepy``) with output_dir ``folder/out``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "sweep_models.py", folder / "sweep_models.py")
    spec = folder / "sweep.yaml"
    lines = [
        "version: 1", "name: sleepy", "framework: torch", "device_type: cpu", "compiler: eager",
        f"output_dir: {folder / out}", *extra.splitlines(),
        "models:",
        "  - name: sleepy",
        '    factory: "sweep_models.py:sleepy"',
        f"    kwargs: {{features: 8, sleep_ms: {sleep_ms}}}",
        "    inputs: [{shape: [8]}]",
        "sweep:", *(f"  {a}" for a in (axes or "batch_sizes: 1").splitlines()),
        # "timeout: 60}" ends the line: other tests add keys by replacing it.
        f"benchmark: {{duration: {duration}, warmup: {{calls: 3}}, repeat: {repeat}, timeout: 60}}",
    ]
    spec.write_text("\n".join(lines) + "\n")
    return spec


def run_in_process(*argv: str):
    """The ``cli`` fixture's call, usable from a module-scoped fixture."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from conftest import CliResult

    from neuronperf.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One real sweep of 4 entries, run once for the tests of this module."""
    folder = tmp_path_factory.mktemp("answers")
    spec = sleepy_spec(
        folder, axes="batch_sizes: [1, 4]\nn_models: [1, max]\nworkers_per_model: [1, 2]",
        extra="instance_type: inf2.xlarge\nobjectives: {slo: {latency_ms_p99: 5.6}}",
    )
    result = run_in_process("run", str(spec), "--slo", "p50<=1s")
    assert result.code == 0, result.err + result.out
    return folder / "out", result


def test_run_ends_with_the_table_and_the_best_configurations(sweep):
    out, result = sweep
    rows = json.loads((out / "results.json").read_text())
    # n_models: [1, max] is [1] on a CPU (max is 1 there), so 2 batch sizes x 2 threads.
    assert [r["id"] for r in rows] == [
        "sleepy-bs1-p1-m1-w1", "sleepy-bs1-p1-m1-w2", "sleepy-bs4-p1-m1-w1", "sleepy-bs4-p1-m1-w2",
    ]
    for r in rows:
        assert r["instance_type"] == "inf2.xlarge"
        assert r["cost_per_1m_inf"] == pytest.approx(0.7582 * 1e6 / (3600 * r["throughput_avg"]))
    table = result.out.splitlines()
    assert any(line.startswith("id ") and "throughput_avg" in line for line in table)
    assert sum(1 for line in table if line.startswith("sleepy-bs")) == 4
    best = max(rows, key=lambda r: r["throughput_avg"])
    assert f"  highest throughput: {best['id']} at {best['throughput_avg']:.1f} inf/s" in result.out
    assert "  under p50<=1000ms: " in result.out
    assert "  under p99<=5.6ms: " in result.out  # from the spec's objectives
    assert "(costs at inf2.xlarge, $0.7582/hour from built-in table)" in result.out
    # Progress: counts and an ETA on each plain line (stderr is not a terminal here).
    assert "  [2/4] sleepy-bs1-p1-m1-w2 ... (1 done, 0 failed, 3 to do; about " in result.err


def test_summary_of_the_output_dir_repeats_the_answers(sweep, cli):
    out, run = sweep
    result = cli("summary", str(out), "--slo", "p50<=1s")
    assert result.code == 0, result.err
    assert result.out.strip() in run.out  # the same table and answers as at the end of the run
    with_cost = cli("summary", str(out / "results.csv"), "--cost-per-hour", "3.6")
    assert with_cost.code == 0, with_cost.err
    assert "$3.6/hour from --cost-per-hour" in with_cost.out
    free = cli("summary", str(out), "--cost-per-hour", "0")  # a price of 0 is a price, not "none"
    assert free.code == 0, free.err
    assert "$0/hour from --cost-per-hour" in free.out and "$0 per 1M inferences" in free.out


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_writes_valid_pngs_and_a_page(sweep, cli, tmp_path):
    import matplotlib.image

    out, _ = sweep
    dest = tmp_path / "rep"
    result = cli("report", str(out), "-o", str(dest))
    assert result.code == 0, result.err
    names = sorted(p.name for p in dest.glob("*.png"))
    assert names == ["batch-sleepy.png", "histogram.png", "pareto.png"]
    for name in names:
        assert _png_size(dest / name) == (800, 500)
        pixels = matplotlib.image.imread(dest / name)
        assert pixels.shape[:2] == (500, 800) and pixels.std() > 0  # decodes, and is not blank
    page = (dest / "report.html").read_text()
    assert page.count('<tr class="entry') == 4
    assert page.count("data:image/png;base64,") == 3
    assert "inf2.xlarge" in page and "Best configurations" in page


def test_figures_hold_the_rows(sweep):
    from neuronperf.answers.report import (
        batch_figure,
        pareto_figure,
        pareto_front,
        require_matplotlib,
    )
    from neuronperf.results import frame

    require_matplotlib()
    out, _ = sweep
    rows = frame.records(frame.load(str(out)))
    fig = pareto_figure(rows)
    ax = fig.axes[0]
    (scatter,) = [c for c in ax.collections if c.get_gid() == "entries"]
    points = sorted(map(tuple, scatter.get_offsets().tolist()))
    assert points == sorted((r["latency_ms_p99"], r["throughput_avg"]) for r in rows)
    (front,) = [line for line in ax.lines if line.get_gid() == "pareto"]
    expected = pareto_front(rows)
    assert list(front.get_xdata()) == [r["latency_ms_p99"] for r in expected]
    # No point off the front beats a front point on both axes.
    for r in rows:
        assert not any(
            o["latency_ms_p99"] < r["latency_ms_p99"] and o["throughput_avg"] > r["throughput_avg"] for o in expected
        ) or r not in expected
    assert sorted(t.get_text() for t in ax.texts) == sorted(r["id"] for r in rows)
    left, right = batch_figure("sleepy", rows).axes
    assert [line.get_label() for line in left.lines] == ["m1 w1", "m1 w2"]
    assert [line.get_label() for line in right.lines] == ["m1 w1 p50", "m1 w1 p99", "m1 w2 p50", "m1 w2 p99"]
    w2 = [r for r in rows if r["workers_per_model"] == 2]
    assert list(left.lines[1].get_ydata()) == [r["throughput_avg"] for r in sorted(w2, key=lambda r: r["batch_size"])]


def test_report_of_a_half_finished_run_says_what_is_missing(sweep, cli, tmp_path):
    out, _ = sweep
    half = tmp_path / "half"
    shutil.copytree(out, half, ignore=shutil.ignore_patterns("report", ".lock"))
    rows = json.loads((half / "results.json").read_text())
    for r in rows[2:]:  # what an interrupted sweep leaves: the rest not measured yet
        r.update(status="skipped", error="not measured yet", throughput_avg=None, latency_ms_p50=None, latency_ms_p99=None)
    (half / "results.json").write_text(json.dumps(rows))
    result = cli("report", str(half))
    assert result.code == 0, result.err
    assert "2 of 4 entries are not measured yet (shown as skipped)" in result.err
    page = (half / "report" / "report.html").read_text()
    assert page.count('<tr class="entry status-skipped">') == 2
    assert "not measured yet" in page


def test_report_of_an_empty_or_missing_run(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.json").write_text("[]")
    result = cli("report", str(empty))
    assert result.code == 0, result.err
    assert "the results hold no entries" in (empty / "report" / "report.html").read_text()
    nothing = cli("report", str(tmp_path / "nothing"))
    assert nothing.code == 2 and len(nothing.err.splitlines()) == 1 and "Traceback" not in nothing.err


def test_compare_of_a_folder_without_results_is_one_line(sweep, cli, tmp_path):
    out, _ = sweep
    result = cli("compare", str(tmp_path), str(out))
    assert result.code == 2
    assert result.err.strip() == f"neuronperf: error: {tmp_path}: holds no results (results.json or results.csv); run the sweep first, or name a results file"


def test_compare_of_single_runs_judges_nothing_and_says_how_to(sweep, cli):
    """One repeat per side is one sample of the run-to-run variation: not judged, whatever the
    ratios, and --fail-on-regression does not fail on it (short of a change beyond 2x)."""
    out, _ = sweep
    result = cli("compare", str(out), str(out), "--fail-on-regression")
    assert result.code == 0, result.out + result.err
    lines = [x for x in result.out.splitlines() if x.startswith("sleepy-bs")]
    assert len(lines) == 4
    for line in lines:
        assert "1.000x" in line and " unknown " in line and "rerun both with repeat: 3" in line
    assert "note: 4 entries not judged" in result.out
    assert "0 regressed, 0 improved, 0 unchanged, 4 unknown" in result.out


def test_a_planted_slowdown_is_flagged_and_a_rerun_is_not(tmp_path, cli):
    """Three repeats a side, each in fresh processes: 20 ms against 24 ms per call (a 17% drop
    in throughput) is flagged and exits 1 with --fail-on-regression. A rerun of the 20 ms model
    is judged unchanged; a rerun while another process keeps a core busy is not judged, by
    construction: its rows record a core of other processes' work that the baseline's do not, so
    the pair is left 'unknown' (method load), whatever the load did to it. (The slices of one
    run, which the compare tested before, flagged such a rerun.)

    The model ticks on a clock (``sweep_models.py:clocked``) rather than sleeping 20 ms: a
    sleep's overshoot moves with the machine's load, so a plain sleep measured at two moments is
    not the same model twice. On the clock, throughput is one call per period and the p50 the
    period (less the loop's step between calls), whatever the load, so a rerun is the same model
    twice and the planted change is exactly 20/24 in throughput."""
    from measuring import BusyProcess

    def run(folder: Path, period_ms: float) -> Path:
        spec = sleepy_spec(folder, period_ms, duration=1.0, repeat=3)
        spec.write_text(spec.read_text().replace("sweep_models.py:sleepy", "sweep_models.py:clocked")
                        .replace("sleep_ms:", "period_ms:"))
        result = cli("run", str(spec), "-q")
        assert result.code == 0, result.err + result.out
        return folder / "out"

    base = run(tmp_path / "base", 20.0)
    slow = run(tmp_path / "slow", 24.0)
    flagged = cli("compare", str(base), str(slow), "--fail-on-regression")
    assert flagged.code == 1, flagged.out + flagged.err
    line = next(x for x in flagged.out.splitlines() if x.startswith("sleepy-bs1-p1-m1-w1"))
    assert "REGRESSED" in line and "repeats" in line and " 3/3 " in line
    ratio = float(line.split()[1].rstrip("x"))
    assert 0.78 < ratio < 0.90
    rerun = run(tmp_path / "rerun", 20.0)
    same = cli("compare", str(base), str(rerun), "--fail-on-regression")
    assert same.code == 0, same.out
    assert "0 regressed, 0 improved" in same.out, same.out
    with BusyProcess():
        again = run(tmp_path / "again", 20.0)
    same = cli("compare", str(base), str(again), "--fail-on-regression")
    assert same.code == 0, same.out
    assert "0 regressed, 0 improved" in same.out, same.out
    assert " unknown " in same.out and "load (OLD ran beside" in same.out, same.out
