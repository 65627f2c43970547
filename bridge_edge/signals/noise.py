"""Sensor noise with state, so a stream generated in pieces equals one generated at once.

Random processes draw from their own ``numpy`` generator and carry their filter state across
calls; artefact episodes (EMG bursts, motion, dropouts) are a Poisson event track generated in
fixed blocks of absolute time, so they do not depend on how the caller chunks the stream.
"""

from __future__ import annotations

import numpy as np

from bridge_edge.signals.filters import SosFilter, butter_sos, sos_response


class FilteredNoise:
    """Gaussian white noise through a Butterworth band-pass, filter state carried across calls."""

    def __init__(self, rng: np.random.Generator, band_hz: tuple[float, float], fs: float, order: int = 2):
        low, high = band_hz[0], min(band_hz[1], 0.45 * fs)
        if high > 1.2 * low:
            sos = butter_sos(order, [low, high], "bandpass", fs)
        else:  # the rate is too low for the band: keep what the rate can carry
            sos = butter_sos(order, 0.45 * fs, "lowpass", fs)
        self._filter = SosFilter(sos)
        self._rng = rng
        # unit output variance: scale by the filter's noise gain
        h = sos_response(sos, 4096)
        self._gain = 1.0 / np.sqrt(np.mean(np.abs(h) ** 2))

    def next(self, n: int) -> np.ndarray:
        return self._filter.process(self._rng.standard_normal(n)) * self._gain


class EventTrack:
    """Poisson episodes (start, end in s) with uniform durations, generated block by block."""

    BLOCK_S = 60.0

    def __init__(self, rng: np.random.Generator, rate_per_min: float, duration_s: tuple[float, float]):
        self._rng = rng
        self._rate = rate_per_min / 60.0
        self._duration = duration_s
        self._until = 0.0
        self._events = np.zeros((0, 2))

    def _extend(self, t_end: float) -> None:
        while self._until < t_end:
            n = self._rng.poisson(self._rate * self.BLOCK_S)
            starts = np.sort(self._rng.uniform(self._until, self._until + self.BLOCK_S, n))
            ends = starts + self._rng.uniform(*self._duration, n)
            self._events = np.concatenate([self._events, np.stack([starts, ends], axis=1)])
            self._until += self.BLOCK_S

    def mask(self, n0: int, n: int, fs: float) -> np.ndarray:
        """Boolean mask of samples n0 .. n0 + n - 1 (at fs) that fall inside an episode."""
        t0, t1 = n0 / fs, (n0 + n) / fs
        self._extend(t1)
        ev = self._events[(self._events[:, 1] > t0) & (self._events[:, 0] < t1)]
        self._events = self._events[self._events[:, 1] > t0]  # past episodes are done
        edges = np.zeros(n + 1)
        start = np.clip(np.ceil(ev[:, 0] * fs).astype(np.int64) - n0, 0, n)
        end = np.clip(np.ceil(ev[:, 1] * fs).astype(np.int64) - n0, 0, n)
        np.add.at(edges, start, 1)
        np.add.at(edges, end, -1)
        return np.cumsum(edges)[:n] > 0


def baseline_wander(t: np.ndarray, amplitude: float, resp_hz: float, phases: np.ndarray) -> np.ndarray:
    """Respiration plus slow electrode/posture drift, a deterministic function of time."""
    return amplitude * (
        0.6 * np.sin(2 * np.pi * resp_hz * t + phases[0])
        + 0.5 * np.sin(2 * np.pi * 0.043 * t + phases[1])
        + 0.3 * np.sin(2 * np.pi * 0.127 * t + phases[2])
    )
