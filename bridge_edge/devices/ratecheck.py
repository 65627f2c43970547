"""Checking a declared sampling rate against timestamps (docs/sources.md: never silently inferred)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class RateCheck:
    """Compares the nominal fs with the rate the timestamps show; a mismatch is logged with numbers.

    Feed it (samples, time of the chunk's last sample) per chunk, counting gaps as samples only
    where their size is known exactly (sequence counters). A gap sized from the rate itself would
    pull the estimate towards that rate, so such a chunk passes ``restart=True``: the span before
    it is kept, the gap is left out, and the measurement goes on from this chunk's last sample.
    Device time is preferred; host arrival time is used for devices that send none, and then
    the arrival jitter is reported too. The estimate lands in ``measured_hz`` for stream metadata.
    """

    def __init__(self, nominal_hz: float, where: str, *, tolerance: float = 0.02, min_span_s: float = 5.0):
        self.nominal_hz = nominal_hz
        self.where = where
        self.tolerance = tolerance
        self.min_span_s = min_span_s
        self.measured_hz: float | None = None
        self.jitter_ms: float | None = None
        self.warned = False
        self._t0: int | None = None
        self._samples = 0
        self._last_t: int | None = None
        self._intervals: list[float] = []
        self._kept_samples = 0  # from spans closed by reset(), which stay valid measurements
        self._kept_span_ns = 0

    def reset(self) -> None:
        """After a reconnect or clock jump the old anchor means nothing; what it measured still counts."""
        if self._t0 is not None and self._last_t is not None and self._last_t > self._t0:
            self._kept_samples += self._samples
            self._kept_span_ns += self._last_t - self._t0
        self._t0, self._samples, self._last_t = None, 0, None

    def update(self, n: int, t_last_ns: int, *, restart: bool = False) -> str | None:
        """Returns the warning text when this update first shows a mismatch."""
        if restart:
            self.reset()
        if self._last_t is not None and n:
            self._intervals.append((t_last_ns - self._last_t) / n)
            self._intervals = self._intervals[-512:]
        self._last_t = t_last_ns
        if self._t0 is None:
            self._t0 = t_last_ns
            return None
        self._samples += n
        span_s = (t_last_ns - self._t0 + self._kept_span_ns) / 1e9
        if span_s < self.min_span_s or span_s <= 0:
            return None
        self.measured_hz = (self._samples + self._kept_samples) / span_s
        if len(self._intervals) > 2:
            self.jitter_ms = float(np.std(self._intervals) / 1e6)
        error = self.measured_hz / self.nominal_hz - 1.0
        if abs(error) > self.tolerance and not self.warned:
            self.warned = True
            message = (
                f"{self.where}: declared fs={self.nominal_hz:g} Hz but timestamps show "
                f"{self.measured_hz:.3f} Hz over {span_s:.1f} s ({error * 100:+.2f} %); keeping the declared rate"
            )
            log.warning(message)
            return message
        return None
