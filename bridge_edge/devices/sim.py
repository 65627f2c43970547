"""sim:// — a live simulated patient (bridge_edge.signals.simulator.PatientSimulator).

Grammar::

    sim://ppg|ecg|ecg+ppg?[fs=<Hz>][&rhythm=sinus|brady|tachy|afib|ectopy][&hr=<bpm>][&seed=<int>]
        [&script=<episode>:<seconds>,<episode>:<seconds>,...][&motion=<0..1>][&speed=<x>][&realtime=0|1]
        [&chunk=<seconds>]

Defaults: fs 125 Hz (ppg), 500 Hz (ecg), 250 Hz (ecg+ppg, both channels at fs); rhythm
random episodes unless ``rhythm`` or ``script`` is given (a script repeats); ``hr`` sets the
patient's resting heart rate. Chunks are paced on an absolute schedule at ``speed`` × real time;
``speed=0`` or ``realtime=0`` runs as fast as possible. Device time is the simulator's sample
clock; ``seq`` counts chunks. The stream is endless; ``record --seconds`` or ``close()`` ends it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.pacing import Pacer
from bridge_edge.devices.urls import SourceURL, flag

GRAMMAR = (
    "sim://ppg|ecg|ecg+ppg?[fs=<Hz>][&rhythm=sinus|brady|tachy|afib|ectopy][&hr=<bpm>][&seed=<int>]"
    "[&script=<episode>:<seconds>,...][&motion=<0..1>][&speed=<x>][&realtime=0|1][&chunk=<seconds>]"
)
OPTIONS = ("fs", "rhythm", "hr", "seed", "script", "motion", "speed", "realtime", "chunk")
SIGNALS = {
    "ppg": (("ppg",), ("a.u.",), 125.0),
    "ecg": (("ecg",), ("mV",), 500.0),
    "ecg+ppg": (("ecg", "ppg"), ("mV", "a.u."), 250.0),
}
# The simulated sensors' ADC steps: 1 µV for ECG (as an H10), 1e-5 of the perfusion scale for PPG.
RESOLUTION = {"ecg": 1e-3, "ppg": 1e-5}
EPISODES = ("sinus", "brady", "tachy", "afib", "ectopy")
RENDER_S = 1.0  # simulator block per call; chunks are sliced from it


def parse_script(text: str) -> list[tuple[str, float]]:
    episodes = []
    for item in text.split(","):
        name, _, seconds = item.partition(":")
        if name not in EPISODES or not seconds:
            raise ValueError(item)
        if not float(seconds) > 0:
            raise ValueError(item)
        episodes.append((name, float(seconds)))
    return episodes


class SimSource:
    def __init__(
        self,
        signal: str,
        fs: float,
        seed: int,
        script: list[tuple[str, float]] | None,
        hr_bpm: float | None = None,
        motion: float = 0.0,
        speed: float = 1.0,
        chunk_s: float = 0.04,
    ):
        from bridge_edge.signals.simulator import PatientSimulator

        channels, units, _ = SIGNALS[signal]
        self.signal = signal
        self.resolution = np.array([RESOLUTION[c] for c in channels])
        self.info = StreamInfo(
            f"sim {signal} seed={seed}",
            fs,
            channels,
            units,
            resolution=tuple(self.resolution),
            sample_clock=True,  # a simulation is its own clock, at any speed
            meta={"seed": seed, "script": script, "hr_bpm": hr_bpm},
        )
        self.stats = SourceStats()
        self.simulator = PatientSimulator(seed, fs_ecg=fs, fs_ppg=fs, script=script, motion_noise=motion)
        if hr_bpm is not None:
            self.simulator.physiology = dataclasses.replace(self.simulator.physiology, resting_hr_bpm=hr_bpm)
        self.pacer = Pacer(speed)
        self.chunk_n = max(1, round(chunk_s * fs))
        self._closed = False

    def _render(self) -> np.ndarray:
        block = self.simulator.generate(RENDER_S)
        columns = {"ecg": block.ecg, "ppg": block.ppg}
        n = min(len(block.ecg), len(block.ppg))
        values = np.stack([columns[name][:n] for name in self.info.channels], axis=1).astype(np.float64)
        return (np.round(values / self.resolution) * self.resolution).astype(np.float32)  # the simulated ADC

    def __iter__(self) -> Iterator[Chunk]:
        import time

        step_ns = 1e9 / self.info.fs
        emitted, seq = 0, 0
        while not self._closed:
            block = self._render()
            for start in range(0, len(block), self.chunk_n):  # one iteration per chunk
                if self._closed:
                    return
                samples = block[start : start + self.chunk_n]
                self.pacer.wait_until((emitted + len(samples)) / self.info.fs, stop=lambda: self._closed)
                t_device = np.round((emitted + np.arange(len(samples))) * step_ns).astype(np.int64)
                chunk = Chunk(samples, time.monotonic_ns(), t_device, seq)
                emitted += len(samples)
                seq += 1
                self.stats.count_chunk(chunk)
                yield chunk

    def close(self) -> None:
        self._closed = True


def open(url: str) -> SimSource:
    parsed = SourceURL.parse(url, "sim", GRAMMAR, OPTIONS)
    if parsed.target not in SIGNALS:
        raise parsed.fail(f"unknown signal {parsed.target!r}")
    fs = parsed.positive("fs", SIGNALS[parsed.target][2])
    rhythm = parsed.choice("rhythm", EPISODES, None)
    script = parsed.get("script", parse_script, None)
    if rhythm is not None and script is not None:
        raise parsed.fail("give rhythm= or script=, not both")
    if rhythm is not None:
        script = [(rhythm, 3600.0)]
    speed = parsed.speed()
    if not parsed.get("realtime", flag, True):
        speed = 0.0
    motion = parsed.get("motion", float, 0.0)
    if not 0 <= motion <= 1:
        raise parsed.fail("motion must be within 0..1")
    return SimSource(
        parsed.target,
        fs,
        parsed.get("seed", int, 0),
        script,
        parsed.positive("hr", None),
        motion,
        speed,
        parsed.positive("chunk", 0.04),
    )
