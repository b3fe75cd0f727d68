"""`neuronperf summary`, `report` and `compare`: answers from the results of a sweep."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Optional


def register(subparsers: Any) -> None:
    """Add `summary`, `report` and `compare`."""
    summary = subparsers.add_parser(
        "summary", help="the entries table and the best configuration (under latency bounds) of a sweep",
        description="Print the table of a sweep's entries, then per model and swept parameter values "
        "the best configuration: highest throughput, and highest (and cheapest) under each --slo bound "
        "and the spec's objectives.",
    )
    summary.add_argument("results", help="an output_dir, a results.json or a results.csv")
    summary.add_argument("--rank-by", metavar="COLUMN",
                         help="also list the entries ranked by COLUMN, best first (e.g. energy_j_per_inf, "
                         "throughput_avg, latency_ms_p99, device_mem_mb_peak)")
    add_answer_arguments(summary)
    summary.set_defaults(handler=_summary)

    report = subparsers.add_parser(
        "report", help="write PNG plots and a self-contained report.html of a sweep (needs the plot extra)",
    )
    report.add_argument("results", help="an output_dir, a results.json or a results.csv")
    report.add_argument("-o", "--output", metavar="DIR", help="where to write (default: OUTPUT_DIR/report)")
    report.add_argument("--rank-by", metavar="COLUMN", help="also rank the entries by COLUMN (e.g. energy_j_per_inf)")
    add_answer_arguments(report)
    report.set_defaults(handler=_report)

    compare = subparsers.add_parser(
        "compare", help="compare two runs entry by entry; mark significant changes beyond a threshold",
        description="Pair the entries of two runs and print the ratios new/old of throughput, p50 and "
        "p99. A change is marked only from independent samples: repeats in fresh processes "
        "(benchmark.repeat: 3 or more on both sides), a t-test per figure (Student's, or Welch's when "
        "the repeat counts differ), Holm-adjusted over "
        "the whole comparison; with fewer repeats only a change beyond 2x is marked.",
    )
    compare.add_argument("old", help="the baseline: an output_dir or a results file")
    compare.add_argument("new", help="the run to judge: an output_dir or a results file")
    compare.add_argument("--threshold", type=_percent, default=0.05, metavar="PCT",
                         help="smallest change of throughput or p50 to mark, in percent (default 5)")
    compare.add_argument("--tail-threshold", type=_percent, default=0.20, metavar="PCT",
                         help="smallest change of p99 to mark, in percent (default 20)")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when any entry is marked REGRESSED (for CI): significant between "
                         "repeats, or beyond 2x from single runs")
    compare.set_defaults(handler=_compare)


def add_answer_arguments(parser: argparse.ArgumentParser) -> None:
    """--slo, --cost-per-hour and --prices (shared with `run`)."""
    parser.add_argument("--slo", action="append", default=[], metavar="BOUND",
                        help="a latency bound such as p99<=20ms or p50<=0.5s (repeatable; any reported percentile)")
    parser.add_argument("--cost-per-hour", type=float, metavar="USD",
                        help="the machine's price per hour, for cost_per_1m_inf (overrides the spec and the price table)")
    parser.add_argument("--prices", metavar="FILE",
                        help="a YAML/JSON file of instance type -> USD per hour (default: $NEURONPERF_PRICES)")


def parse_bounds(texts: Sequence[str], spec_slo: Sequence[Any] = ()) -> tuple:
    """The command line's --slo bounds, then the spec's objectives, each once."""
    from neuronperf.answers import slo

    return slo.merge_bounds([slo.parse_bound(t) for t in texts], slo.bounds_from_columns(spec_slo))


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (e.g. 5 or 2.5)") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 100")
    return value / 100.0


def _stored(path: str) -> tuple[list, tuple, Any]:
    """Rows, bounds of run.json's objectives, and the pricing recorded for the run at ``path``."""
    from neuronperf import results
    from neuronperf.answers.prices import Pricing
    from neuronperf.results import frame

    source = frame.locate(path)
    rows = frame.records(frame.frame_of(frame.read_records(source.path)))
    info = results.read_run_info(source.output_dir) if source.output_dir else None
    slo = tuple(((info or {}).get("objectives") or {}).get("slo", {}).items())
    pricing = Pricing.from_dict((info or {}).get("pricing") or {})
    return rows, slo, pricing


def _answers_input(args: argparse.Namespace) -> tuple[list, tuple, Any]:
    from neuronperf.answers import prices

    rows, stored_slo, pricing = _stored(args.results)
    bounds = parse_bounds(args.slo, stored_slo)
    if args.cost_per_hour is not None or args.prices:
        pricing = prices.resolve_pricing(
            pricing.instance_type, args.cost_per_hour, args.prices, explicit_source="--cost-per-hour",
        )
        rows = [prices.apply_pricing(r, pricing) for r in rows]
    return rows, bounds, pricing


def _summary(args: argparse.Namespace) -> int:
    from neuronperf import results
    from neuronperf.answers.slo import Objective, check_rank_column
    from neuronperf.answers.summary import render
    from neuronperf.results import frame

    if args.rank_by is not None:
        check_rank_column(args.rank_by)  # before reading anything
    rows, bounds, pricing = _answers_input(args)
    # The objective the run was for (objectives.maximize), as run.json recorded it.
    output_dir = frame.locate(args.results).output_dir
    info = (results.read_run_info(output_dir) if output_dir else None) or {}
    objective = Objective.parse(str((info.get("objectives") or {}).get("maximize") or "throughput_avg"))
    print(render(rows, bounds, pricing, rank_by=args.rank_by, objective=objective))
    return 0


def _report(args: argparse.Namespace) -> int:
    from neuronperf.answers.report import require_matplotlib, write_report
    from neuronperf.answers.slo import check_rank_column

    require_matplotlib()  # before any reading: say what to install first
    if args.rank_by is not None:
        check_rank_column(args.rank_by)
    _, bounds, pricing = _answers_input(args)
    report = write_report(args.results, args.output, bounds, pricing, rank_by=args.rank_by)
    for line in report.missing:
        print(f"neuronperf report: note: {line}", file=sys.stderr)
    print(f"report: {report.html} ({len(report.images)} images)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from neuronperf.answers.compare import compare_runs

    comparison = compare_runs(args.old, args.new, args.threshold, args.tail_threshold)
    print(format_comparison(comparison))
    return 1 if args.fail_on_regression and comparison.regressions else 0


def format_comparison(comparison: Any) -> str:
    """The comparison table, the entries in one run only, notes, and a closing count."""
    header = ["id", "throughput", "p50", "p99", "verdict", "p thr/p50/p99 (Holm)", "repeats", "method"]
    table = [header]
    for c in comparison.changes:
        table.append([
            c.id, _ratio(c.throughput_ratio), _ratio(c.p50_ratio), _ratio(c.p99_ratio),
            c.verdict.upper() if c.verdict in ("regressed", "improved") else c.verdict,
            f"{_p(c.throughput_p)}/{_p(c.p50_p)}/{_p(c.p99_p)}", f"{c.old_repeats}/{c.new_repeats}",
            c.method + (f" ({c.note})" if c.note else ""),
        ])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    # What the entries ran on that changed (an SDK upgrade changes it for many at once: each
    # distinct change is one line, with how many entries it concerns).
    changes: dict[tuple, list[str]] = {}
    for c in comparison.changes:
        if c.changed:
            changes.setdefault(c.changed, []).append(c.id)
    for changed, ids in changes.items():
        moved = "; ".join(f"{column} {_shown(old)} -> {_shown(new)}" for column, old, new in changed)
        lines.append(f"changed under {len(ids)} {'entry' if len(ids) == 1 else 'entries'} ({ids[0]}{', ...' if len(ids) > 1 else ''}): {moved}")
    for title, rows in (("only in OLD", comparison.only_old), ("only in NEW", comparison.only_new)):
        if rows:
            lines.append(f"{title}: " + ", ".join(str(r.get("id")) for r in rows))
    lines.extend(f"note: {note}" for note in comparison.notes)
    counts = {v: sum(1 for c in comparison.changes if c.verdict == v) for v in ("regressed", "improved", "unchanged", "unknown")}
    lines.append(
        f"{len(comparison.changes)} matched (ratios new/old; marked when significant and beyond "
        f"{comparison.threshold:.0%}, p99 {comparison.tail_threshold:.0%}): {counts['regressed']} regressed, "
        f"{counts['improved']} improved, {counts['unchanged']} unchanged, {counts['unknown']} unknown"
    )
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return "(none)" if value is None or value == "" else str(value)


def _ratio(value: Optional[float]) -> str:
    return "N/A" if value is None else f"{value:.3f}x"


def _p(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2g}"

