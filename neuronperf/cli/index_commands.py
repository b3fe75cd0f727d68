"""``neuronperf index show|filter|append|copy|delete``: the model index functions on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from neuronperf import model_index
from neuronperf.errors import UsageError


def register(subparsers: Any) -> None:
    """Add ``index`` and its subcommands to the parser."""
    parser = subparsers.add_parser(
        "index",
        help="show, filter, append, copy or delete model indexes",
        description="Work with model index files (model_index.json) and the artifacts they list.",
    )
    commands = parser.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: _usage(parser))

    show = commands.add_parser("show", help="print an index's configs as a table")
    show.add_argument("index", metavar="INDEX", help="model index file")
    show.add_argument("--json", action="store_true", help="print the index as JSON instead")
    show.set_defaults(handler=_show)

    filter_ = commands.add_parser(
        "filter",
        help="write a new index with the configs that match",
        description="Write a new index holding the configs of INDEX that match every option "
        "(an option given several values matches any of them).",
    )
    filter_.add_argument("index", metavar="INDEX", help="model index file")
    filter_.add_argument("--batch-size", type=int, nargs="+", metavar="N")
    filter_.add_argument("--pipeline-size", type=int, nargs="+", metavar="N")
    filter_.add_argument("--input-idx", type=int, nargs="+", metavar="N")
    filter_.add_argument("--filename", nargs="+", metavar="PATH", help="as written in INDEX")
    filter_.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="match any config key; VALUE is read as JSON if it parses (1, null, true), else as "
        "text; repeat a key to allow several values",
    )
    filter_.add_argument("-o", "--output", required=True, metavar="OUT", help="index file to write")
    filter_.set_defaults(handler=_filter)

    append = commands.add_parser("append", help="concatenate indexes into a new one")
    append.add_argument("indexes", nargs="+", metavar="INDEX", help="model index files")
    append.add_argument("-o", "--output", required=True, metavar="OUT", help="index file to write")
    append.set_defaults(handler=_append)

    copy = commands.add_parser(
        "copy", help="copy an index and its artifacts into a folder (never overwrites)"
    )
    copy.add_argument("index", metavar="INDEX", help="model index file")
    copy.add_argument("new_name", metavar="NEW_NAME", help="file name of the new index")
    copy.add_argument("new_dir", metavar="NEW_DIR", help="folder for the new index and artifacts")
    copy.set_defaults(handler=_copy)

    delete = commands.add_parser("delete", help="remove an index file and every artifact it lists")
    delete.add_argument("index", metavar="INDEX", help="model index file")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--allow-outside", action="store_true",
                        help="also remove artifacts that lie outside the index file's folder")
    delete.set_defaults(handler=_delete)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _show(args: argparse.Namespace) -> int:
    index = model_index.load(args.index)
    if args.json:
        print(json.dumps(index, indent=4))
        return 0
    configs = index["model_configs"]
    count = f"{len(configs)} config" + ("" if len(configs) == 1 else "s")
    print(f"{args.index}: {count}, version {index.get('version', 'unknown')}")
    if not configs:
        return 0
    keys = list(model_index.STANDARD_KEYS)
    for config in configs:
        keys.extend(k for k in config if k not in keys)
    header = ["#", *keys, "artifact"]
    rows = []
    for i, (config, path) in enumerate(zip(configs, model_index.artifact_paths(args.index))):
        kind = "folder" if os.path.isdir(path) else "file" if os.path.exists(path) else "missing"
        rows.append([str(i), *(_cell(config, k) for k in keys), kind])
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _cell(config: dict, key: str) -> str:
    if key not in config:
        return "-"
    value = config[key]
    return value if isinstance(value, str) else json.dumps(value)


def _filter(args: argparse.Namespace) -> int:
    criteria: dict = {}
    for option, key in (
        ("batch_size", "batch_size"),
        ("pipeline_size", "pipeline_size"),
        ("input_idx", "input_idx"),
        ("filename", "filename"),
    ):
        if getattr(args, option) is not None:
            criteria[key] = getattr(args, option)
    for item in args.where:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--where {item!r}: expected KEY=VALUE")
        criteria.setdefault(key, []).append(_parse_value(text))
    with _warnings_to_stderr():
        total = len(model_index.load(args.index)["model_configs"])
        result = model_index.filter(args.index, **criteria)
        path = model_index.save(result, args.output)
    print(f"wrote {path}: {len(result['model_configs'])} of {total} configs matched")
    return 0


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _append(args: argparse.Namespace) -> int:
    with _warnings_to_stderr():
        result = model_index.append(*args.indexes)
        path = model_index.save(result, args.output)
    print(f"wrote {path}: {len(result['model_configs'])} configs from {len(args.indexes)} indexes")
    return 0


def _copy(args: argparse.Namespace) -> int:
    with _warnings_to_stderr():
        path = model_index.copy(args.index, args.new_name, args.new_dir)
    print(f"wrote {path}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    # Check safety first, so a refusal is reported before anyone is asked to confirm.
    targets = model_index.deletion_targets(args.index, args.allow_outside)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"delete {args.index}: stdin is not a terminal, so it cannot ask for "
                "confirmation; pass --yes to delete without asking"
            )
        print(f"This removes {len(targets)} path(s):")
        for path in targets:
            print(f"  {path}")
        answer = input("Delete them? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("Nothing removed.")
            return 1
    with _warnings_to_stderr():
        removed = model_index.delete(args.index, args.allow_outside)
    print(f"removed {len(removed)} path(s)")
    return 0


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show library warnings as one ``neuronperf: warning:`` line each, without source lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        print(f"neuronperf: warning: {warning.message}", file=sys.stderr)
