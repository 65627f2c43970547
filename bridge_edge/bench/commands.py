"""``bridge-edge bench latency|streams|training|scale|power`` (the README's command table).

Every bench writes ``<out>/<bench>.json`` (rows + one ``machine`` object + summary) and its PNG,
prints the markdown table section (or, with ``--json``, one JSON object per line), and reports
what it could not measure as ``unmeasured`` rows with the reason. ``--quick`` runs a CI-sized
version (≤ 2 min) and writes under ``<out>/quick/`` so it never overwrites the full results.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bridge_edge.runtime.commands import non_negative_float, positive_int
from bridge_edge.runtime.engines.names import ENGINE_NAMES, PRECISIONS

DEFAULT_OUT = Path("benchmarks/results")
DEFAULT_RUN_DIR = Path("runs/default")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _csv(kind, choices: tuple | None = None, minimum: int | None = None):
    """argparse type: a comma-separated list; items outside ``choices`` (or below ``minimum``)
    are refused with what is accepted (``--engines foo`` used to be taken silently)."""

    def parse(text: str) -> tuple:
        items = tuple(kind(v) for v in text.split(",") if v)
        bad = [
            v
            for v in items
            if (choices is not None and v not in choices) or (minimum is not None and v < minimum)
        ]
        if not items or bad:
            accepted = ",".join(map(str, choices)) if choices else f"integers >= {minimum}"
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {accepted}")
        return items

    return parse


ENGINES = ENGINE_NAMES  # torch (the reference) first


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks: latency, streams, training cost, power")
    which = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--quick", action="store_true", help="CI-sized run (<= 2 min), written under OUT/quick/"
        )
        p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
        p.add_argument(
            "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})"
        )
        p.add_argument(
            "--threads",
            type=positive_int,
            default=_cores(),
            help="threads for every engine, >= 1 (default: all cores)",
        )

    def model(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--bundle", default="default", help="bundle to measure (default: the embedded default)"
        )
        p.add_argument(
            "--run-dir",
            type=Path,
            default=None,
            help="training run with the composed torch module (default: the bundle's own torch "
            f"weights; {DEFAULT_RUN_DIR} if present for a bundle without them)",
        )

    p = which.add_parser("latency", help="per-stage latency percentiles per engine x precision x batch")
    common(p)
    model(p)
    p.add_argument("--engines", type=_csv(str, ENGINES), default=ENGINES)
    p.add_argument("--precisions", type=_csv(str, PRECISIONS), default=PRECISIONS)
    p.add_argument("--batches", type=_csv(int, minimum=1), default=(1, 8))
    p.add_argument("--windows", type=int, default=1024, help="timed windows per configuration (default 1024)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device for the torch engine")
    p.set_defaults(handler=run_latency)

    p = which.add_parser("streams", help="most concurrent simulated streams that keep up in real time")
    common(p)
    model(p)
    p.add_argument("--engines", type=_csv(str, ENGINES), default=("ort",))
    p.add_argument("--precisions", type=_csv(str, PRECISIONS), default=("fp32", "int8"))
    p.add_argument("--trial-seconds", type=float, default=30.0, help="real time per stream-count trial")
    p.add_argument(
        "--batch-wait-hops",
        type=non_negative_float,
        default=0.1,
        help="cross-stream batching: hold a ready window up to this fraction of a hop (0: never)",
    )
    p.add_argument(
        "--engine-batch",
        type=positive_int,
        help="most windows per engine call (default: measured at each trial's start, the call size "
        "cheapest per window on this CPU; 64 gives every gathered window one call)",
    )
    p.add_argument(
        "--thread-split",
        action="store_true",
        help="search the knee at every engine thread count from 1 to --threads and report the one "
        "that keeps up the most streams (the rest of the cores go to ingest and DSP)",
    )
    p.add_argument(
        "--start", type=positive_int, default=1, help="first stream count tried; the search doubles from it"
    )
    p.add_argument(
        "--max-streams",
        type=positive_int,
        default=512,
        help="largest stream count tried; a knee at or above it reads '>= N' (default 512)",
    )
    p.set_defaults(handler=run_streams)

    p = which.add_parser("training", help="bridge vs KD: parameters, memory, time per epoch, test metrics")
    common(p)
    p.add_argument(
        "--recipe", type=Path, default=None, help="recipe (default recipes/default.toml; --quick smoke.toml)"
    )
    p.add_argument(
        "--from-run", type=Path, default=None, help="read a finished run's report instead of training"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--interleave",
        type=positive_int,
        default=None,
        metavar="ROUNDS",
        help="also time the bridge and KD side by side: ROUNDS rounds of one epoch each on the "
        "run's first 256 pair windows (docs/benchmarks.md, 'Training cost')",
    )
    p.set_defaults(handler=run_training)

    p = which.add_parser("scale", help="peak memory and throughput of the fit stages vs corpus size")
    common(p)
    p.add_argument(
        "--recipe", type=Path, default=Path("recipes/smoke.toml"), help="recipe (default recipes/smoke.toml)"
    )
    p.add_argument(
        "--hours",
        type=_csv(float),
        default=None,
        help="simulated subject-hours per corpus (default 5,20,80; --quick 0.25,1,4)",
    )
    p.add_argument("--nproc", type=_csv(int, minimum=1), default=(1, 2), help="process counts (default 1,2)")
    p.add_argument("--work-dir", type=Path, default=None, help="where the fits run (default: a temp folder)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(handler=run_scale)

    p = which.add_parser(
        "power", help="mean watts and joules per inference from every readable energy source"
    )
    common(p)
    model(p)
    p.add_argument(
        "--seconds", type=float, default=10.0, help="seconds per interval (idle and each workload)"
    )
    p.set_defaults(handler=run_power)


# --- handlers (heavy imports inside) ------------------------------------------------------------


def _out_dir(args) -> Path:
    return args.out / "quick" if args.quick else args.out


def _fallback_run_dir() -> Path | None:
    return DEFAULT_RUN_DIR if DEFAULT_RUN_DIR.exists() else None


def _finish(report, args, plot) -> int:
    import sys

    from bridge_edge.bench import machine, table

    machine.finish(report.machine)
    out = _out_dir(args)
    path = report.write(out)
    try:
        figure = plot(out)
    except ImportError as err:  # a device install has no matplotlib: the numbers still count
        figure = None
        print(f"plots skipped: {err} (pip install matplotlib)", file=sys.stderr)
    if args.json:
        for line in report.json_lines():
            print(line)
    else:
        print("\n".join(table.SECTIONS[report.bench](report)))
    print(f"wrote {path}" + (f" and {figure}" if figure else ""), file=sys.stderr)
    return 0


def run_latency(args) -> int:
    from bridge_edge.bench import latency, machine, plots
    from bridge_edge.bench.results import BenchReport
    from bridge_edge.bench.subject import load_subject

    subject = load_subject(args.bundle, args.run_dir, _fallback_run_dir())
    if args.quick:
        cfg = latency.LatencyConfig(
            engines=("torch", "ort"),
            precisions=("fp32", "int8"),
            batches=(1,),
            windows=64,
            warmup_calls=3,
            threads=args.threads,
            device=args.device,
            matmul_seconds=0.3,
        )
    else:
        cfg = latency.LatencyConfig(
            engines=args.engines,
            precisions=args.precisions,
            batches=args.batches,
            windows=args.windows,
            threads=args.threads,
            device=args.device,
        )
    report = BenchReport("latency", machine.collect())
    raw = latency.run(subject, cfg, report)
    title = f"{subject.label}: {report.machine['cpu_model']}, {cfg.threads} threads"

    def figures(out):
        first = plots.latency_distributions(raw, out / "latency.png", title)
        plots.roofline(report.rows, report.summary, out / "roofline.png", title)
        return first

    return _finish(report, args, figures)


def run_streams(args) -> int:
    from bridge_edge.bench import machine, plots, streams
    from bridge_edge.bench.results import BenchReport
    from bridge_edge.bench.subject import load_subject

    subject = load_subject(args.bundle, args.run_dir, _fallback_run_dir())
    cfg = streams.StreamsConfig.quick(args) if args.quick else streams.StreamsConfig.full(args)
    report = BenchReport("streams", machine.collect())
    streams.run(subject, cfg, report)
    counts = cfg.searched_threads()
    threads = f"{counts[0]}-{counts[-1]} engine threads" if len(counts) > 1 else f"{cfg.threads} threads"
    title = f"{subject.label}: {report.machine['cpu_model']}, {threads}"
    return _finish(
        report,
        args,
        lambda out: plots.streams_vs_lag(report.rows, out / "streams.png", title, hop_ms=subject.hop_s * 1e3),
    )


def run_training(args) -> int:
    import tempfile

    from bridge_edge.bench import machine, plots, training
    from bridge_edge.bench.results import BenchReport

    recipe = args.recipe or Path("recipes/smoke.toml" if args.quick else "recipes/default.toml")
    report = BenchReport("training", machine.collect())
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        training.run(
            report,
            recipe=recipe,
            run_dir=Path(tmp) / "run",
            from_run=args.from_run,
            device=args.device,
            interleave=args.interleave or 0,
        )
    title = f"bridge vs KD ({recipe.name if args.from_run is None else args.from_run}): {report.machine['cpu_model']}"
    return _finish(report, args, lambda out: plots.training_bars(report.rows, out / "training.png", title))


def run_scale(args) -> int:
    import tempfile

    from bridge_edge.bench import machine, plots, scale
    from bridge_edge.bench.results import BenchReport

    hours = args.hours or (scale.QUICK_HOURS if args.quick else scale.FULL_HOURS)
    report = BenchReport("scale", machine.collect())
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        scale.run(
            report,
            recipe=args.recipe,
            hours=tuple(hours),
            processes=tuple(args.nproc),
            work_dir=args.work_dir or Path(tmp),
            device=args.device,
        )
    title = f"fit stages vs corpus ({args.recipe.name}): {report.machine['cpu_model']}"
    return _finish(report, args, lambda out: plots.scale_curves(report.rows, out / "scale.png", title))


def run_power(args) -> int:
    from bridge_edge.bench import machine, plots, power_bench
    from bridge_edge.bench.results import BenchReport
    from bridge_edge.bench.subject import load_subject
    from bridge_edge.errors import BridgeEdgeError

    report = BenchReport("power", machine.collect())
    try:
        subject = load_subject(args.bundle, None)
    except BridgeEdgeError as err:  # power sources are still probed and reported without a model
        subject = None
        report.summary["model"] = f"unmeasured: {err}"
    cfg = power_bench.PowerConfig(seconds=2.0 if args.quick else args.seconds, threads=args.threads)
    power_bench.run(subject, cfg, report)
    return _finish(
        report, args, lambda out: plots.power_bars(report.rows, out / "power.png", "energy per inference")
    )
