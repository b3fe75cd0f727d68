"""`neuronperf run`, `compile` and `status`: the sweep commands."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

from neuronperf.cli.progress import SweepProgress
from neuronperf.compilation.jobs import CompileResult
from neuronperf.entries import CompileEntry, Plan, RunEntry
from neuronperf.sweep.driver import Observer, SweepOptions, SweepSummary, run_sweep
from neuronperf.sweep.status import sweep_report


def register(subparsers: Any) -> None:
    """Add `run`, `compile` and `status`."""
    run = subparsers.add_parser(
        "run", help="compile and benchmark every entry of a sweep spec (a rerun resumes)",
        description="Plan the spec, compile the artifacts, benchmark every run entry and write "
        "results.csv/results.json into output_dir. Rerunning the same spec resumes: finished "
        "entries are reused, failed ones are retried (unless --keep-failed).",
    )
    _add_sweep_arguments(run)
    run.add_argument("--executor", choices=("local", "ray"), default=None,
                     help="where entries run: local (this machine, one at a time) or ray (the nodes "
                     "of a Ray cluster, several at once); default: the spec's executor")
    run.add_argument("--address", metavar="ADDR", default=None,
                     help="the Ray cluster to use (host:port, ray://host:port or auto); default: the "
                     "spec's ray.address, else a local Ray instance started for the run")
    from neuronperf.cli.answer_commands import add_answer_arguments

    add_answer_arguments(run)
    run.set_defaults(handler=_run)

    comp = subparsers.add_parser(
        "compile", help="compile the artifacts of a sweep spec and write its model index",
    )
    _add_sweep_arguments(comp)
    comp.set_defaults(handler=_compile)

    status = subparsers.add_parser(
        "status", help="show each planned entry as done, failed or to do, without running anything",
    )
    status.add_argument("spec", help="the sweep spec (YAML)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the sweep spec (YAML)")
    parser.add_argument("--fresh", action="store_true",
                        help="start over: remove what earlier runs wrote into output_dir")
    parser.add_argument("--keep-failed", action="store_true",
                        help="keep the recorded failures of earlier runs instead of retrying them")
    parser.add_argument("--allow-env-mismatch", action="store_true",
                        help="accept output_dir results from another machine or toolchain")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")


def _options(args: argparse.Namespace, compile_only: bool) -> SweepOptions:
    return SweepOptions(
        fresh=args.fresh, retry_failed=not args.keep_failed,
        allow_env_mismatch=args.allow_env_mismatch, compile_only=compile_only,
        cost_per_hour=getattr(args, "cost_per_hour", None), price_file=getattr(args, "prices", None),
        executor=getattr(args, "executor", None), address=getattr(args, "address", None),
    )


def _run(args: argparse.Namespace) -> int:
    return _sweep(args, compile_only=False)


def _compile(args: argparse.Namespace) -> int:
    return _sweep(args, compile_only=True)


def _sweep(args: argparse.Namespace, compile_only: bool) -> int:
    from neuronperf.cli.answer_commands import parse_bounds

    cli_bounds = parse_bounds(getattr(args, "slo", []))  # a malformed --slo stops before any work
    printer = ProgressPrinter(quiet=args.quiet, compile_only=compile_only, live=sys.stderr.isatty())
    # SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: stop cleanly, keep results.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        summary = run_sweep(args.spec, _options(args, compile_only), printer)
    finally:
        signal.signal(signal.SIGTERM, previous)
        printer.close()
        if "neuronperf.measure.supervisor" in sys.modules:  # workers were started: their server is idle now
            sys.modules["neuronperf.measure.supervisor"].stop_forkserver()
    if summary.write_error:
        # One line naming the file, then what finished: the journal kept it for the rerun.
        print(f"neuronperf: error: {summary.write_error}; the sweep stopped, finished entries are "
              "kept: free some space and rerun to go on", file=sys.stderr)
    _print_summary(summary, compile_only, cli_bounds, getattr(args, "cost_per_hour", None), getattr(args, "prices", None))
    return summary.exit_code


def display_path(path: Any) -> str:
    """``path`` as the user can open it from where they stand: relative to the working
    directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == ".." or relative.startswith(".." + os.sep) else relative


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class ProgressPrinter(Observer):
    """One line per finished compile and run entry, on stderr (stdout stays for results).

    On a terminal (``live``), a progress bar under those lines also shows the entry being
    measured and how far the sweep is; in logs and pipes there are only the plain lines.
    """

    def __init__(self, quiet: bool = False, compile_only: bool = False, live: bool = False, clock: Any = time.monotonic):
        self.quiet = quiet
        self.compile_only = compile_only
        self.clock = clock
        self.sweep: Optional[SweepProgress] = None
        self.output_dir: Optional[Path] = None
        self._progress: Any = None
        self._task: Any = None
        if live and not quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            # Redrawn once a second: the bar's thread runs on the cores the measured calls use.
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True, refresh_per_second=1,
            )

    def _say(self, text: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _show(self, description: str, total: Optional[int], completed: int) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(description, total=total)
        self._progress.update(self._task, description=description, total=total, completed=completed)

    def close(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.stop()

    def planned(self, plan: Plan, reused: int, to_run: int) -> None:
        self.output_dir = Path(plan.output_dir).resolve()
        self._say(f"{plan.name}: output_dir {self.output_dir}")
        if self.compile_only:
            self._say(f"{plan.name}: {len(plan.compile_entries)} compile entries")
            return
        total = len(plan.run_entries)
        self.sweep = SweepProgress.for_plan(plan, to_run)
        excluded = f", {plan.n_excluded} excluded" if plan.n_excluded else ""
        if plan.search.strategy != "grid":
            from neuronperf.sweep.searching import describe

            self._say(f"{plan.name}: {describe(plan)}")
            before = f"{reused} of {total} entries measured before; " if reused else ""
            if to_run:
                self._say(f"{plan.name}: {before}measuring {to_run} now, then as the search decides{excluded}")
            else:
                self._say(f"{plan.name}: {before}the search has decided every entry: nothing to measure{excluded}")
        elif reused:
            self._say(f"{plan.name}: {reused} of {total} entries reused; running {to_run}{excluded}")
        else:
            self._say(f"{plan.name}: running {to_run} entries{excluded}")

    def compile_started(self, entry: CompileEntry) -> None:
        self._say(f"  compiling {entry.id} ...")
        self._show(f"compiling {entry.id}", None, 0)

    def compile_finished(self, result: CompileResult) -> None:
        if result.reused:
            self._say(f"  compile {result.entry.id}: cached")
        elif result.ok and result.compile_s is not None:
            self._say(f"  compile {result.entry.id}: ok in {result.compile_s:.1f} s")
        elif not result.ok:
            log = ""
            if result.log_file and self.output_dir is not None:
                log = f" (log: {display_path(self.output_dir / result.log_file)})"
            self._say(f"  compile {result.entry.id}: {result.status.upper()}: {result.error}{log}")

    def run_started(self, entry: RunEntry, position: int, total: int) -> None:
        now = self.clock()
        counts = ""
        if self.sweep is not None:
            self.sweep.started(entry, now)
            counts = f" ({self.sweep.line(now)})"
        self._say(f"  [{position}/{total}] {entry.id} ...{counts}")
        self._show(f"measuring {entry.id}{counts}", total, position - 1)

    def search_round(self, plan: Plan, decision: Any) -> None:
        if self.sweep is not None:
            self.sweep.total += len(decision.pending)
        ruled = sum(1 for why in decision.skipped.values() if " at " in why)
        self._say(f"  search round {decision.rounds}: measuring {len(decision.pending)} more "
                  f"({len(decision.visited)} measured by the search so far, {ruled} ruled out by a bound)")

    def run_finished(self, entry: RunEntry, row: dict) -> None:
        from neuronperf.stats.forward import short_warning

        if self.sweep is not None:
            self.sweep.finished(entry, row, self.clock())
        if row.get("status") == "ok" and row.get("throughput_avg") is not None:
            if row.get("scenario") == "server":
                figures = _served(row)
            elif row.get("ttft_ms_p50") is not None:
                tpot = row.get("tpot_ms_p50")
                figures = (f"{row['output_tokens_per_s']:.1f} output tokens/s, TTFT p50 {row['ttft_ms_p50']:.3f} ms, "
                           + (f"TPOT p50 {tpot:.3f} ms, " if tpot is not None else "")
                           + f"e2e p99 {row['e2e_ms_p99']:.3f} ms")
            else:
                figures = (f"{row['throughput_avg']:.1f} inf/s, "
                           f"p50 {row['latency_ms_p50']:.3f} ms, p99 {row['latency_ms_p99']:.3f} ms")
            self._say(
                f"  {entry.id}: {figures}"
                # One line on the console; the whole text, with its remedies, is in the row.
                + (f"  (warning: {short_warning(row['warning'])}; see results.csv)" if row.get("warning") else "")
            )
        else:
            self._say(f"  {entry.id}: {str(row.get('status')).upper()}: {row.get('error')}")


def _served(row: dict) -> str:
    """A server row in one line: the rate it serves (or searched for) and its latencies."""
    latencies = f"p50 {row['latency_ms_p50']:.3f} ms, p99 {row['latency_ms_p99']:.3f} ms"
    if row.get("probes") is not None:
        found = row.get("max_rate_under_slo")
        head = (f"max {found:.1f} requests/s under the SLO ({row['probes']} probes; {latencies} there)" if found is not None
                else f"no rate met the SLO ({row['probes']} probes; {latencies} at {row['rate_target']:.4g} requests/s)")
    else:
        head = f"served {row['rate_achieved']:.1f} of {row['rate_target']:g} requests/s, {latencies}"
    return head + ("" if row.get("valid") is not False else "; INVALID: see invalid_reason")


def _print_summary(
    summary: SweepSummary, compile_only: bool, cli_bounds: tuple = (),
    cost_per_hour: Optional[float] = None, price_file: Optional[str] = None,
) -> None:
    plan = summary.plan
    if summary.abandoned_removed:
        n = len(summary.abandoned_removed)
        print(f"{plan.name}: removed {n} half-built artifact{'s' if n != 1 else ''} that a stopped run left in "
              f"{display_path(summary.output_dir / 'models')}", file=sys.stderr)
    if compile_only:
        failed = len(summary.compile_failed)
        print(
            f"{plan.name}: {summary.compiled} compiled, {summary.compile_reused} cached, "
            f"{failed} failed; model index: {summary.output_dir / 'model_index.json'}"
        )
        for result in summary.compile_failed:
            print(f"  FAILED {result.entry.id}: {result.error} (log: {display_path(summary.output_dir / str(result.log_file))})")
        return
    ok = sum(1 for r in summary.rows if r.get("status") == "ok")
    print(
        f"{plan.name}: {ok} ok, {len(summary.failed_rows)} failed, "
        f"{summary.reused} reused, {summary.ran} run"
        + (f", {summary.not_measured} not measured" if summary.not_measured else "")
        + (" (interrupted)" if summary.interrupted else "")
    )
    from neuronperf.sweep.searching import status_line

    searched = status_line(summary.search)
    if searched:
        print(f"{plan.name}: {searched}")
    for row in summary.failed_rows:
        print(f"  FAILED {row.get('id')}: {row.get('status')}: {row.get('error')}")
    for result in summary.compile_failed:
        if result.log_file:
            print(f"  compile log of {result.entry.id}: {display_path(summary.output_dir / result.log_file)}")
    if summary.rows:
        from neuronperf.answers import prices, slo
        from neuronperf.answers.summary import render

        bounds = slo.merge_bounds(cli_bounds, slo.bounds_from_columns(plan.slo))
        pricing = prices.resolve_pricing(plan.instance_type, cost_per_hour or plan.cost_per_hour, price_file)
        print()
        print(render(summary.rows, bounds, pricing, objective=slo.Objective.parse(plan.search.maximize)))
        print()
    print(f"  results: {summary.output_dir / 'results.csv'}")


def _status(args: argparse.Namespace) -> int:
    import json

    report = sweep_report(args.spec)
    plan, states = report.plan, report.states
    counts = report.counts()
    if plan.search.strategy == "grid":
        counts = {k: counts[k] for k in ("done", "failed", "todo")}
    if args.json:
        print(json.dumps({
            "name": plan.name, "output_dir": str(report.output_dir), "running": report.holder,
            "counts": counts, **({"search": search_json(plan, report.search)} if report.search is not None else {}),
            "entries": [
                {"id": e.id, "status": states[e], **({"why": report.reasons[e]} if e in report.reasons else {})}
                for e in plan.run_entries
            ],
        }, indent=2))
        return 0
    print(f"output_dir: {report.output_dir}")
    if report.holder:
        print(f"a neuronperf run is using it now ({report.holder}): the states below change as it goes")
    if report.search is not None:
        from neuronperf.sweep.searching import describe

        print(describe(plan))
    width = max(len(e.id) for e in plan.run_entries)
    for entry in plan.run_entries:
        why = f"  ({report.reasons[entry]})" if entry in report.reasons else ""
        print(f"{entry.id:<{width}}  {states[entry]}{why}")
    line = f"{plan.name}: {counts['done']} done, {counts['failed']} failed, {counts['todo']} to do"
    if report.search is not None:
        line += f", {counts['skipped']} skipped by the search, {counts['undecided']} undecided"
        line += " (the search has finished)" if report.search.finished else ""
    print(line)
    return 0


def search_json(plan: Plan, decision: Any) -> dict:
    """The search part of ``status --json`` and ``plan --search --json``."""
    return {"strategy": plan.search.strategy, "maximize": plan.search.maximize, "finished": decision.finished,
            "rounds": decision.rounds, "budget_reached": decision.budget_reached,
            "pending": [e.id for e in decision.pending]}
