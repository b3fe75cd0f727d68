"""The measure stage: run entries in, measurements (raw samples) out, each entry in fresh worker
processes.

``entryloop`` is the benchmark core every caller uses (``run_entries(jobs, executor, sink)``: the
sweep's journal sink and the NeuronPerf facades' list sink get the same rows); ``contract`` is
what the loop and an executor exchange per entry (pre-flight, repeats); ``task`` is the frozen
value a worker receives; ``supervisor`` starts the copies, opens the shared window, enforces the
timeout and stops them; ``worker`` runs in each copy (one measuring thread per worker);
``protocol`` is their JSON conversation; ``preload``/``forkserver_preload`` warm the workers'
server; ``evaluate`` runs a model over a dataset in a worker (accuracy beside speed). The server
scenario: ``serving`` is the shared request queue the workers' threads serve, ``rate_search``
the pure peak search of ``sweep.rates: max`` and ``peak`` its probes, measured and recorded.
"""
