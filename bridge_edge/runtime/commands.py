"""`bridge-edge` subcommands owned by bridge_edge.runtime (see bridge_edge/cli.py)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands. Handlers import heavy modules lazily."""
