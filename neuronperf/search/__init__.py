"""The search: which entries of a plan a sweep measures, decided from the rows measured so far.

``space`` groups a plan's run entries into questions (a model at one combination of its swept
parameters) with coordinates, the pruning order and neighbours; ``strategies`` holds ``prune``
and ``quick``, each a generator of waves of entries to measure; ``replay`` derives the next wave,
or the finished decision (what was skipped and why), from rows alone, so that a search resumes
from its journal; ``checks`` checks that the rows will have the objective's column; ``estimate``
counts what the search saved against a grid. Pure: it measures nothing and writes nothing (the
sweep driver does both).
"""
