"""The compile stage: compile entries in, artifacts and their results out.

``jobs`` builds every artifact that is not already cached, in parallel processes (a crash or
hang takes one job down), each with a log file and a hard timeout; a failure is a
``CompileResult``, never an exception. ``artifacts`` holds what one artifact is on disk: its
compile key, its path, the atomic and durable build (``compile_one``), and the side file that
lets a rerun reuse it.
"""
