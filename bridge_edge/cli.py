"""The ``bridge-edge`` command line.

Each area of the project owns its subcommands in ``bridge_edge/<area>/commands.py``, which
defines ``register(subparsers)``. Those modules import only argparse-level things at module
level; the heavy work (torch, onnxruntime, bleak, ...) is imported inside the handler, so
``bridge-edge --help`` stays fast and works on a device without torch.

A handler takes the parsed ``argparse.Namespace`` and returns an exit code (0 = success).
Errors are ``BridgeEdgeError`` subclasses: printed as one line, traceback only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bridge_edge import __version__
from bridge_edge.errors import BridgeEdgeError

# Order here is the order in `bridge-edge --help`: offline first, then device side.
COMMAND_MODULES = (
    "bridge_edge.signals.commands",  # simulate
    "bridge_edge.bridge.commands",  # fit, select, train-bridge, evaluate
    "bridge_edge.export.commands",  # export, inspect, build-engine, deploy
    "bridge_edge.devices.commands",  # devices, record
    "bridge_edge.runtime.commands",  # run
    "bridge_edge.monitor.commands",  # monitor, demo
    "bridge_edge.bench.commands",  # bench
    "bridge_edge.completion",  # completion
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge-edge",
        description="Train cross-modal biosignal bridges offline and run them live on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"bridge-edge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _take_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``--debug`` is global but may come anywhere, also after the subcommand
    (``bridge-edge run --debug ...``); an argument after ``--`` is left alone."""
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    return [a for i, a in enumerate(argv) if not (i < end and a == "--debug")], debug


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv, debug = _take_debug(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.debug = args.debug or debug
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except BridgeEdgeError as err:
        if args.debug:
            raise
        print(f"bridge-edge: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("bridge-edge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`bridge-edge inspect default | head`): stop quietly, as Unix tools
        # do; stdout goes to devnull so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
