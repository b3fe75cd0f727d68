"""The sweep driver: a spec path in, a finished (or resumed) output_dir and a summary out.

``driver`` runs the stages in order (spec -> plan -> compile -> measure -> results) under the
output_dir's lock and reports progress to an ``Observer``; ``state`` is what the output_dir
already knows (identities, done/failed/todo, why an entry runs again); ``measuring`` turns run
entries into the benchmark core's jobs and journals each row; ``environments`` keeps the
machines behind the results consistent; ``output_dir`` says what a sweep owns there.
"""
