"""What a machine costs per hour, and the ``cost_per_1m_inf`` column that follows from it.

A sweep's price per hour comes from, first to last: ``--cost-per-hour``, the spec's
``cost_per_hour``, a user price file (``--prices FILE`` or ``$NEURONPERF_PRICES``: a YAML or
JSON mapping of instance type to USD per hour), and the built-in table below for the Inferentia
and Trainium instances. The built-in figures are AWS's public on-demand Linux prices in
us-east-1 as listed in 2025; your own prices (another region, a savings plan, spot) belong in
a price file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

from neuronperf.errors import UsageError
from neuronperf.stats.forward import cost_per_1m_inf

#: USD per hour, on demand, Linux, us-east-1 (AWS's public price list, 2025).
#:
#: Sources and gaps (2026): the AWS Neuron documentation publishes no on-demand prices; its
#: performance pages carry reserved-instance ("RI-Effective hourly rate") figures only
#: (about-neuron/benchmarks/{inf1,inf2,trn1}/*instance_prices.csv in aws-neuron/aws-neuron-sdk),
#: which are not what this table holds. The instances themselves (chips and NeuronCores per
#: instance, logical and physical) are ``neuronperf.spec.instances``, with their sources. No
#: price is built in for trn2u.48xlarge or for Trn3 (sold as UltraServers; the Neuron docs name no
#: Trn3 instance size): give one with a price file or ``cost_per_hour``.
BUILTIN_PRICES: Mapping[str, float] = {
    "inf1.xlarge": 0.228,
    "inf1.2xlarge": 0.362,
    "inf1.6xlarge": 1.18,
    "inf1.24xlarge": 4.721,
    "inf2.xlarge": 0.7582,
    "inf2.8xlarge": 1.9679,
    "inf2.24xlarge": 6.4906,
    "inf2.48xlarge": 12.9813,
    "trn1.2xlarge": 1.3438,
    "trn1.32xlarge": 21.50,
    "trn1n.32xlarge": 24.78,
    "trn2.48xlarge": 44.70,
}
#: The environment variable naming a user price file.
PRICES_ENV = "NEURONPERF_PRICES"


@dataclass(frozen=True)
class Pricing:
    """The price a sweep's rows are costed at, and where it came from (for the summary)."""

    instance_type: Optional[str] = None
    cost_per_hour: Optional[float] = None
    #: "--cost-per-hour", "spec", a price file's path, "built-in table", or None (no price).
    source: Optional[str] = None
    #: Why there is no price although an instance type was named; None otherwise.
    note: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pricing:
        return cls(**{k: data.get(k) for k in ("instance_type", "cost_per_hour", "source", "note")})


def load_price_file(path: str) -> dict[str, float]:
    """A price file's mapping of instance type -> USD per hour; anything else is a one-line
    ``UsageError`` naming the file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the price file: {e.strerror or e}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{path}: not a YAML/JSON price file: {first}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a price file is a mapping of instance type to USD per hour, e.g. 'inf2.xlarge: 0.76'")
    prices = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UsageError(f"{path}: {name}: {value!r} is not a price per hour of at least 0")
        prices[str(name)] = float(value)
    return prices


def resolve_pricing(
    instance_type: Optional[str],
    cost_per_hour: Optional[float] = None,
    price_file: Optional[str] = None,
    *,
    explicit_source: str = "spec",
) -> Pricing:
    """The ``Pricing`` for a sweep: an explicit ``cost_per_hour`` wins, else the instance type's
    price from ``price_file`` (default ``$NEURONPERF_PRICES``), else from the built-in table."""
    if cost_per_hour is not None:
        if not (math.isfinite(cost_per_hour) and cost_per_hour >= 0):
            raise UsageError(f"cost per hour must be a number of at least 0, got {cost_per_hour!r}")
        return Pricing(instance_type, float(cost_per_hour), explicit_source)
    if instance_type is None:
        return Pricing()
    price_file = price_file or os.environ.get(PRICES_ENV) or None
    if price_file:
        own = load_price_file(price_file)
        if instance_type in own:
            return Pricing(instance_type, own[instance_type], price_file)
    if instance_type in BUILTIN_PRICES:
        return Pricing(instance_type, BUILTIN_PRICES[instance_type], "built-in table")
    return Pricing(
        instance_type,
        note=f"instance_type {instance_type} has no price in the built-in table"
        + (f" or in {price_file}" if price_file else "")
        + "; set cost_per_hour (or --cost-per-hour) to get cost_per_1m_inf",
    )


def apply_pricing(row: Mapping[str, Any], pricing: Pricing) -> dict[str, Any]:
    """``row`` with ``instance_type`` and ``cost_per_1m_inf`` filled in from ``pricing`` (a row
    without a throughput keeps an empty cost); without a price the row is returned as it was."""
    out = dict(row)
    if pricing.instance_type is not None:
        out["instance_type"] = pricing.instance_type
    if pricing.cost_per_hour is not None:
        throughput = out.get("throughput_avg")
        number = float(throughput) if isinstance(throughput, (int, float)) and not isinstance(throughput, bool) else None
        out["cost_per_1m_inf"] = cost_per_1m_inf(pricing.cost_per_hour, number)
    return out
