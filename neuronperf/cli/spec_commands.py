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
) -> str:
    """The plan's run entries as a plain-text table, one line each, with the counts line last.

    ``statuses`` maps a run entry's id to a word shown in a ``status`` column (entries missing
    from it show ``-``); ``keys`` are the entries' keys when the caller has computed them already."""
    from neuronperf.plan.keys import run_keys
    from neuronperf.plan.render import counts_line

    if keys is None:
        keys = run_keys(plan.run_entries)
    columns = list(_COLUMNS) + (["status"] if statuses is not None else [])
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
        rows.append(row)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(counts_line(plan))
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> int:
    from neuronperf.sweep.state import load_sweep_spec as load_spec
    from neuronperf.sweep.state import plan_spec

    failed = False
    for path in args.specs:
        try:
            spec = load_spec(path)
            n = len(plan_spec(spec).run_entries)
        except SpecError as e:
            failed = True
            print(str(e), file=sys.stderr)
            continue
        print(f"{path}: ok ({n} run {'entry' if n == 1 else 'entries'})")
    return 2 if failed else 0


def _plan(args: argparse.Namespace) -> int:
    from neuronperf.plan.render import inputs_lines, plan_json
    from neuronperf.sweep.state import load_sweep_spec as load_spec
    from neuronperf.sweep.state import plan_spec

    try:
        spec = load_spec(args.spec)
        the_plan = plan_spec(spec)
    except SpecError as e:
        # One "FILE:LINE:COL: path: message" line per problem, exactly as `validate` prints them.
        print(str(e), file=sys.stderr)
        return e.exit_code
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


def _schema(args: argparse.Namespace) -> int:
    from neuronperf.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return 0
