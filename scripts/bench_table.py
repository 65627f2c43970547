#!/usr/bin/env python3
"""Regenerate the README results table from benchmarks/results/*.json.

    python scripts/bench_table.py [--results benchmarks/results] [--readme README.md] [--check]

Only the text between <!-- bench-table:start --> and <!-- bench-table:end --> is rewritten.
--check exits 1 (and writes nothing) when the README is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge_edge.bench.table import render, rewrite_between_markers

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="only report whether the README is current")
    args = parser.parse_args(argv)
    old = args.readme.read_text()
    try:  # PNG links relative to the README
        link_prefix = args.results.resolve().relative_to(args.readme.resolve().parent).as_posix()
    except ValueError:
        link_prefix = args.results.as_posix()
    new = rewrite_between_markers(old, render(args.results, link_prefix), where=str(args.readme))
    if args.check:
        if new != old:
            print(f"{args.readme}: bench table is out of date; run scripts/bench_table.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.readme.write_text(new)
        print(f"rewrote the bench table in {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
