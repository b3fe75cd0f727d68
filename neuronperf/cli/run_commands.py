"""CLI commands (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add this module's commands to the parser."""
    del subparsers


def _unused(args: argparse.Namespace) -> int:
    return 0
