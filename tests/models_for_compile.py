"""Model factories that fail in the ways a compile can fail (used by test_compile.py)."""

from __future__ import annotations

import os
import time


def raising_model(**kwargs):
    raise RuntimeError("this model cannot be built")


def crashing_model(**kwargs):
    os.abort()


def hanging_model(**kwargs):
    while True:
        time.sleep(1)
