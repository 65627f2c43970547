#!/usr/bin/env python3
"""Soak the streaming pipeline under faults: N framed sensors, each with a NaN burst, a sensor
reboot and an unplug every ``--every`` seconds, through the real pipeline and ONNX Runtime.

    nice -n 19 python3 scripts/soak.py --minutes 30 --out soak_out

Writes ``soak.json`` (config, per-stream accounting, per-fault label resumption, RSS and lag
series, summary) and ``soak.png`` (RSS and lag over time). ``--speed`` > 1 runs in accelerated
stream time (the pipeline allows it; RSS and lag are then per wall second, say so when quoting).
Exit status 0 only if every sample was accounted for, labels came back after every fault and
(runs of 10 minutes or more) RSS after warm-up grew less than ``--max-slope`` MB per 10 minutes.
See docs/runtime.md, "Soak".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, c = report["series"], report["config"]
    t_min = [t / 60 for t in s["t_s"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    ax1.plot(t_min, s["rss_mb"], color="tab:blue")
    ax1.axvline(c["warmup_s"] / max(c["speed"], 1) / 60, color="grey", ls=":", label="end of warm-up")
    ax1.set_ylabel("RSS (MB)")
    ax1.legend(loc="lower right")
    ax1.set_title(
        f"soak: {c['streams']} streams, {c['minutes']:g} min, NaN burst + reset + unplug every "
        f"{c['every_s']:g} s ({c['engine']})"
    )
    ax2.plot(t_min, [v if v is not None else float("nan") for v in s["lag_p50_ms"]], label="lag p50 (recent)")
    ax2.plot(t_min, [v if v is not None else float("nan") for v in s["lag_max_ms"]], label="lag max (recent)")
    ax2.set_ylabel("lag (ms)")
    ax2.set_xlabel("wall time (min)")
    ax2.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="stream time per sensor")
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--every", type=float, default=300.0, help="seconds between fault cycles")
    ap.add_argument("--speed", type=float, default=1.0, help="stream time per wall time (1 = real time)")
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=120.0, help="stream seconds left out of the RSS trend")
    ap.add_argument("--max-slope", type=float, default=5.0, help="MB per 10 min of RSS growth allowed")
    ap.add_argument(
        "--trim-every", type=float, default=60.0, help="wall seconds between heap trims, 0: never"
    )
    ap.add_argument("--out", type=Path, default=Path("soak_out"))
    args = ap.parse_args(argv)

    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.runtime.outputs import strict_json
    from bridge_edge.runtime.soak import run_soak

    report = run_soak(
        load_bundle(args.bundle),
        args.minutes,
        streams=args.streams,
        every_s=args.every,
        speed=args.speed,
        warmup_s=args.warmup,
        threads=args.threads,
        precision=args.precision,
        trim_every_s=args.trim_every,
    ).as_json()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(json.loads(strict_json(report)), indent=1) + "\n")
    plot(report, args.out / "soak.png")
    summary = report["summary"]
    print(json.dumps(summary, indent=1))
    ok = summary["all_samples_accounted"] and summary["labels_resumed_after_every_fault"]
    slope = summary["rss_slope_mb_per_10min"]
    if args.minutes >= 10 and slope is not None:
        ok = ok and slope < args.max_slope
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
