"""``neuronperf report OUTPUT_DIR``: the pictures of a sweep and one self-contained page.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot, no global state, the Agg
canvas), so tests can check their series; ``write_report`` saves them as PNGs and embeds them
in ``report.html`` with the entries table, the best configurations, the environment and the
warnings. matplotlib is the ``plot`` extra; without it ``require_matplotlib`` says so.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from neuronperf.answers.prices import Pricing
from neuronperf.answers.slo import (
    LatencyBound,
    Row,
    group_rows,
    is_server,
    measured,
    number,
    qualifies,
    served_rate,
)
from neuronperf.answers.summary import (
    SERVER_TABLE_COLUMNS,
    TABLE_COLUMNS,
    answer_lines,
    memory_table,
    ranking_table,
)
from neuronperf.errors import UsageError

#: Figure size in inches and resolution: 8 x 5 in at 100 dpi = 800 x 500 px.
FIGSIZE, DPI = (8.0, 5.0), 100
#: Most points labelled with their id on the Pareto plot (beyond this the labels would overlap).
MAX_LABELS = 40


def require_matplotlib() -> Any:
    """The matplotlib module, or a ``UsageError`` naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("neuronperf report needs matplotlib: pip install 'neuronperf-sweep[plot]'") from None
    matplotlib.use("Agg", force=True)
    return matplotlib


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")


def pareto_front(rows: Sequence[Row]) -> list[Row]:
    """The measured rows that no other row beats on both p99 latency (lower) and throughput
    (higher), in order of rising latency."""
    points = sorted(
        (r for r in measured(rows) if number(r.get("latency_ms_p99")) is not None),
        key=lambda r: (number(r.get("latency_ms_p99")), -(number(r.get("throughput_avg")) or 0.0)),
    )
    front: list[Row] = []
    best = -1.0
    for row in points:
        throughput = number(row.get("throughput_avg")) or 0.0
        if throughput > best:
            front.append(row)
            best = throughput
    return front


def pareto_figure(rows: Sequence[Row]) -> Any:
    """Throughput against p99 latency, every measured entry a labelled point, the Pareto front a
    line (``gid`` "entries" and "pareto" on the artists)."""
    fig = _figure()
    ax = fig.add_subplot()
    points = [r for r in measured(rows) if number(r.get("latency_ms_p99")) is not None]
    xs = [number(r.get("latency_ms_p99")) or 0.0 for r in points]  # points all have a p99
    ys = [number(r.get("throughput_avg")) or 0.0 for r in points]
    scatter = ax.scatter(xs, ys, s=28, color="tab:blue", label="entries", zorder=3)
    scatter.set_gid("entries")
    front = pareto_front(points)
    (line,) = ax.plot(
        [number(r.get("latency_ms_p99")) for r in front], [number(r.get("throughput_avg")) for r in front],
        color="tab:red", marker="o", label="Pareto front", zorder=2,
    )
    line.set_gid("pareto")
    if len(points) <= MAX_LABELS:
        for row, x, y in zip(points, xs, ys):
            ax.annotate(str(row.get("id")), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:  # one slow outlier must not squash the rest
        ax.set_xscale("log")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (inputs/s)")
    ax.set_title("Throughput against p99 latency")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return fig


def batch_figure(label: str, rows: Sequence[Row]) -> Any:
    """Throughput (left) and p50/p99 latency (right) against batch size for one model, one line
    per (n_models, workers_per_model); each line's label is ``m<N> w<W>`` (latency: ``p50``/
    ``p99`` appended)."""
    fig = _figure()
    left, right = fig.subplots(1, 2)
    series: dict[tuple[int, int], list[Row]] = {}
    for row in measured(rows):
        series.setdefault((int(row.get("n_models") or 1), int(row.get("workers_per_model") or 1)), []).append(row)
    for (copies, workers), members in sorted(series.items()):
        members = sorted(members, key=lambda r: number(r.get("batch_size")) or 0)
        xs = [number(r.get("batch_size")) for r in members]
        name = f"m{copies} w{workers}"
        (thr,) = left.plot(xs, [number(r.get("throughput_avg")) for r in members], marker="o", label=name)
        right.plot(xs, [number(r.get("latency_ms_p50")) for r in members], marker="o", color=thr.get_color(), label=f"{name} p50")
        right.plot(xs, [number(r.get("latency_ms_p99")) for r in members], marker="^", linestyle="--", color=thr.get_color(), label=f"{name} p99")
    from matplotlib.ticker import NullLocator, ScalarFormatter

    sizes = sorted({n for n in (number(r.get("batch_size")) for r in measured(rows)) if n is not None})
    for ax, ylabel in ((left, "throughput (inputs/s)"), (right, "latency (ms)")):
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{label}: against batch size")
    return fig


#: Telemetry columns the entries table shows when some row has them.
TELEMETRY_TABLE_COLUMNS = ("device_mem_mb_peak", "device_util_pct_avg", "power_w_avg", "power_w_idle", "energy_j_per_inf", "energy_source")


def memory_figure(rows: Sequence[Row], column: str = "device_mem_mb_peak") -> Any:
    """Peak device memory (``column``) against the number of copies, one line per
    configuration (the entry id without its copies); the lines are labelled like the ids."""
    fig = _figure()
    ax = fig.subplots()
    series: dict[str, list[tuple[float, float]]] = {}
    for row in measured(rows):
        copies, mem = number(row.get("n_models")), number(row.get(column))
        if copies is not None and mem is not None:
            config = str(row.get("id") or "").rsplit("-m", 1)[0] + f"-w{row.get('workers_per_model')}"
            series.setdefault(config, []).append((copies, mem))
    for config, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=config)
    ax.set_xlabel("model copies (n_models)")
    ax.set_ylabel(f"{column} (MB)")
    ax.set_xticks(sorted({p[0] for points in series.values() for p in points}))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Device memory against copies")
    return fig


def _configuration(row: Row) -> str:
    """A server row's configuration without its rate: ``bs4 m1 w2 qd1`` (one line per curve)."""
    delay = number(row.get("max_queue_delay_ms")) or 0.0
    return (f"bs{row.get('batch_size')} p{row.get('pipeline_size')} m{row.get('n_models')} "
            f"w{row.get('workers_per_model')} qd{delay:g}")


def rate_figure(label: str, rows: Sequence[Row], bounds: Sequence[LatencyBound] = (),
                probes: Optional[Mapping[str, Sequence[Any]]] = None) -> Any:
    """The server scenario's hockey stick: the bound's latency percentile (p99 without a bound)
    against the offered rate, one line per configuration (``gid`` "rate <configuration>"). A
    searched entry's probes (``probes``: its key -> ``rate_search.Probe``) are its points, passing
    ones filled and failing ones hollow, with its answer starred (``gid`` "max <configuration>");
    an invalid row (overloaded, or too much harness lag) is crossed (``gid`` "invalid"); each
    bound is a dashed horizontal line (``gid`` "slo")."""
    fig = _figure()
    ax = fig.add_subplot()
    column = bounds[0].column if bounds else "latency_ms_p99"
    series: dict[str, list[Row]] = {}
    for row in measured(rows):
        if is_server(row):
            series.setdefault(_configuration(row), []).append(row)
    for name, members in sorted(series.items()):
        points: list[tuple[float, float, Optional[bool]]] = []
        for row in members:
            found = (probes or {}).get(str(row.get("key"))) if row.get("probes") is not None else None
            if found:
                points += [(p.rate, p.value_ms, p.passed) for p in found if p.value_ms is not None]
            elif number(row.get("rate_target")) is not None and number(row.get(column)) is not None:
                points.append((number(row.get("rate_target")) or 0.0, number(row.get(column)) or 0.0, None))
        points.sort()
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name,
                          linestyle="-" if all(p[2] is None for p in points) else ":")
        line.set_gid(f"rate {name}")
        invalid = [(number(r.get("rate_target")), number(r.get(column))) for r in members
                   if r.get("valid") is False and r.get("probes") is None and number(r.get(column)) is not None]
        if invalid:
            ax.scatter([x for x, _ in invalid], [y for _, y in invalid], marker="x", s=70, color="black",
                       zorder=4).set_gid("invalid")
        failed = [p for p in points if p[2] is False]
        if failed:
            ax.scatter([p[0] for p in failed], [p[1] for p in failed], s=40, facecolors="white",
                       edgecolors=line.get_color(), zorder=3)
        for row in members:
            best = served_rate(row) if row.get("probes") is not None else None
            value = number(row.get(column))
            if best is not None and value is not None:
                star = ax.scatter([best], [value], marker="*", s=160, color=line.get_color(), zorder=4)
                star.set_gid(f"max {name}")
    for bound in bounds:
        ax.axhline(bound.limit_ms, color="tab:red", linestyle="--", label=f"SLO {bound}").set_gid("slo")
    values = [p for line in ax.get_lines() for p in line.get_ydata() if p > 0]
    if values and max(values) / min(values) > 20:  # the knee makes the tail huge: show it in log scale
        ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel(f"{column.replace('_ms_', ' ')} (ms, from the scheduled arrival)")
    notes = (["x: invalid, see invalid_reason"] if any(c.get_gid() == "invalid" for c in ax.collections) else [])
    notes += ["hollow: probe failed, star: max rate under the SLO"] if probes and any(r.get("probes") for r in rows) else []
    ax.set_title(f"{label}: latency against rate" + (f" ({'; '.join(notes)})" if notes else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def histogram_figure(row: Row, latencies_ms: Sequence[float]) -> Any:
    """The latency histogram of one entry's raw samples, p50 and p99 marked."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(latencies_ms, bins=min(60, max(10, len(latencies_ms) // 20)), color="tab:blue", alpha=0.8)
    for column, style in (("latency_ms_p50", "-"), ("latency_ms_p99", "--")):
        value = number(row.get(column))
        if value is not None:
            ax.axvline(value, color="tab:red", linestyle=style, label=f"{column.rsplit('_', 1)[1]} {value:.3f} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("calls")
    ax.set_title(f"Latency of {row.get('id')} ({len(latencies_ms)} calls)")
    ax.legend()
    return fig


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote."""

    html: str
    images: tuple[str, ...]
    missing: tuple[str, ...]


def write_report(
    output_dir: str,
    dest: Optional[str] = None,
    bounds: Sequence[LatencyBound] = (),
    pricing: Optional[Pricing] = None,
    rank_by: Optional[str] = None,
) -> Report:
    """Write the PNGs and ``report.html`` of ``output_dir`` into ``dest`` (default:
    ``output_dir/report``); return their paths and what could not be shown. Rows with device
    telemetry add a device memory figure and table and a ranking by energy per inference;
    ``rank_by`` adds a ranking by that column."""
    require_matplotlib()
    from neuronperf import results
    from neuronperf.results import frame

    source = frame.locate(output_dir)
    rows = frame.records(frame.frame_of(frame.read_records(source.path)))
    run_dir = source.output_dir or os.path.dirname(os.path.abspath(source.path))
    dest = dest or os.path.join(run_dir, "report")
    os.makedirs(dest, exist_ok=True)
    info = results.read_run_info(run_dir) if source.output_dir else None
    missing: list[str] = []
    images: list[tuple[str, str, bytes]] = []  # (file name, caption, PNG)

    ok = measured(rows)
    skipped = [r for r in rows if r.get("status") == "skipped"]
    failed = [r for r in rows if r.get("status") in ("error", "timeout")]
    if not rows:
        missing.append("the results hold no entries")
    elif not ok:
        missing.append(f"no entry has been measured yet ({len(skipped)} of {len(rows)} not measured, {len(failed)} failed): no plots")
    elif skipped:
        missing.append(f"{len(skipped)} of {len(rows)} entries are not measured yet (shown as skipped); the plots show the {len(ok)} measured")
    if ok:
        images.append(("pareto.png", "Throughput against p99 latency; the red line is the Pareto front", png_bytes(pareto_figure(rows))))
        probes = _probes(run_dir) if source.output_dir and any(is_server(r) for r in ok) else {}
        for group, members in group_rows(rows).items():
            if [r for r in measured(members) if not is_server(r)]:
                name = f"batch-{_slug(group.label)}.png"
                images.append((name, f"{group.label}: throughput and latency against batch size",
                               png_bytes(batch_figure(group.label, [r for r in members if not is_server(r)]))))
            if [r for r in measured(members) if is_server(r)]:
                name = f"rate-{_slug(group.label)}.png"
                images.append((name, f"{group.label}: latency against request rate; the dashed line is the SLO",
                               png_bytes(rate_figure(group.label, members, bounds, probes))))
        # The best entry: the highest throughput (served rate) under every bound (or overall when none meets them).
        meeting = [r for r in ok if qualifies(r, bounds)]
        best = max(meeting or ok, key=lambda r: served_rate(r) or 0.0)
        latencies = _latencies(run_dir, best) if source.output_dir else None
        if latencies:
            images.append(("histogram.png", f"Latency histogram of {best.get('id')}, the best entry", png_bytes(histogram_figure(best, latencies))))
        else:
            missing.append(f"no raw samples for {best.get('id')}: no latency histogram")
        mem_column = next((c for c in ("device_mem_mb_peak", "device_mem_mb_nvml_peak")
                           if any(number(r.get(c)) is not None for r in ok)), None)
        if mem_column is not None:
            images.append(("device-memory.png", f"Device memory ({mem_column}) against the number of copies",
                           png_bytes(memory_figure(rows, mem_column))))
    telemetry: list[str] = []
    memory = memory_table(rows)
    if memory is not None:
        telemetry.append(memory)
    if any(number(r.get("energy_j_per_inf")) is not None for r in ok):
        telemetry.append(ranking_table(rows, "energy_j_per_inf"))
    if rank_by is not None and rank_by != "energy_j_per_inf":
        telemetry.append(ranking_table(rows, rank_by))
    for name, _, data in images:
        with open(os.path.join(dest, name), "wb") as f:
            f.write(data)
    page = _page(rows, images, answer_lines(rows, bounds, pricing), info, missing, telemetry)
    page_path = os.path.join(dest, "report.html")
    with open(page_path, "w", encoding="utf-8") as f:
        f.write(page)
    return Report(page_path, tuple(os.path.join(dest, n) for n, _, _ in images), tuple(missing))


def _latencies(run_dir: str, row: Row) -> Optional[list[float]]:
    from neuronperf.answers.compare import load_side
    from neuronperf.stats.serving import call_records, request_times

    for side in load_side(run_dir):
        if side.row.get("key") == row.get("key") and side.repeats:
            if all(m.serving is not None for m in side.repeats):  # each request, from its scheduled arrival
                return [lat / 1e6 for m in side.repeats if m.serving is not None
                        for lat in request_times(call_records(m), m.serving).latency_ns.tolist()]
            return [lat / 1e6 for m in side.repeats for w in m.workers for lat in w.latency_ns]
    return None


def _probes(run_dir: str) -> dict[str, list[Any]]:
    """Each searched entry's probes (by its row key), from its samples folder."""
    from neuronperf.answers.compare import samples_files
    from neuronperf.measure.peak import read_probes

    return {key: found for key, relpath in samples_files(run_dir).items()
            if (found := read_probes(os.path.join(run_dir, relpath)))}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "model"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.status-skipped td { color: #888; font-style: italic; }
tr.status-error td, tr.status-timeout td { background: #fdecea; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.75em; overflow-x: auto; }
.missing { color: #a40; }
"""


def _page(
    rows: Sequence[Row], images: Sequence[tuple[str, str, bytes]], answers: Sequence[str],
    info: Optional[Mapping[str, Any]], missing: Sequence[str], rankings: Sequence[str] = (),
) -> str:
    e = html.escape
    name = (info or {}).get("name") or "sweep"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>neuronperf report: {e(str(name))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>neuronperf report: {e(str(name))}</h1>",
        f"<p>{len(rows)} entries; written {e(datetime.datetime.now().isoformat(timespec='seconds'))}.</p>",
    ]
    if missing:
        parts.append("<h2>What is missing</h2><ul>" + "".join(f'<li class="missing">{e(m)}</li>' for m in missing) + "</ul>")
    parts.append("<h2>Best configurations</h2><pre>" + e("\n".join(answers)) + "</pre>")
    if rankings:
        parts.append('<h2>Device memory and energy</h2><pre id="telemetry">' + e("\n\n".join(rankings)) + "</pre>")
    for file_name, caption, data in images:
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{e(caption)}" data-file="{e(file_name)}"><figcaption>{e(caption)}</figcaption></figure>')
    columns = list(TABLE_COLUMNS[:-1]) + ["latency_ms_p90", "throughput_peak", "cost_per_1m_inf", "input_shapes", "error"]
    columns += [c for c in TELEMETRY_TABLE_COLUMNS if any(r.get(c) not in (None, "") for r in rows)]
    if any(is_server(r) for r in rows):
        columns += [c for c in SERVER_TABLE_COLUMNS if c not in columns] + ["invalid_reason"]
    parts.append('<h2>Entries</h2><table id="entries"><thead><tr>' + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead><tbody>")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            is_num = number(value) is not None
            text = "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
            cells.append(f'<td class="num">{e(text)}</td>' if is_num else f"<td>{e(text)}</td>")
        status = _slug(str(row.get("status")))
        parts.append(f'<tr class="entry status-{status}">' + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    warnings = [(r.get("id"), r.get("warning")) for r in rows if r.get("warning")]
    warnings += [(r.get("id"), f"{r.get('status')}: {r.get('error')}") for r in rows if r.get("status") in ("error", "timeout")]
    parts.append("<h2>Warnings</h2>")
    if warnings:
        parts.append("<ul>" + "".join(f"<li><b>{e(str(i))}</b>: {e(str(w))}</li>" for i, w in warnings) + "</ul>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Environment</h2>")
    if info:
        parts.append("<pre>" + e(json.dumps(info.get("environment"), indent=2, sort_keys=True)) + "</pre>")
    else:
        parts.append('<p class="missing">No run.json beside these results: the environment is unknown.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
