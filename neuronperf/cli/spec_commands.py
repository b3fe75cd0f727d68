"""CLI commands for the spec and plan stages: ``validate``, ``plan`` and ``schema``.

``format_plan_table`` is shared with the commands that show a plan's progress (``status``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from neuronperf.entries import Plan
from neuronperf.errors import SpecError

_COLUMNS = ("id", "batch_size", "pipeline_size", "n_models", "workers_per_model", "key")


def register(subparsers: Any) -> None:
    """Add ``validate``, ``plan`` and ``schema`` to the parser."""
    p = subparsers.add_parser(
        "validate",
        help="check sweep specs and report every problem (file:line:col)",
        description="Check each sweep spec, including that its plan is not empty. Exit 0 if all are valid, 2 otherwise.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="sweep spec YAML file(s)")
    p.set_defaults(handler=_validate)

    p = subparsers.add_parser(
        "plan",
        help="show the entries a sweep spec expands to",
        description="Expand a sweep spec into its compile and run entries, without running anything.",
    )
    p.add_argument("spec", metavar="SPEC", help="sweep spec YAML file")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (counts, compile and run entries)")
    p.add_argument("--search", action="store_true",
                   help="also show, from output_dir's journal, what the spec's search will measure, has skipped and why")
    p.set_defaults(handler=_plan)

    p = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of sweep specs",
        description="Print the JSON Schema of sweep specs (point an editor at it for completion).",
    )
    p.set_defaults(handler=_schema)


def format_plan_table(
    plan: Plan,
    statuses: Optional[Mapping[str, str]] = None,
    keys: Optional[Sequence[str]] = None,
    reasons: Optional[Mapping[str, str]] = None,
) -> str:
    """The plan's run entries as a plain-text table, one line each, with the counts line last.

    ``statuses`` maps a run entry's id to a word shown in a ``status`` column (entries missing
    from it show ``-``), ``reasons`` to the text of a last ``why`` column; ``keys`` are the
    entries' keys when the caller has computed them already."""
    from neuronperf.plan.keys import run_keys
    from neuronperf.plan.render import counts_line

    if keys is None:
        keys = run_keys(plan.run_entries)
    columns = list(_COLUMNS) + (["status"] if statuses is not None else []) + (["why"] if reasons is not None else [])
    rows: list[list[str]] = []
    for entry, key in zip(plan.run_entries, keys):
        row = [
            entry.id,
            str(entry.compile.batch_size),
            str(entry.compile.pipeline_size),
            str(entry.n_models),
            str(entry.workers_per_model),
            key[:12],
        ]
        if statuses is not None:
            row.append(statuses.get(entry.id, "-"))
        if reasons is not None:
            row.append(reasons.get(entry.id, ""))
        rows.append(row)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(counts_line(plan))
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> int:
    from neuronperf.sweep.state import load_plan

    failed = False
    for path in args.specs:
        try:
            n = len(load_plan(path)[1].run_entries)
        except SpecError as e:
            failed = True
            print(str(e), file=sys.stderr)
            continue
        print(f"{path}: ok ({n} run {'entry' if n == 1 else 'entries'})")
    return 2 if failed else 0


def _plan(args: argparse.Namespace) -> int:
    from neuronperf.plan.render import inputs_lines, plan_json
    from neuronperf.sweep.state import load_plan

    try:
        _, the_plan = load_plan(args.spec)
    except SpecError as e:
        # One "FILE:LINE:COL: path: message" line per problem, exactly as `validate` prints them.
        print(str(e), file=sys.stderr)
        return e.exit_code
    if args.search:
        return _plan_search(args)
    if args.json:
        text = plan_json(the_plan)
    else:
        text = format_plan_table(the_plan)
        if any(t.name for e in the_plan.compile_entries for t in e.inputs):
            # Inputs passed by name (a model source's, or named in the spec): say what each gets.
            text = "\n".join(["inputs of each compiled model (batch first; named ones by keyword):",
                              *(f"  {line}" for line in inputs_lines(the_plan)), "", text])
    sys.stdout.write(text + "\n")
    return 0


def _plan_search(args: argparse.Namespace) -> int:
    """The plan with each entry's state under the spec's search, read from output_dir."""
    import json

    from neuronperf.cli.run_commands import search_json
    from neuronperf.plan.render import plan_dict
    from neuronperf.sweep.searching import describe
    from neuronperf.sweep.status import sweep_report

    report = sweep_report(args.spec)
    plan = report.plan
    states = {e.id: s for e, s in report.states.items()}
    reasons = {e.id: why for e, why in report.reasons.items()}
    if args.json:
        data = plan_dict(plan)
        data["search"] = {
            **(search_json(plan, report.search) if report.search is not None else {"strategy": "grid"}),
            "counts": report.counts(),
            "entries": [{"id": e.id, "status": states[e.id], **({"why": reasons[e.id]} if e.id in reasons else {})}
                        for e in plan.run_entries],
        }
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        return 0
    lines = [describe(plan), format_plan_table(plan, statuses=states, reasons=reasons)]
    counts = report.counts()
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items() if n)
                 + (" (the search has finished)" if report.search is not None and report.search.finished else ""))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from neuronperf.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return 0
