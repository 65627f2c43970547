"""Soak test of the streaming pipeline under faults (docs/runtime.md, "Soak").

``FaultySensor`` is a framed PPG sensor: a simulated patient's samples go out as the project's
binary frames (float32, ``bridge_edge.devices.frame``) and come back through the real
``FrameStream`` decoder, as from a serial port, so faults travel the same path as from hardware:

- ``nan``: a burst of NaN samples inside valid frames;
- ``reset``: the sensor reboots: its frame seq and device clock restart at zero (no samples lost);
- ``unplug``: no frames for a while (seq and device clock keep counting, as a sensor that kept
  sampling while its cable was out); ``disconnect``/``reconnect`` events around it.

The sensor keeps the truth (``SensorTruth``): samples on its time axis, NaNs sent, samples lost
to unplugs. ``run_soak`` drives N sensors through a real ``Pipeline`` and returns a ``SoakReport``:
per-stream accounting (every lost sample counted?), per-fault label resumption, RSS and lag over
time. ``scripts/soak.py`` is the command line and plots it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from bridge_edge.devices.base import SourceStats, StreamInfo
from bridge_edge.devices.frame import FMT_FLOAT32, encode_frame
from bridge_edge.devices.pacing import Pacer
from bridge_edge.devices.serial_streams import FrameStream

FAULT_KINDS = ("nan", "reset", "unplug")


@dataclass(frozen=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    at_s: float  # stream time of its start
    duration_s: float  # 0 for a reset

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


def fault_schedule(
    total_s: float,
    every_s: float,
    offset_s: float = 0.0,
    nan_s: float = 2.0,
    unplug_s: float = 5.0,
    tail_s: float = 0.0,
) -> list[Fault]:
    """One NaN burst, one reset and one unplug in every ``every_s`` of stream time; none ends
    within ``tail_s`` of the end (room for the window that shows labels came back)."""
    faults = []
    for start in np.arange(offset_s, total_s, every_s):
        for kind, frac, dur in (("nan", 0.2, nan_s), ("reset", 0.5, 0.0), ("unplug", 0.8, unplug_s)):
            at = float(start + frac * every_s)
            if at + dur + tail_s < total_s:
                faults.append(Fault(kind, round(at, 3), dur))
    return faults


@dataclass
class SensorTruth:
    samples: int = 0  # samples on the sensor's time axis (sent or not)
    nan: int = 0  # NaN samples sent
    unplugged: int = 0  # samples never sent (cable out)
    resets: int = 0


class FaultySensor:
    """A Source: a framed PPG sensor that suffers ``faults`` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        fs: float,
        seconds: float,
        faults: list[Fault],
        seed: int = 0,
        speed: float = 1.0,
        frame_n: int = 5,
    ) -> None:
        self.info = StreamInfo(name, float(fs), ("ppg",), ("a.u.",))  # live: clock fitted to arrivals
        self.stats = SourceStats()
        self.truth = SensorTruth()
        self.faults = faults
        self.seconds = seconds
        self.seed = seed
        self.frame_n = frame_n
        self.pacer = Pacer(speed)
        self._decoder = FrameStream(fs, 1, np.array([1.0]), self.stats)
        self._closed = False

    def _spans(self, kind: str) -> np.ndarray:
        fs = self.info.fs
        return np.array(
            [(round(f.at_s * fs), round(f.end_s * fs)) for f in self.faults if f.kind == kind], np.int64
        ).reshape(-1, 2)

    def __iter__(self) -> Iterator:
        from bridge_edge.signals.simulator import PatientSimulator

        fs, n = self.info.fs, self.frame_n
        sim = PatientSimulator(self.seed, fs_ppg=fs, script=[("sinus", 120.0), ("afib", 120.0)])
        nan_spans, unplug_spans = self._spans("nan"), self._spans("unplug")
        resets = sorted(round(f.at_s * fs) for f in self.faults if f.kind == "reset")
        total = int(self.seconds * fs)
        buffer = np.empty(0, np.float32)
        pos, seq, epoch, unplugged = 0, 0, 0, False
        while pos < total and not self._closed:
            if len(buffer) < n:
                buffer = np.concatenate([buffer, sim.generate(1.0).ppg.astype(np.float32)])
            x, buffer = buffer[:n].copy(), buffer[n:]
            idx = pos + np.arange(n)
            if resets and pos >= resets[0]:  # reboot: seq and device clock start over
                resets.pop(0)
                seq, epoch = 0, pos
                self.truth.resets += 1
            out = bool(((unplug_spans[:, 0] <= pos) & (pos < unplug_spans[:, 1])).any())
            if out != unplugged:
                unplugged = out
                if out:
                    self.stats.event("disconnect", reason="soak unplug")
                    self._decoder.on_disconnect()
                else:
                    self.stats.event("reconnect", reason="soak replug")
            self.pacer.wait_until((pos + n) / fs, stop=lambda: self._closed)
            if out:
                self.truth.unplugged += n
            else:
                bad = ((nan_spans[:, :1] <= idx) & (idx < nan_spans[:, 1:])).any(axis=0)
                x[bad] = np.nan
                self.truth.nan += int(bad.sum())
                t_us = int(round((pos - epoch) * 1e6 / fs))
                for chunk in self._decoder.feed(
                    encode_frame(seq, t_us, x[:, None], FMT_FLOAT32), time.monotonic_ns()
                ):
                    self.stats.count_chunk(chunk)
                    yield chunk
            self.truth.samples += n
            pos += n
            seq = (seq + 1) & 0xFFFF

    def close(self) -> None:
        self._closed = True


class _Collector:
    def __init__(self) -> None:
        self.preds: list[tuple[int, int, str | None, str | None]] = []  # stream, window, gated, label
        self.events: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def on_prediction(self, p) -> None:
        with self._lock:
            self.preds.append((p.stream.index, p.window_index, p.gated, p.label))

    def on_event(self, stream_index: int, event: dict) -> None:
        with self._lock:
            self.events.append((stream_index, str(event.get("kind"))))


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MB."""
    with open(f"/proc/{os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@dataclass
class SoakReport:
    config: dict
    streams: list[dict] = field(default_factory=list)  # accounting per stream
    faults: list[dict] = field(default_factory=list)  # per fault: when labels resumed
    series: dict = field(default_factory=dict)  # t_s, rss_mb, lag_p50_ms, lag_max_ms
    summary: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)


def run_soak(
    bundle,
    minutes: float,
    streams: int = 3,
    every_s: float = 300.0,
    speed: float = 1.0,
    fs: float = 125.0,
    sample_every_s: float = 5.0,
    warmup_s: float = 120.0,
    nan_s: float = 2.0,
    unplug_s: float = 5.0,
    threads: int = 1,
    precision: str = "auto",
    trim_every_s: float = 60.0,
) -> SoakReport:
    """Run ``streams`` faulty sensors for ``minutes`` of stream time through a real pipeline."""
    from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig

    seconds = minutes * 60.0
    m = bundle.manifest.input
    tail = m.window_s + 2 * m.hop_s
    schedules = [
        fault_schedule(seconds, every_s, k * every_s / (4 * streams), nan_s, unplug_s, tail_s=tail)
        for k in range(streams)
    ]
    sensors = [
        FaultySensor(f"soak{k}", fs, seconds, schedules[k], seed=10 + k, speed=speed) for k in range(streams)
    ]
    pipe = Pipeline(
        sensors,
        bundle,
        engine="ort",
        precision=precision,
        config=PipelineConfig(threads=threads, trim_every_s=trim_every_s),
    )
    collector = _Collector()
    pipe.add_listener(collector)
    series: dict[str, list[float]] = {
        "t_s": [],
        "rss_mb": [],
        "py_blocks": [],
        "lag_p50_ms": [],
        "lag_max_ms": [],
    }
    t0 = time.monotonic()
    pipe.start()
    try:
        while not pipe.wait(sample_every_s / max(speed, 1e-9) if speed else 0.2):
            lags = np.concatenate([np.asarray(list(st.lag_ms)[-64:]) for st in pipe.streams] or [np.zeros(0)])
            series["t_s"].append(round(time.monotonic() - t0, 2))
            series["rss_mb"].append(round(rss_mb(), 2))
            series["py_blocks"].append(sys.getallocatedblocks())  # Python objects: a leak shows here
            series["lag_p50_ms"].append(float(np.median(lags)) if len(lags) else None)
            series["lag_max_ms"].append(float(lags.max()) if len(lags) else None)
    finally:
        pipe.stop()
    stats = pipe.stats()
    model = pipe.model
    report = SoakReport(
        config={
            "minutes": minutes,
            "streams": streams,
            "every_s": every_s,
            "speed": speed,
            "fs": fs,
            "nan_s": nan_s,
            "unplug_s": unplug_s,
            "bundle": f"{model.bundle_name} {model.bundle_version}",
            "engine": f"{stats.engine} {stats.precision}",
            "window_s": model.window_len / model.fs,
            "hop_s": model.hop_len / model.fs,
            "warmup_s": warmup_s,
            "trim_every_s": trim_every_s,
        },
        series=series,
    )
    for sensor, st in zip(sensors, stats.streams):
        truth = sensor.truth
        # a reboot's outage is estimated from host arrival times (the sensor's counters restarted):
        # the soak's reboots lose nothing, so any estimate is arrival delay under load, shown apart
        at_reset = sum(e.get("missing_samples", 0) for e in sensor.stats.events if e["kind"] == "clock_reset")
        counted = st.samples + st.gap_samples + st.nonfinite_samples
        report.streams.append(
            {
                "name": st.name,
                "truth": asdict(truth),
                "pushed": st.samples,
                "gap_samples": st.gap_samples,
                "estimated_at_reset": at_reset,
                "nonfinite_samples": st.nonfinite_samples,
                "lost_to_overwrite": st.lost_samples,
                "clock_resets": st.clock_resets,
                "source_nonfinite": sensor.stats.nonfinite,
                "accounted": counted == truth.samples + at_reset
                and st.gap_samples == truth.unplugged + at_reset
                and st.nonfinite_samples == truth.nan,
            }
        )
    report.faults = _resumption(
        collector.preds, schedules, model.window_len / model.fs, model.hop_len / model.fs
    )
    rss = np.asarray(series["rss_mb"], float)
    t = np.asarray(series["t_s"], float)
    after = t >= warmup_s / max(speed, 1e-9) if speed else t >= 0
    slope = float(np.polyfit(t[after], rss[after], 1)[0] * 600) if after.sum() >= 3 else None
    report.summary = {
        "wall_s": round(time.monotonic() - t0, 1),
        "hops": stats.hops,
        "windows_skipped": stats.windows_skipped,
        "low_sqi_causes": stats.low_sqi_causes,
        "all_samples_accounted": all(s["accounted"] for s in report.streams),
        "labels_resumed_after_every_fault": all(f["resumed_after_s"] is not None for f in report.faults),
        "max_resume_s": max(
            (f["resumed_after_s"] for f in report.faults if f["resumed_after_s"] is not None), default=None
        ),
        "rss_after_warmup_mb": [float(rss[after].min()), float(rss[after].max())] if after.any() else None,
        "rss_slope_mb_per_10min": slope,
        "py_blocks_after_warmup": [int(min(b)), int(max(b))]
        if (b := [x for x, a in zip(series["py_blocks"], after) if a])
        else None,
        # each reboot is reported twice: by the frame decoder (seq/device time) and by the clock fit
        "clock_reset_events": sum(1 for _, k in collector.events if k == "clock_reset"),
        "resets_injected": sum(s.truth.resets for s in sensors),
        "nonfinite_events": sum(1 for _, k in collector.events if k == "nonfinite"),
        "memory_trims": stats.memory_trims,
        "infer_calls": stats.infer_calls,
        "mean_batch": round(stats.inferred_windows / max(stats.infer_calls, 1), 2),
    }
    return report


def _resumption(preds, schedules, window_s: float, hop_s: float) -> list[dict]:
    """For every fault: stream seconds from its end to the end of the first labelled window that
    starts at or after it (None: labels never came back)."""
    labelled: dict[int, list[int]] = {}
    for stream, window, gated, label in preds:
        if gated is None and label is not None:
            labelled.setdefault(stream, []).append(window)
    out = []
    for stream, faults in enumerate(schedules):
        windows = np.sort(np.asarray(labelled.get(stream, []), np.int64))
        for f in faults:
            first = windows[windows * hop_s >= f.end_s - 1e-9]
            resumed = None if len(first) == 0 else round(float(first[0] * hop_s + window_s - f.end_s), 3)
            out.append(
                {
                    "stream": stream,
                    "kind": f.kind,
                    "at_s": f.at_s,
                    "end_s": f.end_s,
                    "resumed_after_s": resumed,
                }
            )
    return out
