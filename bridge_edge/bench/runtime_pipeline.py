"""Runtime measurements that ``bridge-edge bench`` reports (functions returning dataclasses).

- ``ingest_throughput``: ingest -> ring -> streaming DSP -> window cutting on one thread, in
  samples per second (no model): the cost of the per-stream path itself.
- ``pipeline_latency``: the full pipeline on paced streams: end-to-end latency (arrival of a
  window's last sample -> prediction emitted) against the engine call alone, p50/p99.
- ``max_realtime_streams``: the most concurrent paced PPG streams (doubling, then bisecting)
  for which the pipeline keeps up: nothing lost, every hop emitted, end-to-end p99 under a hop.

Streams are pre-rendered simulated PPG replayed at real-time pace (``devices.replay.from_array``:
the replay source, stamped as a live sensor's are), so the
simulator's own rendering cost is not charged to the runtime; in the streams trial their
starts are spread over one hop, as independent patients' streams would be. Nothing here asserts a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from bridge_edge.devices.base import Chunk
from bridge_edge.devices.replay import from_array
from bridge_edge.runtime.engine_batch import EngineBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThroughputResult:
    fs: float
    chunk: int  # samples per pushed chunk
    samples: int
    windows: int
    seconds: float  # wall clock
    cpu_seconds: float  # this thread's CPU time (what one core spent, even on a busy machine)
    samples_per_s: float  # per wall second
    samples_per_cpu_s: float


@dataclass(frozen=True)
class StageSplit:
    """Where a hop's end-to-end time went, p50 and p99 in ms per stage: the streaming DSP
    (``preprocess``), waiting for the engine (``wait``: last sample arrived -> engine call, a
    backlog or a batch filling) and the engine call (``infer``, per call)."""

    preprocess_p50_ms: float | None
    preprocess_p99_ms: float | None
    wait_p50_ms: float | None
    wait_p99_ms: float | None
    infer_p50_ms: float | None
    infer_p99_ms: float | None

    @classmethod
    def of(cls, latency: dict) -> StageSplit:
        """From ``PipelineStats.latency`` (stage -> Percentiles)."""
        pre, wait, infer = latency["preprocess"], latency["wait"], latency["infer"]
        return cls(pre.p50_ms, pre.p99_ms, wait.p50_ms, wait.p99_ms, infer.p50_ms, infer.p99_ms)


@dataclass(frozen=True)
class LatencyResult:
    engine: str
    precision: str
    streams: int
    hops: int
    infer_p50_ms: float | None
    infer_p99_ms: float | None
    preprocess_p99_ms: float | None
    total_p50_ms: float | None
    total_p99_ms: float | None
    overhead_p99_ms: float | None  # total p99 - infer p99
    lag_p99_ms: float | None  # now - newest sample, worst stream: blind to an inference backlog
    dropped_samples: int
    hop_lag_p50_ms: float | None = None  # per hop, all streams: last sample arrived -> emitted
    hop_lag_p99_ms: float | None = None
    mean_batch: float | None = None  # windows per engine call
    split: StageSplit | None = None
    engine_batch: EngineBatch | None = None  # most windows per engine call, and how it was chosen


@dataclass(frozen=True)
class StreamTrial:
    streams: int
    keeps_up: bool
    hops: int
    expected_hops: int
    total_p99_ms: float | None
    lost_samples: int
    reason: str
    hop_lag_p50_ms: float | None = None
    hop_lag_p99_ms: float | None = None
    mean_batch: float | None = None
    split: StageSplit | None = None
    engine_batch: EngineBatch | None = None


@dataclass(frozen=True)
class StreamsResult:
    engine: str
    precision: str
    threads: int | None
    seconds_per_trial: float
    max_streams: int
    trials: list[StreamTrial] = field(default_factory=list)


def simulated_ppg(seconds: float, fs: float, seed: int, script=(("sinus", 3600.0),)) -> np.ndarray:
    from bridge_edge.signals.simulator import PatientSimulator

    return PatientSimulator(seed, fs_ppg=fs, fs_ecg=fs, script=list(script)).generate(seconds).ppg


def default_model_input(fs_in: float = 125.0, window_s: float = 10.0, hop_s: float = 2.0):
    from bridge_edge.runtime.stream import ModelInput
    from bridge_edge.signals.preprocess import PreprocessSpec

    spec = PreprocessSpec()
    return ModelInput(
        "ppg",
        spec.fs_out,
        int(window_s * spec.fs_out),
        int(hop_s * spec.fs_out),
        ("ppg",),
        spec,
        ["sinus", "afib"],
        "afib",
        "bench",
        "0",
    )


def ingest_throughput(
    fs: float = 500.0, chunk: int = 64, seconds: float = 600.0, model=None
) -> ThroughputResult:
    """Samples/s through ingest + ring + streaming DSP + window cutting, on one thread.

    Every chunk of ``chunk`` samples is ingested (clock fit, ring push) and then the reader is
    asked to advance, as the inference thread is woken per chunk; it reads and filters once
    the next window can be completed (``StreamState.ready``).
    """
    from bridge_edge.runtime.stats import StageTimer
    from bridge_edge.runtime.stream import StreamState

    model = model or default_model_input()
    n = int(seconds * fs)
    x = np.resize(simulated_ppg(min(seconds, 120.0), fs, seed=0), n).astype(np.float32).reshape(-1, 1)
    state = StreamState(0, from_array(x[:1], fs), model, ring_seconds=10.0)
    timer = StageTimer()
    step_ns = int(1e9 / fs * chunk)
    chunks = [Chunk(x[i : i + chunk], k * step_ns, None, k) for k, i in enumerate(range(0, n, chunk))]
    windows = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    for c in chunks:
        state.ingest(c)  # host stamps on a perfect schedule
        windows += len(state.advance(timer))
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    return ThroughputResult(fs, chunk, n, windows, elapsed, cpu, n / elapsed, n / max(cpu, 1e-9))


def paced_sources(
    n_streams: int, seconds: float, fs: float, speed: float = 1.0, chunk: int = 5, stagger_s: float = 0.0
):
    """Pre-rendered PPG streams paced at ``speed``; starts spread evenly over ``stagger_s``."""
    return [
        from_array(
            simulated_ppg(seconds, fs, seed=100 + i),
            fs,
            chunk_sizes=(chunk,),
            speed=speed,
            name=f"ppg{i}",
            start_delay_s=stagger_s * i / n_streams,
        )
        for i in range(n_streams)
    ]


def pipeline_latency(
    bundle,
    engine: str = "auto",
    precision: str = "auto",
    streams: int = 1,
    seconds: float = 60.0,
    speed: float = 4.0,
    threads: int | None = None,
    batch_wait_s: float = 0.05,
    engine_batch: int | None = None,
) -> LatencyResult:
    """Run ``streams`` paced PPG streams (``speed`` x real time, starts spread over one hop)."""
    from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig

    fs = 125.0
    stagger_s = float(bundle.manifest.input.hop_s) / speed if streams > 1 else 0.0
    pipe = Pipeline(
        paced_sources(streams, seconds, fs, speed, stagger_s=stagger_s),
        bundle,
        engine=engine,
        precision=precision,
        config=PipelineConfig(
            threads=threads, sqi_policy="off", batch_wait_s=batch_wait_s, engine_batch=engine_batch
        ),
    )
    stats = pipe.run_until_done(timeout_s=seconds / speed + stagger_s + 30.0)
    lat = stats.latency
    infer, total = lat["infer"], lat["total"]
    lags = [s.lag.p99_ms for s in stats.streams if s.lag.p99_ms is not None]
    return LatencyResult(
        engine=stats.engine,
        precision=stats.precision,
        streams=streams,
        hops=stats.hops,
        infer_p50_ms=infer.p50_ms,
        infer_p99_ms=infer.p99_ms,
        preprocess_p99_ms=lat["preprocess"].p99_ms,
        total_p50_ms=total.p50_ms,
        total_p99_ms=total.p99_ms,
        overhead_p99_ms=None if total.p99_ms is None or infer.p99_ms is None else total.p99_ms - infer.p99_ms,
        lag_p99_ms=max(lags) if lags else None,
        dropped_samples=stats.dropped_samples,
        hop_lag_p50_ms=stats.hop_lag.p50_ms,
        hop_lag_p99_ms=stats.hop_lag.p99_ms,
        mean_batch=_mean_batch(stats),
        split=StageSplit.of(lat),
        engine_batch=stats.engine_batch,
    )


def _mean_batch(stats) -> float | None:
    return stats.inferred_windows / stats.infer_calls if stats.infer_calls else None


def _trial(
    bundle,
    engine: str,
    precision: str,
    n: int,
    seconds: float,
    threads: int | None,
    batch_wait_s: float = 0.05,
    engine_batch: int | None = None,
) -> StreamTrial:
    from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig

    fs = 125.0
    hop_s = float(bundle.manifest.input.hop_s)
    pipe = Pipeline(
        paced_sources(n, seconds, fs, stagger_s=hop_s),
        bundle,
        engine=engine,
        precision=precision,
        config=PipelineConfig(
            threads=threads, sqi_policy="off", batch_wait_s=batch_wait_s, engine_batch=engine_batch
        ),
    )
    stats = pipe.run_until_done(timeout_s=seconds + hop_s + 30.0)
    hop_ms = hop_s * 1e3
    per_stream = (int(seconds * fs) - pipe.model.window_len) // pipe.model.hop_len + 1  # fs is the model rate
    expected = n * max(per_stream, 0)
    lost = sum(s.lost_samples for s in stats.streams)
    p99 = stats.latency["total"].p99_ms
    reasons = []
    if lost:
        reasons.append(f"{lost} samples lost to ring overwrites")
    if stats.hops < expected:
        reasons.append(f"{stats.hops} of {expected} hops emitted")
    if p99 is None or p99 > hop_ms:
        reasons.append(f"end-to-end p99 {p99} ms exceeds the {hop_ms:.0f} ms hop")
    # An inference backlog shows in the hop lag (a window's last sample arrived -> its prediction
    # emitted, every stream's hops), not in the lag sampled by the reader (now - newest sample).
    hop_lag = stats.hop_lag
    if hop_lag.p99_ms is not None and hop_lag.p99_ms > hop_ms:
        reasons.append(f"hop lag p99 {hop_lag.p99_ms:.0f} ms exceeds the {hop_ms:.0f} ms hop")
    lags = [s.lag.p99_ms for s in stats.streams if s.lag.p99_ms is not None]
    if lags and max(lags) > hop_ms:
        reasons.append(f"lag p99 {max(lags):.0f} ms exceeds the {hop_ms:.0f} ms hop")
    return StreamTrial(
        n,
        not reasons,
        stats.hops,
        expected,
        p99,
        lost,
        "; ".join(reasons) or "keeps up",
        hop_lag.p50_ms,
        hop_lag.p99_ms,
        _mean_batch(stats),
        StageSplit.of(stats.latency),
        stats.engine_batch,
    )


def max_realtime_streams(
    bundle,
    engine: str = "auto",
    precision: str = "int8",
    seconds: float = 30.0,
    threads: int | None = None,
    limit: int = 64,
    progress=None,
    start: int = 1,
    batch_wait_s: float = 0.05,
    engine_batch: int | None = None,
) -> StreamsResult:
    """Doubling from ``start`` then bisection over the stream count; each trial runs ``seconds``
    in real time (a quick search starts higher so it still reaches a knee at tens of streams)."""
    trials: list[StreamTrial] = []

    def ok(n: int) -> bool:
        t = _trial(bundle, engine, precision, n, seconds, threads, batch_wait_s, engine_batch)
        trials.append(t)
        log.info("streams %d: %s", n, t.reason)
        if progress is not None:
            progress(t)
        return t.keeps_up

    good, bad = 0, None
    n = max(1, min(start, limit))
    while n <= limit:
        if ok(n):
            good, n = n, n * 2
        else:
            bad = n
            break
    if bad is not None:
        while bad - good > max(1, good // 8):  # bisect to ~12 %
            mid = (good + bad) // 2
            if ok(mid):
                good = mid
            else:
                bad = mid
    from bridge_edge.runtime.engines import resolve_precision

    return StreamsResult(
        engine, resolve_precision(precision, list(bundle.manifest.precisions)), threads, seconds, good, trials
    )
