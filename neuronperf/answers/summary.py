"""The text summary of a sweep: a table of its entries, then the best configurations.

Pure Python over report rows, shared by ``neuronperf run`` (at its end) and
``neuronperf summary OUTPUT_DIR``; the CLI prints what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from neuronperf.answers.prices import Pricing
from neuronperf.answers.slo import (
    RANK_DIRECTIONS,
    THROUGHPUT,
    Choice,
    LatencyBound,
    Objective,
    answers,
    group_rows,
    is_server,
    measured,
    number,
    ranked,
    served_rate,
)
from neuronperf.results.columns import DEFAULT_PRINT_COLS, MISSING

Row = Mapping[str, Any]

#: The table's columns: the entry and its status, then NeuronPerf's print columns.
TABLE_COLUMNS: tuple[str, ...] = ("id", "status", *DEFAULT_PRINT_COLS)
#: The table of generation entries (``task: generate``): per-token latencies and token rates.
GENERATION_TABLE_COLUMNS: tuple[str, ...] = (
    "id", "status", "batch_size", "new_tokens", "ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99",
    "e2e_ms_p99", "output_tokens_per_s", "requests_per_s",
)
#: The table of the server scenario's entries: the rate offered and served, the latency from the
#: scheduled arrival and its parts, and whether the row is valid.
SERVER_TABLE_COLUMNS: tuple[str, ...] = (
    "id", "status", "rate_target", "rate_achieved", "max_rate_under_slo", "latency_ms_p50", "latency_ms_p99",
    "queue_ms_p99", "service_ms_p99", "batch_fill_avg", "generator_lag_ms_p99", "valid",
)


def entries_table(rows: Sequence[Row], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """A fixed-width table, one line per row in the order given; numbers right-aligned with
    three decimals, missing values ``N/A``."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    numeric = [all(number(r.get(c)) is not None or r.get(c) is None for r in rows) and c not in ("id", "status") for c in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)).rstrip()

    out = [line(list(columns)), "  ".join("-" * w for w in widths)]
    out += [line(values) for values in cells]
    return "\n".join(out)


def answer_lines(rows: Sequence[Row], bounds: Sequence[LatencyBound] = (), pricing: Optional[Pricing] = None,
                 objective: Objective = THROUGHPUT) -> list[str]:
    """The best configuration of each model (and swept parameter values) by ``objective``,
    overall and under each latency bound, with the cheapest under it where rows carry a cost,
    and the most frugal where rows carry energy per inference."""
    lines: list[str] = []
    current = None
    groups = group_rows(rows)
    for choice in answers(rows, bounds, objective):
        if choice.group != current:
            if current is not None:
                lines.extend(_energy_lines(groups[current]))
            current = choice.group
            lines.append(f"best configurations for {choice.group.label}:")
        lines.extend(_choice_lines(choice))
    if current is not None:
        lines.extend(_energy_lines(groups[current]))
    if not lines:
        lines.append("best configurations: none (no entry was measured)")
    if pricing is not None and pricing.note:
        lines.append(f"  (no cost: {pricing.note})")
    elif pricing is not None and pricing.cost_per_hour is not None:
        where = f"{pricing.instance_type}, " if pricing.instance_type else ""
        lines.append(f"  (costs at {where}${pricing.cost_per_hour:g}/hour from {pricing.source})")
    return lines


def _energy_lines(rows: Sequence[Row]) -> list[str]:
    frugal = ranked(rows, "energy_j_per_inf")
    if not frugal:
        return []
    row = frugal[0]
    power, idle = number(row.get("power_w_avg")), number(row.get("power_w_idle"))
    watts = f"{power:.1f} W" if power is not None else "power unknown"
    if idle is not None:
        watts += f", idle {idle:.1f} W"
    energy = number(row.get("energy_j_per_inf")) or 0.0
    return [f"  least energy per inference: {row.get('id')} at {energy * 1000:.4g} mJ/inf ({watts}, {row.get('energy_source')})"]


def ranking_table(rows: Sequence[Row], column: str, limit: int = 10) -> str:
    """The measured rows ranked by ``column`` (``--rank-by``), best first, at most ``limit``."""
    best = ranked(rows, column)
    direction = "lower" if RANK_DIRECTIONS[column] == "lower" else "higher"
    if not best:
        return f"ranked by {column}: no measured entry has it"
    shown = ["id", column, "throughput_avg", "latency_ms_p99", "n_models"]
    title = f"ranked by {column} ({direction} is better{f', the best {limit} of {len(best)}' if len(best) > limit else ''}):"
    return title + "\n" + entries_table(best[:limit], list(dict.fromkeys(shown)))


def memory_table(rows: Sequence[Row]) -> Optional[str]:
    """Device memory against copies: per configuration (model, parameters, batch, pipeline and
    threads), the peak device memory at each number of copies; None when no row has any."""
    column = next((c for c in ("device_mem_mb_peak", "device_mem_mb_nvml_peak")
                   if any(number(r.get(c)) is not None for r in measured(rows))), None)
    if column is None:
        return None
    copies = sorted({int(n) for r in measured(rows) if (n := number(r.get("n_models"))) is not None})
    table: dict[str, dict[int, Any]] = {}
    for row in measured(rows):
        config = str(row.get("id") or "").rsplit("-m", 1)[0] + f"-w{row.get('workers_per_model')}"
        table.setdefault(config, {})[int(number(row.get("n_models")) or 0)] = number(row.get(column))
    header = ["configuration", *[f"{n} copies" if n != 1 else "1 copy" for n in copies]]
    body = [[config, *[_cell(values.get(n)) for n in copies]] for config, values in table.items()]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))).rstrip()
             for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"device memory against copies ({column}, MB):\n" + "\n".join(lines)


def _choice_lines(choice: Choice) -> list[str]:
    if choice.objective == THROUGHPUT:
        what = "highest throughput" if not choice.bounds else "under " + " and ".join(str(b) for b in choice.bounds)
    else:
        what = choice.objective.label + ("" if not choice.bounds else " under " + " and ".join(str(b) for b in choice.bounds))
    if not choice.bounds and choice.objective == THROUGHPUT and choice.best is not None and is_server(choice.best):
        what = "highest rate served"
    if choice.candidates == 0:
        return [f"  {what}: none (no entry of it was measured)"]
    if choice.best is None:
        text = f"  {what}: no entry meets it"
        if choice.closest is not None:
            text += f"; closest: {_describe(choice.closest, choice.bounds)}"
        return [text]
    line = f"  {what}: {_describe(choice.best, choice.bounds)}"
    if choice.objective != THROUGHPUT:
        line += f", {choice.objective.column} {_value(choice.best.get(choice.objective.column))}"
    cheapest = choice.cheapest
    if cheapest is None:
        return [line]
    unit = "requests" if is_server(cheapest) else "inferences"
    cost = f"${number(cheapest.get('cost_per_1m_inf')):.4g} per 1M {unit}"
    if cheapest is choice.best:
        return [f"{line}, {cost} (also the cheapest)"]
    return [line, f"    cheapest: {cheapest.get('id')} at {cost}"]


def _describe(row: Row, bounds: Sequence[LatencyBound]) -> str:
    shown = [b.column for b in bounds] or ["latency_ms_p99"]
    latencies = ", ".join(f"p{c.rsplit('p', 1)[1]} {_ms(row.get(c))}" for c in dict.fromkeys(shown))
    throughput = number(row.get("throughput_avg"))
    tokens = number(row.get("output_tokens_per_s"))
    if is_server(row):
        if row.get("probes") is not None and served_rate(row) is not None:
            return f"{row.get('id')} serves up to {served_rate(row):.1f} requests/s ({latencies} there)"
        if row.get("probes") is not None:
            return f"{row.get('id')}: no rate met the bound ({latencies} at {throughput:.1f} requests/s, the lowest tried)"
        return f"{row.get('id')} serves {throughput:.1f} of {number(row.get('rate_target')) or 0.0:g} requests/s offered ({latencies})"
    if tokens is not None:
        return f"{row.get('id')} at {throughput:.1f} requests/s, {tokens:.1f} output tokens/s ({latencies})"
    return f"{row.get('id')} at {throughput:.1f} inf/s ({latencies})"


def _value(value: Any) -> str:
    n = number(value)
    return f"{n:.4g}" if n is not None else MISSING


def _ms(value: Any) -> str:
    n = number(value)
    return f"{n:.3f} ms" if n is not None else MISSING


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render(rows: Sequence[Row], bounds: Sequence[LatencyBound] = (), pricing: Optional[Pricing] = None,
           rank_by: Optional[str] = None, objective: Objective = THROUGHPUT) -> str:
    """The whole summary: the entries table (generation entries in a table of their own), the
    device memory against copies where rows carry it, the ranking by ``rank_by`` if asked, a
    blank line, the best configurations by ``objective``."""
    server = [r for r in rows if is_server(r)]
    forward = [r for r in rows if "ttft_ms_p50" not in r and not is_server(r)]
    generation = [r for r in rows if "ttft_ms_p50" in r and not is_server(r)]
    tables = ([entries_table(forward)] if forward else []) + ([entries_table(generation, GENERATION_TABLE_COLUMNS)] if generation else [])
    if server:
        columns = SERVER_TABLE_COLUMNS + (("ttft_ms_p99", "goodput_rps") if any("goodput_rps" in r for r in server) else ())
        tables.append(entries_table(server, columns))
    memory = memory_table(rows)
    if memory is not None:
        tables.append(memory)
    if rank_by is not None:
        tables.append(ranking_table(rows, rank_by))
    return "\n\n".join(tables) + "\n\n" + "\n".join(answer_lines(rows, bounds, pricing, objective))
