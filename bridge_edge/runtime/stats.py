"""Continuous latency and health measurement of a running pipeline."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from bridge_edge.runtime.engine_batch import EngineBatch

STAGES = ("preprocess", "wait", "infer", "total")  # wait: last sample arrived -> engine call


@dataclass(frozen=True)
class Percentiles:
    n: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, values) -> Percentiles:
        v = np.asarray(list(values), dtype=np.float64)
        if len(v) == 0:
            return cls(0, None, None, None)
        p50, p99 = np.percentile(v, [50, 99])
        return cls(len(v), float(p50), float(p99), float(v.max()))


class StageTimer:
    """Recent per-stage latencies (ms), bounded, safe to read from another thread."""

    def __init__(self, keep: int = 4096) -> None:
        self._values = {s: deque(maxlen=keep) for s in STAGES}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float, n: int = 1) -> None:
        if n:
            with self._lock:
                self._values[stage].append(ms)

    def percentiles(self) -> dict[str, Percentiles]:
        with self._lock:
            snap = {s: list(v) for s, v in self._values.items()}
        return {s: Percentiles.of(v) for s, v in snap.items()}


@dataclass(frozen=True)
class StreamStats:
    index: int
    name: str
    fs: float
    samples: int
    gap_samples: int  # reported missing by the source
    gaps: int
    first_gap_t: float | None  # unix s (arrival of the chunk after the first / last gap)
    last_gap_t: float | None
    lost_samples: int  # lost by the inference reader to ring overwrites
    nonfinite_samples: int  # NaN/inf samples dropped at ingest (gaps of reason "nonfinite")
    nonfinite_runs: int
    ring_overwrites: int
    lag: Percentiles  # now - newest sample's fitted time, per inference pass (blind to a backlog)
    hop_lag: Percentiles  # per hop: the window's last sample arrived -> prediction emitted
    clock_drift_ppm: float | None
    clock_jitter_ms: float | None
    clock_jumps: int  # forward jumps and resets of the device clock (re-anchored fits)
    clock_resets: int  # the device clock went backwards: a sensor reboot
    fs_estimated: float | None
    events: int
    ended: bool


@dataclass(frozen=True)
class PipelineStats:
    engine: str
    engine_description: str
    precision: str
    engine_fallbacks: list[str]
    bundle_name: str
    bundle_version: str
    hops: int
    windows_skipped: dict[str, int]
    latency: dict[str, Percentiles]
    streams: list[StreamStats] = field(default_factory=list)
    infer_calls: int = 0  # engine calls; inferred_windows / infer_calls is the mean batch
    inferred_windows: int = 0
    memory_trims: int = 0  # times free heap went back to the OS (PipelineConfig.trim_every_s)
    # every stream's recent hops pooled: last sample arrived -> emitted (queue wait + inference)
    hop_lag: Percentiles = Percentiles(0, None, None, None)
    # windows_skipped["low_sqi"] by the gate factor that pulled each down most (Prediction.sqi_cause)
    low_sqi_causes: dict[str, int] = field(default_factory=dict)
    engine_batch: EngineBatch | None = None  # most windows per engine call, and how it was chosen

    @property
    def dropped_samples(self) -> int:
        return sum(s.gap_samples + s.lost_samples + s.nonfinite_samples for s in self.streams)

    def as_json(self, ended: str | None = None) -> dict:
        """Plain data for ``run --json``'s summary object (``strict_json`` prints it)."""
        d = asdict(self)
        d["dropped_samples"] = self.dropped_samples
        d["overwrites"] = self.overwrites
        if ended is not None:
            d["ended"] = ended
        return d

    @property
    def overwrites(self) -> int:
        return sum(s.ring_overwrites for s in self.streams)

    @classmethod
    def collect(cls, pipeline) -> PipelineStats:
        streams = []
        for st in pipeline.streams:
            clock = st.clock.stats() if st.clock is not None else None
            streams.append(
                StreamStats(
                    index=st.index,
                    name=st.info.name,
                    fs=st.info.fs,
                    samples=st.pushed,
                    gap_samples=st.gap_samples,
                    gaps=st.gaps,
                    first_gap_t=pipeline._unix(st.gap_first_last_ns[0]) if st.gap_first_last_ns else None,
                    last_gap_t=pipeline._unix(st.gap_first_last_ns[1]) if st.gap_first_last_ns else None,
                    lost_samples=st.lost_samples,
                    nonfinite_samples=st.nonfinite_samples,
                    nonfinite_runs=st.nonfinite_runs,
                    ring_overwrites=st.ring.overwritten_samples,
                    lag=Percentiles.of(list(st.lag_ms)),
                    hop_lag=Percentiles.of(list(st.hop_lag_ms)),
                    clock_drift_ppm=clock.drift_ppm if clock else None,
                    clock_jitter_ms=clock.jitter_ms if clock else None,
                    clock_jumps=clock.jumps if clock else 0,
                    clock_resets=clock.resets if clock else 0,
                    fs_estimated=clock.fs_estimated if clock else None,
                    events=st.events,
                    ended=st.ended,
                )
            )
        engine = pipeline.engine
        return cls(
            engine=engine.name,
            engine_description=engine.description,
            precision=engine.precision,
            engine_fallbacks=list(pipeline.choice.fallbacks),
            bundle_name=pipeline.model.bundle_name,
            bundle_version=pipeline.model.bundle_version,
            hops=pipeline.hops,
            windows_skipped=dict(pipeline.windows_skipped),
            latency=pipeline._timer.percentiles(),
            streams=streams,
            infer_calls=pipeline.infer_calls,
            inferred_windows=pipeline.inferred_windows,
            memory_trims=pipeline.memory_trims,
            hop_lag=Percentiles.of([v for st in pipeline.streams for v in list(st.hop_lag_ms)]),
            low_sqi_causes=dict(sorted(pipeline.low_sqi_causes.items())),
            engine_batch=pipeline.engine_batch,
        )
