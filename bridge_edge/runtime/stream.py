"""Per-stream state of the pipeline: ring, clock, streaming DSP and window cutter.

``StreamState.ingest`` runs on the stream's ingest thread (stamp, push); ``advance`` runs on the
inference thread (read new rows, fill gaps and overwrite losses, filter + resample, cut
windows). Work is per chunk and vectorised; the only loops are over gaps and windows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge_edge.devices.base import Chunk, Source, StreamInfo
from bridge_edge.errors import BundleError, ConfigError
from bridge_edge.runtime.clock import ClockMapper
from bridge_edge.runtime.ring import RingBuffer, RingCursor
from bridge_edge.runtime.stream_dsp import StreamingPreprocessor, warmup_seconds
from bridge_edge.runtime.windowing import GapSpan, Window, WindowCutter
from bridge_edge.signals.preprocess import PreprocessSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInput:
    """What the pipeline needs from a bundle manifest."""

    modality: str
    fs: float
    window_len: int
    hop_len: int
    channels: tuple[str, ...]
    preprocess: PreprocessSpec
    labels: list[str]
    positive_label: str | None
    bundle_name: str
    bundle_version: str

    @classmethod
    def from_manifest(cls, manifest) -> ModelInput:
        inp, out = manifest.input, manifest.output
        spec = PreprocessSpec.from_dict(inp.preprocess)
        if abs(spec.fs_out - inp.fs) > 1e-9:
            raise BundleError(
                f"bundle {manifest.name}: preprocess fs_out {spec.fs_out} Hz differs from input fs {inp.fs} Hz",
                file="manifest.json",
                problems=["input.preprocess.fs_out"],
            )
        return cls(
            modality=inp.modality,
            fs=float(inp.fs),
            window_len=round(inp.fs * inp.window_s),
            hop_len=round(inp.fs * inp.hop_s),
            channels=tuple(inp.channels),
            preprocess=spec,
            labels=list(out.labels),
            positive_label=out.positive_label,
            bundle_name=manifest.name,
            bundle_version=manifest.version,
        )


@dataclass(frozen=True)
class PendingGap:
    """Samples missing from the stream right before ring index ``ring_index``."""

    ring_index: int
    missing: int
    t_host_ns: int  # arrival of the chunk that reported (or carried) them
    nonfinite: bool  # NaN/inf values dropped at ingest (else: reported missing by the source)


@dataclass(frozen=True)
class WindowJob:
    """A complete window waiting for the gate and the engine."""

    stream_index: int
    window: Window
    t_end_ns: float  # fitted host-monotonic time of the window's last sample
    arrival_ns: int  # arrival of the input sample that completed the window
    dsp_ms: float  # time spent reading + filtering + cutting in the pass that produced it
    warmup: bool  # the window starts while the filter still rings from its start at rest


def model_channel(info: StreamInfo, model: ModelInput) -> int:
    """Index of the source channel the model reads (e.g. "ppg" in ("ecg", "ppg"))."""
    wanted = [c.lower() for c in model.channels] + [model.modality.lower()]
    names = [c.lower() for c in info.channels]
    for w in wanted:
        for i, name in enumerate(names):
            if name == w or name.startswith(w):
                return i
    if len(names) == 1:
        log.warning(
            "stream %s channel %r used as the model's %s input", info.name, info.channels[0], model.modality
        )
        return 0
    raise ConfigError(
        f"stream {info.name} has channels {list(info.channels)}; the bundle expects {model.modality} "
        f"({', '.join(model.channels)})",
        key="channels",
        value=list(info.channels),
        expected=list(model.channels),
    )


class StreamState:
    def __init__(self, index: int, source: Source, model: ModelInput, ring_seconds: float) -> None:
        self.index = index
        self.source = source
        self.info = source.info
        self.model = model
        self.channel = model_channel(self.info, model)
        window_in = int(np.ceil(model.window_len * self.info.fs / model.fs))  # one window of input
        capacity = max(int(ring_seconds * self.info.fs), 4 * window_in)
        self.ring = RingBuffer(capacity, len(self.info.channels), time_columns=2, name=self.info.name)
        self.cursor: RingCursor = self.ring.cursor()
        self.clock: ClockMapper | None = None  # kind known at the first chunk
        self.dsp = StreamingPreprocessor(model.preprocess, self.info.fs)
        self.cutter = WindowCutter(model.window_len, model.hop_len)
        self.warmup_out = int(np.ceil(warmup_seconds(model.preprocess, self.info.fs) * model.fs))
        self._input_needed = self.input_needed()
        self._gaps: deque[PendingGap] = deque()  # written by ingest, consumed by advance
        self._gap_lock = threading.Lock()
        self._read_values = np.empty((capacity, len(self.info.channels)), np.float32)
        self._read_times = np.empty((capacity, 2), np.int64)
        self._source_events_seen = 0
        self.pushed = 0  # samples pushed into the ring
        self.timeline = 0  # samples on the stream's time axis (pushed + gap samples)
        self.gap_samples = 0  # missing samples the source reported
        self.gaps = 0
        self.gap_first_last_ns: tuple[int, int] | None = None  # arrival of the first and last gap
        self.lost_samples = 0  # samples the inference reader lost to ring overwrites
        self.nonfinite_samples = 0  # NaN/inf samples turned into gaps at ingest
        self.nonfinite_runs = 0
        self._open_run: list[int] | None = None  # [first sample, count] of a non-finite run
        self._restart_pending = False  # re-initialise the filter at the next finite sample
        self._anchor_ns: int | None = None  # sample-clocked streams: host time of sample 0
        self._last_t: float | None = None  # time of the newest sample the DSP consumed
        self.last_arrival_ns: int | None = None
        self.newest_t_est_ns: float | None = None
        self.lag_ms: deque[float] = deque(maxlen=4096)  # now - newest sample, per inference pass
        self.hop_lag_ms: deque[float] = deque(maxlen=4096)  # per hop: last sample's arrival -> emitted
        self.ended = False
        self.stale = False
        self.events = 0

    @classmethod
    def open(cls, index: int, source: Source, model: ModelInput, ring_seconds: float) -> StreamState:
        return cls(index, source, model, ring_seconds)

    # --- ingest thread -------------------------------------------------------------------------

    def ingest(self, chunk: Chunk) -> list[dict]:
        """Stamp a chunk's samples and push them into the ring (runs on the ingest thread).

        Rows whose model channel is NaN or ±inf are not pushed: each run of them becomes a
        counted gap of reason ``nonfinite`` (the window cutter marks it, the pipeline gates the
        windows touching it), so a non-finite value never reaches the filter or the model."""
        events: list[dict] = []
        samples = chunk.samples
        n = len(samples)
        if chunk.gap_before > 0:
            self._add_gap(int(chunk.gap_before), chunk.t_host_ns, nonfinite=False)
            self.timeline += int(chunk.gap_before)
            self.gap_samples += int(chunk.gap_before)
            self.gaps += 1
            first = self.gap_first_last_ns[0] if self.gap_first_last_ns else chunk.t_host_ns
            self.gap_first_last_ns = (first, chunk.t_host_ns)
            events.append(
                {"kind": "gap", "missing_samples": int(chunk.gap_before), "at_sample": self.timeline}
            )
        if n == 0:
            return events
        times = np.empty((n, 2), np.int64)
        times[:, 0] = self._stamp(chunk, n, events)
        times[:, 1] = chunk.t_host_ns
        finite = np.isfinite(samples[:, self.channel])
        if finite.all():
            self._close_nonfinite_run(events)
            self.ring.push(samples, times)
            self.pushed += n
        else:
            edges = np.flatnonzero(np.diff(finite.view(np.int8))) + 1
            for a, b in zip(np.r_[0, edges], np.r_[edges, n]):  # one iteration per run, not per sample
                if finite[a]:
                    self._close_nonfinite_run(events)
                    self.ring.push(samples[a:b], times[a:b])
                    self.pushed += int(b - a)
                else:
                    self._nonfinite_run(int(b - a), self.timeline + int(a), chunk.t_host_ns)
        self.timeline += n
        self.last_arrival_ns = chunk.t_host_ns
        self.newest_t_est_ns = float(times[-1, 0])
        self.stale = False
        return events

    def _stamp(self, chunk: Chunk, n: int, events: list[dict]) -> np.ndarray:
        """Host-monotonic time (ns) of each of the chunk's samples.

        Sample-clocked streams (files): the first chunk's arrival plus sample index / fs, so a
        replay at any speed keeps the file's own time axis. Live streams: the device clock (or
        the nominal sample clock) fitted to arrivals by ``ClockMapper``."""
        idx = self.timeline + np.arange(n)
        if self.info.sample_clock:
            if self._anchor_ns is None:
                self._anchor_ns = chunk.t_host_ns - int(round(self.timeline * 1e9 / self.info.fs))
            return self._anchor_ns + np.round(idx * (1e9 / self.info.fs)).astype(np.int64)
        if self.clock is None:
            self.clock = ClockMapper(self.info.fs, device_clock=chunk.t_device_ns is not None)
        if chunk.t_device_ns is not None:
            x = np.asarray(chunk.t_device_ns, dtype=np.float64)
        else:  # host-stamped: the nominal sample clock, fitted to arrivals
            x = idx * (1e9 / self.info.fs)
        events.extend(self.clock.observe(float(x[-1]), chunk.t_host_ns))
        t = self.clock.map(x)
        if self.newest_t_est_ns is not None and t[0] <= self.newest_t_est_ns:
            # a refit (early on, or a replay faster than real time) must not move time backwards
            t += int(self.newest_t_est_ns - t[0]) + 1
        return t

    def _add_gap(self, missing: int, t_host_ns: int, nonfinite: bool) -> None:
        with self._gap_lock:
            self._gaps.append(PendingGap(self.pushed, missing, t_host_ns, nonfinite))

    def _nonfinite_run(self, count: int, at_sample: int, t_host_ns: int) -> None:
        self._add_gap(count, t_host_ns, nonfinite=True)
        self.nonfinite_samples += count
        if self._open_run is None:
            self.nonfinite_runs += 1
            self._open_run = [at_sample, 0]
        self._open_run[1] += count

    def _close_nonfinite_run(self, events: list[dict]) -> None:
        """One ``nonfinite`` event per run of non-finite samples, when finite data resumes."""
        if self._open_run is not None:
            at, count = self._open_run
            events.append({"kind": "nonfinite", "samples": count, "at_sample": at})
            self._open_run = None

    def finish(self) -> list[dict]:
        """Events still open when the source ended (a non-finite run at the end of a file)."""
        events: list[dict] = []
        self._close_nonfinite_run(events)
        return events

    def new_source_events(self) -> list[dict]:
        """Events the source logged (disconnect, reconnect, corrupt, lead-off) since last asked."""
        stats = getattr(self.source, "stats", None)
        events = list(getattr(stats, "events", []) or [])
        new = events[self._source_events_seen :]
        self._source_events_seen = len(events)
        return new

    # --- inference thread ----------------------------------------------------------------------

    def input_needed(self) -> int:
        """Input samples (on the stream's time axis) after which the next window is complete.

        Output sample ``k`` sits at input position ``k * fs_in / fs_out`` and is interpolated
        from the input samples either side, so it needs input index ``ceil(position)``: the
        streaming preprocessor's own test (``StreamingPreprocessor.available``) decides."""
        return self.dsp.inputs_for(self.cutter.next_window_end)

    def ready(self) -> bool:
        """True when enough input arrived to complete the next window (ingest updates timeline)."""
        return self.timeline >= self._input_needed

    def next_window_due_ns(self) -> float | None:
        """When the next window is expected to complete (host-monotonic ns): the last arrival
        plus the missing input samples at the stream's rate; None for an ended, stale or silent stream."""
        if self.ended or self.stale or self.last_arrival_ns is None:
            return None
        missing = max(self._input_needed - self.timeline, 0)
        return self.last_arrival_ns + missing * 1e9 / self.info.fs

    def advance(self, timer) -> list[WindowJob]:
        """Consume new ring rows: fill gaps/losses, filter, resample, cut complete windows.

        Reads only once the next window can be completed: DSP runs once per hop on the
        accumulated samples instead of once per chunk (same output, far fewer calls), and the
        window is still cut in the pass right after its last sample arrived."""
        newest = self.last_arrival_ns if self.info.sample_clock else self.newest_t_est_ns
        if newest is not None and not self.ended:
            # an ended stream has no newest sample to be late for: its silence is not lag.
            # Sample-clocked streams (files) run ahead of or behind real time by design: their
            # lag is the age of the newest arrival.
            self.lag_ms.append((time.monotonic_ns() - newest) / 1e6)
        if not self.ready():
            return []
        values, times, r = self.ring.read_new(self.cursor, out=self._read_values, out_times=self._read_times)
        end = r.start + r.n
        with self._gap_lock:  # gaps before or right after the rows read (a trailing NaN run)
            gaps = []
            while self._gaps and self._gaps[0].ring_index <= end:
                gaps.append(self._gaps.popleft())
        if r.n == 0 and r.lost == 0 and not gaps:
            return []
        t0 = time.perf_counter_ns()
        base = self.dsp.n_in
        t_parts: list[np.ndarray] = []
        arrival_parts: list[np.ndarray] = []
        windows: list[Window] = []
        step_ns = 1e9 / self.info.fs
        if self._last_t is None:
            self._last_t = float(times[0, 0]) - step_ns if r.n else float(gaps[0].t_host_ns)

        def fill(missing: int, arrival: int, nonfinite: bool) -> None:
            block = self.dsp.fill_gap(missing)
            self.cutter.mark_gap(
                GapSpan(block.first_index, block.first_index + len(block.values) + 1, missing, nonfinite)
            )
            windows.extend(self.cutter.push(block.values, block.source_index, block.first_index))
            t_parts.append(self._last_t + np.arange(1, missing + 1) * step_ns)
            arrival_parts.append(np.full(missing, arrival, np.int64))
            self._last_t = float(t_parts[-1][-1])
            self._restart_pending = self._restart_pending or nonfinite

        def rows(a: int, b: int) -> None:
            if b <= a:
                return
            x = values[a:b, self.channel]
            if self._restart_pending:  # the first finite value after a non-finite gap
                self.dsp.restart(float(x[0]))
                self._restart_pending = False
            block = self.dsp.process(x)
            windows.extend(self.cutter.push(block.values, block.source_index, block.first_index))
            t_parts.append(times[a:b, 0].astype(np.float64))
            arrival_parts.append(times[a:b, 1])
            self._last_t = float(times[b - 1, 0])

        if r.lost:
            self.lost_samples += r.lost
            fill(r.lost, int(times[0, 1]), False)
        row = 0
        for gap in gaps:
            cut = min(max(0, gap.ring_index - r.start), r.n)
            rows(row, cut)
            fill(gap.missing, gap.t_host_ns, gap.nonfinite)
            row = cut
        rows(row, r.n)
        t_lookup = np.concatenate(t_parts)
        arrival_lookup = np.concatenate(arrival_parts)
        dsp_ms = (time.perf_counter_ns() - t0) / 1e6
        self._input_needed = self.input_needed()
        jobs = []
        for w in windows:
            k = min(max(w.source_last - base, 0), len(t_lookup) - 1)
            warmup = w.index * self.model.hop_len < self.warmup_out
            jobs.append(WindowJob(self.index, w, float(t_lookup[k]), int(arrival_lookup[k]), dsp_ms, warmup))
        return jobs
