"""From the streaming pipeline to the monitor page: a pipeline listener that feeds the server.

``MonitorFeed`` implements the pipeline's listener hooks (``on_chunk``, ``on_prediction``,
``on_event``). Chunks become binary waveform frames, one per channel, after a causal display
filter (the same band every bedside monitor labels on its traces); predictions, alarms and the
pipeline's stats become JSON. A small thread re-evaluates the alarms four times a second, so a
stream that stops delivering raises its "no signal" alarm even though no callback comes; once a
second it also scores each trace's quality and finds its beats (for the beat markers).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bridge_edge.devices.base import Chunk, StreamInfo
from bridge_edge.monitor import alarms as alarm_rules
from bridge_edge.monitor.frames import encode_block
from bridge_edge.monitor.server import MonitorServer
from bridge_edge.signals.beats import detect_beats
from bridge_edge.signals.filters import SosFilter, butter_sos, sosfilt_zi
from bridge_edge.signals.quality import window_sqi
from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD

log = logging.getLogger(__name__)

# Display bands: ECG "monitor mode" 0.5-40 Hz, pleth 0.5-8 Hz. Display only; the model sees
# the bundle's own preprocessing.
DISPLAY_BANDS_HZ = {"ecg": (0.5, 40.0), "ppg": (0.5, 8.0)}
MICROVOLT_UNITS = ("uv", "µv", "μv")
BEAT_SETTLE_S = 0.3


@dataclass(frozen=True)
class TraceConfig:
    channel: int
    name: str  # "ECG", "PPG", ...
    kind: str  # "ecg" (25 mm/s, 10 mm/mV) or "ppg" (auto-scaled, unitless)
    units: str  # what the page receives: "mV" for ECG
    fs: float
    filter: str  # label, e.g. "0.5-40 Hz"
    scale: float = 1.0  # source units -> ``units`` (1e-3 for an ECG in µV)

    def as_json(self) -> dict:
        return {
            "channel": self.channel,
            "name": self.name,
            "kind": self.kind,
            "units": self.units,
            "fs": self.fs,
            "filter": self.filter,
        }


def trace_configs(info: StreamInfo) -> list[TraceConfig]:
    """One trace per channel of a stream; ECG is shown in mV whatever the sensor's unit."""
    traces = []
    for i, (channel, unit) in enumerate(zip(info.channels, info.units)):
        kind = "ecg" if "ecg" in channel.lower() else "ppg"
        low, high = DISPLAY_BANDS_HZ[kind]
        high = min(high, 0.45 * info.fs)
        scale = 1e-3 if kind == "ecg" and unit.lower() in MICROVOLT_UNITS else 1.0
        units = "mV" if kind == "ecg" else unit
        traces.append(TraceConfig(i, channel.upper(), kind, units, info.fs, f"{low:g}-{high:g} Hz", scale))
    return traces


class DisplayFilter:
    """Causal band-pass with state carried across chunks, started at the first sample's level."""

    def __init__(self, trace: TraceConfig) -> None:
        low, high = DISPLAY_BANDS_HZ[trace.kind]
        self.sos = butter_sos(2, [low, min(high, 0.45 * trace.fs)], "bandpass", trace.fs)
        self.scale = trace.scale
        self._filter: SosFilter | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # A NaN (e.g. a lost sample) would poison the filter state for good.
        x = np.nan_to_num(x.astype(np.float64) * self.scale)
        if self._filter is None:
            self._filter = SosFilter(self.sos, sosfilt_zi(self.sos) * x[0])
        return self._filter.process(x).astype(np.float32)


class TraceHistory:
    """The last ``seconds`` of a displayed trace (preallocated ring), for its SQI and beats."""

    def __init__(self, fs: float, seconds: float = 10.0) -> None:
        self.buffer = np.zeros(max(8, round(fs * seconds)), np.float32)
        self.written = 0
        self.t_end = 0.0  # sample-timeline time of the newest sample
        self.last_beat_t = -np.inf  # newest beat already sent to the page

    def push(self, x: np.ndarray, t_end: float) -> None:
        x = x[-self.buffer.size :]
        index = (self.written + np.arange(x.size)) % self.buffer.size
        self.buffer[index] = x
        self.written += x.size
        self.t_end = t_end

    def full_window(self) -> np.ndarray | None:
        """The window in time order, or None until it has filled once."""
        if self.written < self.buffer.size:
            return None
        return np.roll(self.buffer, -(self.written % self.buffer.size))


class SampleTimeline:
    """Seconds of each chunk's first sample on the host's monotonic clock.

    Consecutive chunks continue the sample count (smooth for the page's playout); the estimate
    slews 1 % per chunk toward the arrival time, so a sensor whose true rate differs from its
    nominal one does not drift away; a gap or an error over 1 s re-anchors on arrival time. (A
    source faster than real time, e.g. a replay at speed > 1, re-anchors about every second: the
    monitor shows live time, so its traces then jump.)
    """

    SLEW = 0.01
    REANCHOR_S = 1.0

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self.next_t: float | None = None

    def first_sample_time(self, n: int, t_host_ns: int, gap_before: int) -> float:
        arrival = t_host_ns / 1e9 - (n - 1) / self.fs  # the last sample arrived with the chunk
        if self.next_t is None or gap_before > 0 or abs(arrival - self.next_t) > self.REANCHOR_S:
            t0 = arrival
        else:
            t0 = self.next_t + self.SLEW * (arrival - self.next_t)
        self.next_t = t0 + n / self.fs
        return t0


class MonitorFeed:
    """Pipeline listener that drives a ``MonitorServer``; one bed per pipeline source."""

    def __init__(
        self,
        server: MonitorServer,
        streams: list[StreamInfo],
        provenance: dict,
        stats: Callable[[], object] | None = None,  # the runtime's Pipeline.stats
        rules: alarm_rules.AlarmRules | None = None,
        playout_delay_s: float = 1.5,
        sweep_s: float = 10.0,
    ) -> None:
        self.server = server
        self.rules = rules or alarm_rules.AlarmRules()
        self.stats_fn = stats
        self.traces = [trace_configs(info) for info in streams]
        now = time.monotonic()
        self.status = [
            alarm_rules.BedStatus(
                info.name, [alarm_rules.TraceStatus(t.name) for t in traces], started_at=now
            )
            for info, traces in zip(streams, self.traces)
        ]
        # the pulse-timing AF score of each bed's last scored window: shown, never alarmed on
        self.timing_scores: list[float | None] = [None] * len(streams)
        # whether the runtime's regular-rhythm rule moved each bed's last scored AF probability
        self.af_ruled_out: list[bool] = [False] * len(streams)
        self.filters = [[DisplayFilter(t) for t in traces] for traces in self.traces]
        self.timelines = [SampleTimeline(info.fs) for info in streams]
        self.histories = [[TraceHistory(t.fs) for t in traces] for traces in self.traces]
        self.config = {
            "type": "config",
            "playout_delay_s": playout_delay_s,
            "sweep_s": sweep_s,
            "stale_after_s": self.rules.stale_after_s,
            "hr_timeout_s": self.rules.hr_timeout_s,
            "timing_threshold": RR_AF_THRESHOLD.value,
            "provenance": provenance,
            "beds": [
                {"name": s.name, "traces": [t.as_json() for t in traces]}
                for s, traces in zip(self.status, self.traces)
            ],
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="monitor-alarms", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.server.send_json(self.config, keep="latest")
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(timeout=2)

    # --- pipeline listener hooks (called from pipeline threads) ----------------------------

    def on_chunk(self, stream_index: int, info: StreamInfo, chunk: Chunk) -> None:
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        n = samples.shape[0]
        if n == 0:
            return
        timeline = self.timelines[stream_index]
        t0 = timeline.first_sample_time(n, chunk.t_host_ns, chunk.gap_before)
        t_end = t0 + (n - 1) / timeline.fs
        blocks = [
            display_filter(samples[:, trace.channel])
            for trace, display_filter in zip(self.traces[stream_index], self.filters[stream_index])
        ]
        for trace, block in zip(self.traces[stream_index], blocks):
            self.server.send_block(encode_block(stream_index, trace.channel, t0, trace.fs, block))
        now = time.monotonic()
        with self._lock:
            for status, history, block in zip(
                self.status[stream_index].traces, self.histories[stream_index], blocks
            ):
                status.last_sample_at = now
                history.push(block, t_end)

    def on_prediction(self, pred) -> None:
        """A scored window updates the bed's label, probabilities, SQI and HR. A gated window
        (non-finite input, a gap, low SQI, warm-up) leaves them as they were and marks the bed
        unscored: gated data must never clear an active AF alarm (docs/monitor.md)."""
        bed = pred.stream.index
        with self._lock:
            status = self.status[bed]
            status.gated, status.sqi_cause = pred.gated, pred.sqi_cause
            if pred.gated is None:
                if pred.smoothed_label != status.label:
                    status.label_since = time.monotonic()
                status.label = pred.smoothed_label
                status.probs = dict(pred.smoothed_probs or {})
                status.sqi = _finite_or_none(pred.sqi)
                status.hr_bpm = _finite_or_none(pred.hr_bpm)
                status.prediction_at = time.monotonic()
                self.timing_scores[bed] = _finite_or_none(pred.rr_af_score)
                self.af_ruled_out[bed] = bool(pred.af_ruled_out)
            label = status.label
        self.server.send_json(
            {
                "type": "prediction",
                "bed": bed,
                "t_end": pred.t_end,
                "label": label if pred.gated is None else None,
                "raw_label": pred.label,
                "probs": _clean_probs(pred.smoothed_probs if pred.gated is None else None),
                "sqi": _finite_or_none(pred.sqi),
                "rr_af_score": self.timing_scores[bed] if pred.gated is None else None,
                "af_ruled_out": bool(pred.af_ruled_out),
                "gated": pred.gated,
                "sqi_cause": pred.sqi_cause,
                "dropped_samples": int(pred.dropped_samples),
                "gap": bool(pred.gap),
            },
            keep="history",
        )

    def on_event(self, stream_index: int, event: dict) -> None:
        kind = str(event.get("kind", ""))
        with self._lock:
            status = self.status[stream_index]
            if kind == "disconnect":
                status.connected = False
            elif kind in ("connect", "reconnect"):
                status.connected = True
            elif kind == "lead_off":
                status.lead_off_at = time.monotonic()
        self.server.send_json({"type": "event", "bed": stream_index, "kind": kind})

    # --- alarms, numerics and stats ------------------------------------------------------

    def snapshot(self, now: float) -> dict:
        """The status message: per bed label, probabilities, HR (or None) and active alarms."""
        beds = []
        for index, status in enumerate(self.status):
            active = alarm_rules.evaluate(index, status, now, self.rules)
            hr = alarm_rules.valid_heart_rate(status, now, self.rules, active)
            timing = self.timing_scores[index]
            beds.append(
                {
                    "label": status.label,
                    "scored": status.gated is None,  # False: the newest window was gated
                    "gated": status.gated,
                    "sqi_cause": status.sqi_cause,
                    "probs": _clean_probs(status.probs),
                    "sqi": status.sqi,
                    "sqi_level": self.rules.sqi.level(status.sqi),
                    "hr_bpm": None if hr is None else round(hr),
                    "timing_score": None if timing is None else round(timing, 3),
                    "af_ruled_out": self.af_ruled_out[index],
                    # seconds until this label's physiological alarm may sound (None: no such alarm)
                    "alarm_in_s": _alarm_in(status, now, self.rules),
                    "traces": [
                        {"name": t.name, "sqi": t.sqi, "sqi_level": self.rules.sqi.level(t.sqi)}
                        for t in status.traces
                    ],
                    "alarms": [a.to_json(status.name) for a in active],
                }
            )
        return {"type": "status", "beds": beds}

    def analyse_traces(self) -> None:
        """Once a second, per trace over its last 10 s: SQI (the signals area's ECG / PPG
        indices) and new beats, which the page marks on the trace as they play out."""
        with self._lock:
            windows = [[(h.full_window(), h.t_end) for h in histories] for histories in self.histories]
        for bed, (traces, bed_windows) in enumerate(zip(self.traces, windows)):
            for trace, history, (window, t_end) in zip(traces, self.histories[bed], bed_windows):
                if window is None:
                    continue
                score = float(window_sqi(window[None, :], trace.fs, trace.kind)[0])
                with self._lock:
                    self.status[bed].traces[trace.channel].sqi = score
                beats = t_end - (window.size - 1 - detect_beats(window, trace.fs, trace.kind)) / trace.fs
                # beats right at the window's end may still move; they are sent next second
                new = beats[(beats > history.last_beat_t + 0.15) & (beats < t_end - BEAT_SETTLE_S)]
                if new.size:
                    history.last_beat_t = float(new[-1])
                    self.server.send_json(
                        {
                            "type": "beats",
                            "bed": bed,
                            "channel": trace.channel,
                            "times": new.round(4).tolist(),
                        }
                    )

    def _tick_loop(self) -> None:
        last_slow = 0.0
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if now - last_slow >= 1.0:
                last_slow = now
                self.analyse_traces()
                self.server.send_json(self._stats_message(), keep="latest")
            with self._lock:
                message = self.snapshot(now)
            self.server.send_json(message, keep="latest")

    def _stats_message(self) -> dict:
        pipeline = {}
        if self.stats_fn is not None:
            try:
                pipeline = provenance_numbers(self.stats_fn())
            except Exception:  # a stats hiccup must never stop the alarm loop
                log.exception("pipeline stats failed")
        return {"type": "stats", "pipeline": pipeline, "display": self.server.stats()}


def provenance_numbers(stats) -> dict:
    """The provenance strip's numbers from the runtime's ``PipelineStats``."""
    total = stats.latency.get("total")
    lags = [s.lag.p50_ms for s in stats.streams if s.lag.p50_ms is not None]
    return _json_safe(
        {
            "engine": stats.engine,
            "precision": stats.precision,
            "bundle_name": stats.bundle_name,
            "bundle_version": stats.bundle_version,
            "latency_p50_ms": total.p50_ms if total else None,
            "latency_p99_ms": total.p99_ms if total else None,
            "lag_s": max(lags) / 1e3 if lags else None,
            "dropped_samples": stats.dropped_samples,
            "hops": stats.hops,
            "windows_skipped": stats.windows_skipped,
            "low_sqi_causes": stats.low_sqi_causes,
        }
    )


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _alarm_in(status, now: float, rules) -> float | None:
    if (status.label or "") not in rules.physiological:
        return None
    return round(alarm_rules.alarm_onset_in(status, now, rules), 1)


def _clean_probs(probs: dict | None) -> dict[str, float]:
    return {str(k): round(float(v), 4) for k, v in (probs or {}).items() if math.isfinite(float(v))}


def _json_safe(value):
    """Stats may hold numpy numbers, dataclasses' dicts or NaN; the page gets plain JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
