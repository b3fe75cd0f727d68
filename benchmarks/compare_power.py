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
  it): 4 degrees of freedom with 3 + 3 repeats whatever the spreads. With equal sizes its false
  alarm rate stays near the nominal level when the variances differ; with unequal sizes it does
  not, which is why ``compare`` uses it only when both sides have the same number of repeats.

Printed per spread ratio (the standard deviation of one side over the other's, each side's
smaller one 2% of the mean, a spread seen between repeats on our shared 2-core machine): the
rate at which each test calls an unchanged build different (size) and the rate at which it
finds a 13% change (power), the smallest change the planted 20% slowdown of
``compare_false_alarms.py`` measured as in our runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuronperf.answers.compare import ALPHA, student_p, welch_p  # noqa: E402


def rates(rng: np.random.Generator, n_old: int, n_new: int, spread_ratio: float, shift: float,
          trials: int) -> tuple[float, float]:
    """(Welch's, Student's) rejection rate at ALPHA / 3 over ``trials`` draws."""
    level = ALPHA / 3
    welch = student = 0
    for _ in range(trials):
        old = rng.normal(1.0, 0.02, n_old)
        new = rng.normal(1.0 + shift, 0.02 * spread_ratio, n_new)
        welch += (welch_p(old, new) or 1.0) < level
        student += (student_p(old, new) or 1.0) < level
    return welch / trials, student / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, nargs=2, default=(3, 3), metavar=("OLD", "NEW"))
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    n_old, n_new = args.repeats
    print(f"{n_old} + {n_new} repeats, {args.trials} trials, level {ALPHA / 3:.4f} (5% Holm over 3 figures)")
    print(f"{'spread ratio':>12s} | {'size: Welch':>11s} {'Student':>8s} | {'power at 13%: Welch':>19s} {'Student':>8s}")
    for spread_ratio in (1.0, 2.0, 4.0):
        size = rates(rng, n_old, n_new, spread_ratio, 0.0, args.trials)
        power = rates(rng, n_old, n_new, spread_ratio, -0.13, args.trials)
        print(f"{spread_ratio:12.0f} | {size[0]:11.4f} {size[1]:8.4f} | {power[0]:19.3f} {power[1]:8.3f}")


if __name__ == "__main__":
    main()
