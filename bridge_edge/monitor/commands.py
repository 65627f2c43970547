"""`bridge-edge monitor` and `bridge-edge demo` (see bridge_edge/cli.py)."""

from __future__ import annotations

import argparse

from bridge_edge.runtime.engines.names import ENGINE_CHOICES

# sinus -> an AF episode -> sinus (the simulator repeats it): AF shows within a minute, and its
# alarm sounds once the label has held for the alarm onset (30 s).
DEMO_SCRIPT = "sinus:20,afib:60,sinus:40"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands. Handlers import heavy modules lazily."""
    p = subparsers.add_parser(
        "monitor",
        help="run the streaming pipeline and show it on the bedside web monitor",
        description="The `run` pipeline plus a live web page: sweep traces, rhythm label, HR, SQI, "
        "alarms. Each --source is one bed on the page.",
    )
    p.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="URL",
        help="source URL (serial://, ble://, replay://, sim://); repeat for several beds",
    )
    p.add_argument(
        "--bundle", default="default", help="bundle directory, .tar or installed name (default: %(default)s)"
    )
    p.add_argument("--engine", default="auto", choices=ENGINE_CHOICES)
    _server_options(p)
    p.set_defaults(handler=_monitor)

    d = subparsers.add_parser(
        "demo",
        help="a simulated patient (sinus -> AF -> sinus) on the bedside monitor, default bundle",
        description="Starts a simulated ECG+PPG patient whose rhythm follows --script (repeating), "
        "runs the default bundle on its PPG and opens the monitor page.",
    )
    d.add_argument(
        "--script",
        default=DEMO_SCRIPT,
        help="rhythm episodes as name:seconds,... (sinus, brady, tachy, afib, ectopy); default %(default)s",
    )
    d.add_argument("--beds", type=int, default=1, help="number of simulated patients (default: %(default)s)")
    d.add_argument("--motion", type=float, default=0.15, help="PPG motion noise, 0 = still, 1 = restless")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--bundle", default="default", help=argparse.SUPPRESS)
    d.add_argument("--engine", default="auto", choices=ENGINE_CHOICES)
    _server_options(d)
    d.set_defaults(handler=_demo)


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s); any other address requires --token",
    )
    p.add_argument("--port", type=int, default=8765, help="TCP port, 0 = any free one (default: %(default)s)")
    p.add_argument("--token", default=None, help="access token the page must present (?token=T in its URL)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument(
        "--seconds", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)"
    )
    p.add_argument(
        "--alarm-onset",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a rhythm alarm (AF) sounds once its label has held this long over scored windows "
        "(default: %(default)g s; docs/monitor.md)",
    )


def _options(args: argparse.Namespace, sources: list[str], open_browser: bool):
    from bridge_edge.monitor.app import MonitorOptions

    return MonitorOptions(
        sources=sources,
        bundle=args.bundle,
        engine=args.engine,
        host=args.host,
        port=args.port,
        token=args.token,
        open_browser=open_browser,
        seconds=args.seconds,
        alarm_onset_s=args.alarm_onset,
    )


def _monitor(args: argparse.Namespace) -> int:
    from bridge_edge.monitor.app import run_monitor

    return run_monitor(_options(args, args.source, open_browser=not args.no_browser))


def _demo(args: argparse.Namespace) -> int:
    from bridge_edge.monitor.app import demo_sources, run_monitor

    sources = demo_sources(args.beds, args.script, args.motion, args.seed)
    return run_monitor(_options(args, sources, open_browser=not args.no_browser))
