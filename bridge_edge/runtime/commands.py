"""`bridge-edge run`: the streaming pipeline on one or more sources (see bridge_edge/cli.py)."""

from __future__ import annotations

import argparse

from bridge_edge.runtime.engines.names import ENGINE_CHOICES, PRECISION_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands. Handlers import heavy modules lazily."""
    p = subparsers.add_parser(
        "run",
        help="run the streaming pipeline; one prediction line per hop",
        description="Stream one or more sources through a bundle: one prediction per hop per stream "
        "(JSON lines with --json, then one summary object). Ends with exit 0 at the end of a replay, "
        "after --seconds, or on Ctrl-C.",
    )
    p.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="URL",
        help="source URL (repeatable): sim://, replay://, serial://, ble://, lsl://, loop://",
    )
    p.add_argument(
        "--bundle", default="default", help="bundle directory, .tar or installed name (default: embedded)"
    )
    p.add_argument(
        "--engine", choices=ENGINE_CHOICES, default="auto", help="inference backend (auto: trt, else ort)"
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="model precision (auto: int8 if present)",
    )
    p.add_argument("--record", metavar="DIR", help="also record the raw streams to DIR (replayable)")
    p.add_argument(
        "--lsl-out",
        metavar="NAME",
        help="also publish predictions as the LSL stream NAME (one sample per hop: class probabilities "
        "+ label index; needs the lsl extra)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per hop on stdout")
    p.add_argument("--seconds", type=positive_float, help="stop after this many seconds (> 0)")
    p.add_argument(
        "--gap-policy",
        choices=("flag", "skip"),
        default="flag",
        help="windows overlapping missing samples: infer and flag, or skip",
    )
    p.add_argument(
        "--sqi-policy",
        choices=("skip", "flag", "off"),
        default="skip",
        help="windows below the SQI threshold: no model call, call and flag, or no gate",
    )
    p.add_argument(
        "--no-regular-rhythm-rule",
        action="store_true",
        help="report the model's AF probability as is, also where the beats are regular once "
        "isolated premature beats are taken out (docs/runtime.md)",
    )
    p.add_argument(
        "--threads", type=positive_int, help="ONNX Runtime intra-op threads, >= 1 (default: cores - 1)"
    )
    p.add_argument(
        "--batch-wait-ms",
        type=non_negative_float,
        default=50.0,
        help="hold a ready window up to this long so other streams' windows share its engine call (0: never)",
    )
    p.add_argument(
        "--engine-batch",
        type=positive_int,
        help="most windows per engine call (default: on a CPU, the call size measured cheapest per "
        "window at start; on a GPU, every window gathered, up to 64)",
    )
    p.add_argument(
        "--lossless",
        action="store_true",
        help="replays: let ingest wait for inference instead of overwriting (never for live sensors)",
    )
    p.add_argument(
        "--run-dir", help="torch engine only (required by it): the fit RUN_DIR holding the composed module"
    )
    p.set_defaults(handler=run_command)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (``--seconds 0``, ``-1``, ``nan`` are refused)."""
    import math

    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    import math

    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--threads 0`` is refused)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def run_command(args: argparse.Namespace) -> int:
    import logging
    import sys
    import threading

    from bridge_edge.devices.base import open_source
    from bridge_edge.errors import ConfigError
    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.runtime.engines import select_engine
    from bridge_edge.runtime.outputs import strict_json
    from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
    from bridge_edge.runtime.report import format_prediction, summary_lines

    log = logging.getLogger("bridge_edge.run")
    if args.engine == "torch" and args.run_dir is None:
        raise ConfigError(
            "--engine torch runs the composed torch module of a fit run and needs --run-dir RUN_DIR; "
            "expected --run-dir, or --engine ort|auto for the bundle",
            key="run_dir",
            value=None,
            expected="RUN_DIR of `bridge-edge fit`",
        )
    config = PipelineConfig(
        gap_policy=args.gap_policy,
        sqi_policy=args.sqi_policy,
        regular_rhythm_rule=not args.no_regular_rhythm_rule,
        threads=args.threads,
        lossless=args.lossless,
        batch_wait_s=args.batch_wait_ms / 1e3,
        engine_batch=args.engine_batch,
    )
    sources = [open_source(url) for url in args.source]  # a bad URL fails first, before any loading
    try:
        bundle = load_bundle(args.bundle, selftest=args.precision)  # golden windows, this precision
        choice = select_engine(
            args.engine, bundle, args.precision, threads=args.threads, run_dir=args.run_dir
        )
        pipe = Pipeline(sources, bundle, record_dir=args.record, config=config, engine_choice=choice)
        outlet = None
        if args.lsl_out:
            from bridge_edge.runtime.lsl_out import LslPredictionOutlet

            outlet = LslPredictionOutlet(
                args.lsl_out,
                list(bundle.manifest.output.labels),
                bundle.manifest.input.hop_s,
                len(sources),
                f"{bundle.manifest.name} {bundle.manifest.version}",
            )
            pipe.add_listener(outlet)
    except BaseException:
        for source in sources:
            source.close()
        raise
    lock = threading.Lock()

    class Printer:
        def on_prediction(self, pred) -> None:
            line = strict_json(pred.as_json()) if args.json else format_prediction(pred)
            with lock:
                print(line, flush=True)

    pipe.add_listener(Printer())
    log.info(
        "engine %s (%s), bundle %s %s",
        choice.engine.name,
        choice.engine.description,
        bundle.manifest.name,
        bundle.manifest.version,
    )
    pipe.start()
    ended = "seconds"
    try:
        if pipe.wait(args.seconds):
            ended = "source_end"
    except KeyboardInterrupt:
        ended = "interrupted"
        log.info("interrupted; stopping the pipeline")
    finally:
        pipe.stop()
        if outlet is not None:
            outlet.close()
    stats = pipe.stats()
    if pipe.errors and stats.hops == 0 and not any(st.samples for st in stats.streams):
        raise pipe.errors[0]  # nothing ran: the error is the whole story, in one line
    for line in summary_lines(stats, ended):
        print(line, file=sys.stderr)
    if args.json:  # the last stdout line: one summary object, so a reader knows the run ended
        with lock:
            print(strict_json({"summary": stats.as_json(ended)}), flush=True)
    if pipe.errors:
        raise pipe.errors[0]
    return 0
