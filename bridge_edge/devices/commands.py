"""`bridge-edge` subcommands owned by bridge_edge.devices: `devices` and `record`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands. Handlers import heavy modules lazily."""
    p = subparsers.add_parser("devices", help="list serial ports and (with --ble) nearby BLE sensors")
    p.add_argument(
        "--ble", action="store_true", help="also scan for BLE sensors (needs BlueZ and an adapter)"
    )
    p.add_argument("--scan-seconds", type=float, default=5.0, help="BLE scan duration (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per device on stdout")
    p.set_defaults(handler=devices_command)

    p = subparsers.add_parser("record", help="record a source to WFDB + events.jsonl (timestamps, seq, gaps)")
    p.add_argument(
        "--source", required=True, help="source URL, e.g. serial:///dev/ttyACM0?format=frame&fs=250"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds of samples")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=record_command)


def devices_command(args: argparse.Namespace) -> int:
    import json

    from bridge_edge.devices.listing import ble_devices, serial_ports

    ports = serial_ports()
    for port in ports:
        if args.json:
            print(json.dumps({"kind": "serial", **port}), flush=True)
        else:
            ids = f" vid:pid={port['vid']}:{port['pid']}" if port["vid"] else ""
            print(
                f"serial  {port['device']:<28} {port['description']}{ids}  serial={port['serial_number'] or '-'}",
                flush=True,
            )
    if not ports and not args.json:
        print("no serial ports found", flush=True)
    if not args.ble:
        return 0
    for device in ble_devices(args.scan_seconds):  # a missing BlueZ/adapter raises a DeviceError here
        if args.json:
            print(json.dumps({"kind": "ble", **device}))
        else:
            print(
                f"ble     {device['address']:<28} {device['name'] or '?'}  rssi={device['rssi']}  {device['hint']}"
            )
    return 0


def record_command(args: argparse.Namespace) -> int:
    import json
    import sys
    from dataclasses import asdict

    from tqdm import tqdm

    from bridge_edge.devices.base import open_source
    from bridge_edge.devices.recording import record_source
    from bridge_edge.errors import ConfigError

    if args.seconds is not None and not args.seconds > 0:
        raise ConfigError(
            f"--seconds must be positive, got {args.seconds}", key="seconds", value=args.seconds
        )
    source = open_source(args.source)
    total = None if args.seconds is None else round(args.seconds * source.info.fs)
    from bridge_edge.outdirs import removed_on_failure

    with (
        tqdm(total=total, unit="sample", file=sys.stderr, desc="record", disable=None) as bar,
        removed_on_failure(args.out, has_results=lambda _: source.stats.samples > 0),
    ):
        try:
            meta = record_source(source, args.out, args.seconds, on_chunk=lambda chunk: bar.update(chunk.n))
        except KeyboardInterrupt:  # Ctrl-C ends a recording; what was written is kept and closed
            meta = None
    stats = {k: v for k, v in asdict(source.stats).items() if k != "events"}
    summary = {
        "out": args.out,
        "source": args.source,
        "fs": source.info.fs,
        "channels": list(source.info.channels),
        **stats,
        "exact": None if meta is None else meta.exact,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"recorded {stats['samples']} samples ({stats['chunks']} chunks) to {args.out}: "
            f"{stats['gap_samples']} missing in {stats['gaps']} gaps, {stats['corrupt_frames']} corrupt frames, "
            f"{stats['disconnects']} disconnects",
            file=sys.stderr,
        )
    return 0
