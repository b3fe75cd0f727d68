"""The answers: the results of one or two output_dirs in, what a user decides with out.

``slo`` picks the best configuration under latency bounds; ``prices`` turns throughput into
cost per million inferences; ``summary`` is the console table; ``report`` the plots and the
self-contained ``report.html``; ``compare`` the entry-by-entry comparison of two runs that marks
only significant changes. Read-only: nothing here measures or writes into an output_dir.
"""
