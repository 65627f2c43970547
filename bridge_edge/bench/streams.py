"""``bench streams``: the most concurrent real-time streams one machine keeps up with.

The measurement is the runtime's own (``bridge_edge.bench.runtime_pipeline``), so it is the pipeline
``bridge-edge run`` runs: pre-rendered simulated PPG replayed at real-time pace into the full
pipeline. ``max_realtime_streams`` doubles then bisects the stream count; a count keeps up when
nothing is lost, every hop is emitted and the end-to-end p99 stays under one hop. At the
largest count that keeps up, one more paced run (``pipeline_latency``) gives the latency and
lag percentiles there. The per-stream ingest path alone (no model) is reported as samples/s.

Hop lag (a window's last sample arrived -> its prediction emitted: queue wait + inference) is
what sees an inference backlog; the older ``lag_p99_ms`` (now - newest sample when the reader
ran) does not and is kept for comparison. Windows of different streams that become ready
within ``batch_wait_hops`` of a hop share one engine call (``runtime/batching.py``);
``mean_batch`` is windows per call.

The thread split. Ingest and the streaming DSP run on one thread per stream; the inference
thread's engine uses ``threads`` intra-op threads (``run --threads``; the runtime's default is
cores - 1, so ingest keeps a core). With ``thread_counts`` (``--thread-split``: every count from
1 to ``--threads``) the knee is searched once per count, and a ``kind: "split"`` row names the
count that keeps up the most streams (fewer threads on a tie: the cores go to ingest and DSP).

Rows: ``kind: "trial"`` (one per stream count tried), ``kind: "max"`` (the answer per
engine/precision/threads, with percentiles at that count), ``kind: "split"`` (the thread count
chosen from those answers), ``kind: "ingest"`` (throughput).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from bridge_edge.bench.results import STATUS_OK, STATUS_UNMEASURED, BenchReport, Unmeasured
from bridge_edge.bench.subject import Subject, open_engine

log = logging.getLogger(__name__)

CONFIRM_TRIES = 3  # counts run again at most per search: its answer, then lower counts that kept up


@dataclass(frozen=True)
class StreamsConfig:
    engines: tuple[str, ...] = ("ort",)
    precisions: tuple[str, ...] = ("fp32", "int8")
    trial_seconds: float = 30.0  # real time per trial (must exceed the model window)
    limit: int = 512  # largest stream count tried, --max-streams (issue #19: 128 kept up, 256 did not)
    start: int = 1  # first stream count tried; the search doubles from here
    ingest_seconds: float = 600.0  # signal pushed through the ingest path (not wall time)
    threads: int = 1
    batch_wait_hops: float = 0.1  # cross-stream batching deadline, as a fraction of the hop
    thread_counts: tuple[int, ...] = ()  # engine intra-op threads to search the knee at; () = (threads,)
    engine_batch: int | None = None  # most windows per engine call; None: measured (runtime/engine_batch.py)

    def searched_threads(self) -> tuple[int, ...]:
        return self.thread_counts or (self.threads,)

    @classmethod
    def full(cls, args) -> StreamsConfig:
        return cls(
            engines=args.engines,
            precisions=args.precisions,
            trial_seconds=args.trial_seconds,
            start=getattr(args, "start", cls.start),
            limit=getattr(args, "max_streams", cls.limit),
            threads=args.threads,
            batch_wait_hops=getattr(args, "batch_wait_hops", cls.batch_wait_hops),
            thread_counts=_split_counts(args),
            engine_batch=getattr(args, "engine_batch", None),
        )

    @classmethod
    def quick(cls, args) -> StreamsConfig:
        return cls(
            engines=("ort",),
            precisions=("int8",),
            trial_seconds=20.0,  # two hops per stream after the first window, so a backlog shows
            start=8,  # 8, 16, 32, 64: still finds a knee at tens of streams within ~2 minutes
            limit=64,
            ingest_seconds=60.0,
            threads=args.threads,
            batch_wait_hops=getattr(args, "batch_wait_hops", cls.batch_wait_hops),
            thread_counts=_split_counts(args),
            engine_batch=getattr(args, "engine_batch", None),
        )


def _split_counts(args) -> tuple[int, ...]:
    return tuple(range(1, args.threads + 1)) if getattr(args, "thread_split", False) else ()


@dataclass(frozen=True)
class StreamsRow:
    kind: str  # "trial" | "max" | "split" | "ingest"
    engine: str
    precision: str
    status: str
    reason: str | None = None
    threads: int | None = None  # the engine's intra-op threads (split: the chosen count)
    streams: int | None = None  # trial: streams tried; max: the answer
    keeps_up: bool | None = None
    capped: bool | None = None  # max: the search stopped at its limit, so the answer is a lower bound
    # max: the run at the answer (for its percentiles) kept up by the same rule; a trial that
    # kept up once at the knee may not the next time
    confirmed: bool | None = None
    hops: int | None = None
    expected_hops: int | None = None
    lost_samples: int | None = None
    max_realtime_streams: int | None = None
    search_max_streams: int | None = None  # max: the most streams a trial kept up, confirmed or not
    e2e_p50_ms: float | None = None  # arrival of a window's last sample -> prediction emitted
    e2e_p99_ms: float | None = None
    # The hop's time split by stage (runtime_pipeline.StageSplit): streaming DSP, waiting for
    # the engine, the engine call.
    preprocess_p50_ms: float | None = None
    preprocess_p99_ms: float | None = None
    wait_p50_ms: float | None = None
    wait_p99_ms: float | None = None
    infer_p50_ms: float | None = None
    infer_p99_ms: float | None = None
    lag_p99_ms: float | None = None  # now - newest sample, worst stream (blind to a backlog)
    hop_lag_p50_ms: float | None = None  # per hop, all streams: last sample arrived -> emitted
    hop_lag_p99_ms: float | None = None
    mean_batch: float | None = None  # windows per engine call
    engine_batch: int | None = None  # the most windows one engine call carried (runtime/engine_batch.py)
    # how engine_batch was chosen: "set", "measured" (then the ms a window by call size), "device"
    engine_batch_how: str | None = None
    engine_batch_ms: dict[int, float] | None = None
    samples_per_s: float | None = None  # ingest only
    streams_by_threads: dict[int, int] | None = None  # split only: max streams at each thread count
    trial_seconds: float | None = None
    bench: str = "streams"


def _engine_batch(eb) -> dict:
    """StreamsRow's engine-batch fields from a ``runtime/engine_batch.EngineBatch`` (none when absent)."""
    if eb is None:
        return {}
    return {"engine_batch": eb.size, "engine_batch_how": eb.how, "engine_batch_ms": eb.per_window_ms or None}


def _split(split) -> dict:
    """StreamsRow's stage fields from a ``runtime_pipeline.StageSplit`` (none when absent)."""
    return {} if split is None else {k: None if v is None else round(v, 3) for k, v in asdict(split).items()}


def _engine_reason(subject: Subject, engine: str, precision: str, threads: int) -> str | None:
    """Why this engine cannot run here (checked once, so the trials never silently fall back)."""
    if engine == "torch":
        return "the runtime's stream trials open engines without a run dir, so torch would fall back to ORT"
    opened = open_engine(subject, engine, precision, threads)
    if isinstance(opened, Unmeasured):
        return opened.reason
    opened.close()
    return None


def run(subject: Subject, cfg: StreamsConfig, report: BenchReport) -> None:
    from bridge_edge.bench import runtime_pipeline as runtime_bench

    ingest = runtime_bench.ingest_throughput(seconds=cfg.ingest_seconds)
    report.add(
        StreamsRow(
            "ingest", "none", "none", STATUS_OK, samples_per_s=round(ingest.samples_per_s, 1), streams=1
        )
    )
    split: dict[str, dict] = {}
    for engine in cfg.engines:
        for precision in cfg.precisions:
            answers = {
                threads: _search(subject, cfg, report, engine, precision, threads)
                for threads in cfg.searched_threads()
            }
            kept = {t: a[0] for t, a in answers.items() if a is not None}
            confirmed = {t for t, a in answers.items() if a is not None and a[1]}
            if len(cfg.searched_threads()) > 1 and kept:
                # confirmed answers first, then the most streams, then the fewer threads
                chosen = max(kept, key=lambda t: (t in confirmed, kept[t], -t))
                report.add(
                    StreamsRow(
                        "split",
                        engine,
                        precision,
                        STATUS_OK,
                        threads=chosen,
                        max_realtime_streams=kept[chosen],
                        streams_by_threads=kept,
                        trial_seconds=cfg.trial_seconds,
                    )
                )
                split[f"{engine} {precision}"] = {
                    "threads": chosen,
                    "streams_by_threads": kept,
                    "confirmed_threads": sorted(confirmed),
                }
    report.summary.update(
        subject=subject.label,
        config=asdict(cfg),
        hop_ms=subject.hop_s * 1e3,
        keeps_up_rule="nothing lost, every hop emitted, end-to-end and hop lag p99 under one hop",
        search="doubling from config.start, then bisection to ~12 %; capped at config.limit",
    )
    if split:  # engine/precision -> the intra-op thread count that kept up the most streams
        report.summary["thread_split"] = split


def _search(
    subject: Subject, cfg: StreamsConfig, report: BenchReport, engine: str, precision: str, threads: int
) -> tuple[int, bool] | None:
    """The knee for one engine/precision at ``threads`` intra-op threads: its trial and max rows;
    returns (streams kept up, whether the run at that count confirmed it), None: unmeasured."""
    from bridge_edge.bench import runtime_pipeline as runtime_bench

    def add_max(status: str, **fields) -> None:
        report.add(StreamsRow("max", engine, precision, status, threads=threads, **fields))

    reason = _engine_reason(subject, engine, precision, threads)
    if reason is not None:
        add_max(STATUS_UNMEASURED, reason=reason)
        return None
    log.info(
        "bench streams: %s %s, %d thread(s), %.0f s per trial", engine, precision, threads, cfg.trial_seconds
    )
    result = runtime_bench.max_realtime_streams(
        subject.bundle,
        engine=engine,
        precision=precision,
        seconds=cfg.trial_seconds,
        threads=threads,
        limit=cfg.limit,
        start=cfg.start,
        batch_wait_s=cfg.batch_wait_hops * subject.hop_s,
        engine_batch=cfg.engine_batch,
    )
    for t in result.trials:
        report.add(
            StreamsRow(
                "trial",
                engine,
                precision,
                STATUS_OK,
                reason=t.reason,
                threads=threads,
                streams=t.streams,
                keeps_up=t.keeps_up,
                hops=t.hops,
                expected_hops=t.expected_hops,
                lost_samples=t.lost_samples,
                e2e_p99_ms=t.total_p99_ms,
                hop_lag_p50_ms=t.hop_lag_p50_ms,
                hop_lag_p99_ms=t.hop_lag_p99_ms,
                mean_batch=t.mean_batch,
                trial_seconds=cfg.trial_seconds,
                **_split(t.split),
                **_engine_batch(t.engine_batch),
            )
        )
    if result.max_streams == 0:
        add_max(
            STATUS_OK,
            max_realtime_streams=0,
            reason="not even one stream keeps up",
            trial_seconds=cfg.trial_seconds,
        )
        return 0, True
    answer, at_max, missed = _confirm(subject, cfg, engine, precision, threads, result)
    if answer is None:
        add_max(STATUS_UNMEASURED, reason=f"the pipeline ran {at_max.engine} {at_max.precision} instead")
        return None
    capped = answer >= cfg.limit
    notes = [f"search cap {cfg.limit} reached: the true maximum is at least this"] if capped else []
    notes += [f"{n} kept up in the search but not when run again: " + "; ".join(m) for n, m in missed.items()]
    add_max(
        STATUS_OK,
        streams=answer,
        capped=capped,
        confirmed=answer not in missed,
        reason="; ".join(notes) or None,
        max_realtime_streams=answer,
        search_max_streams=result.max_streams,
        hops=at_max.hops,
        lost_samples=at_max.dropped_samples,
        e2e_p50_ms=at_max.total_p50_ms,
        e2e_p99_ms=at_max.total_p99_ms,
        **_split(at_max.split),
        lag_p99_ms=at_max.lag_p99_ms,
        hop_lag_p50_ms=at_max.hop_lag_p50_ms,
        hop_lag_p99_ms=at_max.hop_lag_p99_ms,
        mean_batch=None if at_max.mean_batch is None else round(at_max.mean_batch, 2),
        trial_seconds=cfg.trial_seconds,
        **_engine_batch(at_max.engine_batch),
    )
    return answer, answer not in missed


def _confirm(subject: Subject, cfg: StreamsConfig, engine: str, precision: str, threads: int, result):
    """Run the search's answer once more, and while that run misses the keep-up rule, the next
    lower counts whose trials kept up (``CONFIRM_TRIES`` in all): near the knee one trial can keep
    up by luck. Returns (the answer, the run reported for it, the misses by count tried); the
    answer is the first count confirmed, else the search's own; None with the run when the
    pipeline ran another engine or precision than asked."""
    from bridge_edge.bench import runtime_pipeline as runtime_bench

    lower = sorted({t.streams for t in result.trials if t.keeps_up and t.streams < result.max_streams})
    hop_ms = subject.hop_s * 1e3
    missed: dict[int, list[str]] = {}
    first = None
    for n in [result.max_streams, *reversed(lower)][:CONFIRM_TRIES]:
        run = runtime_bench.pipeline_latency(
            subject.bundle,
            engine=engine,
            precision=precision,
            streams=n,
            seconds=cfg.trial_seconds,
            speed=1.0,
            threads=threads,
            batch_wait_s=cfg.batch_wait_hops * subject.hop_s,
            engine_batch=cfg.engine_batch,
        )
        if (run.engine, run.precision) != (engine, precision):
            return None, run, missed
        misses = [
            f"{name} {value:.0f} ms exceeds the {hop_ms:.0f} ms hop"
            for name, value in (("end-to-end p99", run.total_p99_ms), ("hop lag p99", run.hop_lag_p99_ms))
            if value is not None and value > hop_ms
        ] + ([f"{run.dropped_samples} samples lost"] if run.dropped_samples else [])
        if not misses:
            return n, run, missed
        missed[n] = misses
        first = first or run
    return result.max_streams, first, missed
