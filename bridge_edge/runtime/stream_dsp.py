"""Streaming form of the versioned preprocessing (``bridge_edge.signals.preprocess``).

``StreamingPreprocessor`` runs steps 1-2 of ``ppg-v1`` chunk by chunk: the SOS band-pass
carries its ``zi`` state across chunks (starting from rest, like the offline filter) and the
linear resampler keeps the last filtered sample so the interpolation across a chunk boundary
is the one the offline pass computes. The filter is ``signals.filters.SosFilter``, the one the
offline pass runs (numpy only; about 20 us per sensor-sized chunk). Output sample ``k`` sits at input position
``k * fs_in / fs_out``, computed exactly as offline, so after any sequence of chunk sizes the
concatenated output equals ``filter_and_resample`` of the concatenated input (to rounding).
Step 3 (z-score per window) happens when a window is cut (``normalise_windows``).

The filter starts from rest, as offline, so a signal with a large DC level (raw PPG counts)
rings for a few seconds: ``warmup_seconds`` is how long, and the pipeline does not run the
model on windows that start inside it.

Samples known to be missing (a gap) are filled by holding the last raw value so the filter and
the time axis keep going; the caller marks the affected output range as a gap.

Non-finite input never reaches the filter: the pipeline turns NaN/inf samples into a gap at
ingest, and ``process`` refuses them (``NonFiniteError``) rather than let one NaN poison the
filter state for ever. After such a gap the pipeline calls ``restart(value)``: the filter state
is re-initialised to its steady state for the first finite value that follows, so the stream
resumes without a step transient (docs/runtime.md, "Non-finite samples").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.errors import NonFiniteError
from bridge_edge.signals.filters import SosFilter, sosfilt, sosfilt_zi
from bridge_edge.signals.preprocess import PreprocessSpec, bandpass_sos


@dataclass(frozen=True)
class ResampledBlock:
    """Model-rate samples ``values`` with absolute output indices ``first_index`` + arange(n).

    ``source_index[j]`` is the input sample whose arrival made output j computable
    (ceil of its input position): the pipeline maps it to that sample's arrival time.
    """

    values: np.ndarray  # (n,) float64
    first_index: int
    source_index: np.ndarray  # (n,) int64, absolute input sample index


def warmup_seconds(spec: PreprocessSpec, fs_in: float, tolerance: float = 1e-4) -> float:
    """Time until the filter's step response stays below ``tolerance`` of the step."""
    n = int(fs_in * 60)
    step = sosfilt(bandpass_sos(spec, fs_in), np.ones(n))
    above = np.flatnonzero(np.abs(step) > tolerance)
    return float((above[-1] + 1) / fs_in) if len(above) else 0.0


class StreamingPreprocessor:
    def __init__(self, spec: PreprocessSpec, fs_in: float) -> None:
        self.spec = spec
        self.fs_in = float(fs_in)
        self._filter = SosFilter(bandpass_sos(spec, self.fs_in))  # starts from rest, as offline
        self._zi_step = sosfilt_zi(self._filter.sos)  # steady state for a unit step, per section
        self._ratio = self.fs_in / spec.fs_out  # input samples per output sample
        self.n_in = 0  # input samples consumed (including gap fill)
        self.n_out = 0  # output samples produced
        self._last_filtered = 0.0
        self._last_raw = 0.0

    def process(self, x: np.ndarray) -> ResampledBlock:
        """Filter and resample one chunk of raw input (1-D, any length)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if len(x) == 0:
            return ResampledBlock(np.empty(0), self.n_out, np.empty(0, dtype=np.int64))
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x))
            raise NonFiniteError(
                f"{len(bad)} non-finite input sample(s) reached the streaming filter; expected the "
                "pipeline to turn them into a gap at ingest",
                where="StreamingPreprocessor.process",
                count=int(len(bad)),
                first_index=int(self.n_in + bad[0]),
            )
        y = self._filter.process(x)
        total = self.n_in + len(x)
        n_avail = self.available(total)
        k = np.arange(self.n_out, n_avail)
        t = k * self._ratio  # same expression as the offline resampler
        if self.n_in > 0:  # the previous chunk's last sample bridges the boundary
            xp = np.arange(self.n_in - 1, total)
            fp = np.concatenate(([self._last_filtered], y))
        else:
            xp = np.arange(total)
            fp = y
        values = np.interp(t, xp, fp)
        source_index = np.minimum(np.ceil(t).astype(np.int64), total - 1)
        block = ResampledBlock(values, self.n_out, source_index)
        self.n_in, self.n_out = total, n_avail
        self._last_filtered, self._last_raw = float(y[-1]), float(x[-1])
        return block

    def available(self, n_in: int) -> int:
        """Output samples computable from the first ``n_in`` input samples."""
        return int(np.floor((n_in - 1) * self.spec.fs_out / self.fs_in)) + 1

    def inputs_for(self, n_out: int) -> int:
        """The fewest input samples from which ``n_out`` output samples are computable."""
        total = max(1, int(np.ceil((n_out - 1) * self._ratio)) + 1)
        while self.available(total) < n_out:  # float rounding: at most a step either way
            total += 1
        while total > 1 and self.available(total - 1) >= n_out:
            total -= 1
        return total

    def restart(self, value: float) -> None:
        """Re-initialise the filter state to its steady state for a constant input ``value``.

        Used after a non-finite gap: the stream continues from ``value`` with no step transient.
        The sample counters (time axis) are kept."""
        self._filter.zi = self._zi_step * float(value)
        self._last_raw = float(value)

    def fill_gap(self, n_missing: int) -> ResampledBlock:
        """Advance over ``n_missing`` lost input samples by holding the last raw value."""
        return self.process(np.full(int(n_missing), self._last_raw))
