"""Utilities every stage may use, and that use no stage: atomic and durable file writes
(``atomic``), file names made safe from free text (``paths``), paths a deletion never touches
(``guarded_paths``), and process trees (``processes``)."""
