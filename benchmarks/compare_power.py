"""Which two-sample test should ``compare`` use between three repeats a side? A simulation.

Run from the repository root: ``python benchmarks/compare_power.py`` (a few seconds; ``--trials``,
``--repeats``). No harness is involved: per-repeat figures are drawn from normal distributions
whose truth is known, and both candidate tests are applied to the same draws, at the level one
figure of one entry gets in ``compare`` (5% Holm-adjusted over its three figures: the smallest p
must be under 0.05 / 3).

- **Welch's t-test** (unequal variances): its degrees of freedom fall from 4 towards 2 when one
  side's repeats spread more than the other's, which is common (a repeat that landed on a
  slower memory layout), and so does its power.
- **Student's t-test, pooled variance** (pyperf's choice, and Unladen Swallow's perf.py before
  it): 4 degrees of freedom with 3 + 3 repeats whatever the spreads. With equal spreads it is at
  its level; with unequal ones it is not, and neither is Welch's with three repeats (this script
  measures by how much). With unequal sizes it is not at any spread, which is why ``compare``
  uses it only when both sides have the same number of repeats.

Printed per level (5% / 3: one entry's three figures; 5% / 30: ten entries') and spread ratio
(the standard deviation of one side over the other's, the smaller one 2% of the mean, a spread
seen between repeats on our shared 2-core machine): the rate at which each test calls an
unchanged build different, as a multiple of the level (size), and the rate at which it finds a
13% change (power), the smallest change the planted 20% slowdown of ``compare_false_alarms.py``
measured in our runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuronperf.answers.compare import ALPHA, student_p, welch_p  # noqa: E402

TESTS = (("Welch", welch_p), ("Student", student_p))


def rates(rng: np.random.Generator, n_old: int, n_new: int, spread_ratio: float, shift: float,
          trials: int, level: float) -> list[float]:
    """Each of TESTS' rejection rate at ``level`` over ``trials`` draws (the same draws)."""
    hits = [0] * len(TESTS)
    for _ in range(trials):
        old = rng.normal(1.0, 0.02, n_old)
        new = rng.normal(1.0 + shift, 0.02 * spread_ratio, n_new)
        for i, (_, test) in enumerate(TESTS):
            hits[i] += (test(old, new) or 1.0) < level
    return [h / trials for h in hits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, nargs=2, default=(3, 3), metavar=("OLD", "NEW"))
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    n_old, n_new = args.repeats
    names = " ".join(f"{name:>8s}" for name, _ in TESTS)
    print(f"{n_old} + {n_new} repeats, {args.trials} trials; size: false alarm rate / level; power at a 13% change")
    print(f"{'level':>8s} {'spread':>6s} | size: {names} | power: {names}")
    for family in (3, 30):  # one entry's three figures; ten entries' thirty
        level = ALPHA / family
        for spread_ratio in (1.0, 2.0, 4.0, 8.0):
            size = rates(rng, n_old, n_new, spread_ratio, 0.0, args.trials, level)
            power = rates(rng, n_old, n_new, spread_ratio, -0.13, args.trials, level)
            print(f"{level:8.5f} {spread_ratio:6.0f} |       " + " ".join(f"{x / level:7.2f}x" for x in size)
                  + " |        " + " ".join(f"{x:8.3f}" for x in power))


if __name__ == "__main__":
    main()
