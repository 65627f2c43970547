"""Cut model windows from a model-rate stream, gap-aware.

Window ``j`` covers output samples ``[j * hop, j * hop + length)`` of the stream, the same grid
an offline pass over the whole recording uses. Output samples produced while filling a gap are
remembered as ``GapSpan``s; a window that overlaps one carries ``gap=True`` and the number of
input samples that were missing, and the pipeline flags or skips it by policy. A span filled for
non-finite input (NaN, ±inf replaced at ingest) marks the window ``nonfinite``: the pipeline
always gates it, whatever the gap policy (docs/runtime.md, "Non-finite samples").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.errors import ConfigError


@dataclass(frozen=True)
class GapSpan:
    out_start: int  # first model-rate sample computed from filled (missing) input
    out_end: int  # one past the last such sample
    missing_samples: int  # input samples that were missing
    nonfinite: bool = False  # the missing samples were non-finite values dropped at ingest


@dataclass(frozen=True)
class Window:
    index: int  # j: the window's position on the hop grid
    out_end: int  # absolute model-rate index one past the window's last sample
    values: np.ndarray  # (length,) float64, filtered + resampled, not yet normalised
    source_last: int  # input sample whose arrival completed the window
    gap: bool
    missing_samples: int
    nonfinite: bool = False  # overlaps samples that arrived as NaN/inf


class WindowCutter:
    """Holds the newest model-rate samples and emits every window as soon as it is complete."""

    def __init__(self, length: int, hop: int) -> None:
        if length < 1 or hop < 1:
            raise ConfigError(
                f"window length and hop must be >= 1 sample, got {length} and {hop}",
                key="window",
                value=(length, hop),
                expected=">= 1",
            )
        self.length, self.hop = int(length), int(hop)
        self._cap = 4 * self.length + 4 * self.hop
        self._values = np.zeros(self._cap)
        self._source = np.zeros(self._cap, dtype=np.int64)
        self._start = 0  # absolute index of _values[0]
        self._n = 0  # samples held
        self._next_window = 0
        self._gaps: list[GapSpan] = []

    @property
    def next_window_end(self) -> int:
        """Absolute model-rate index one past the last sample of the next window to be cut."""
        return self._next_window * self.hop + self.length

    def mark_gap(self, span: GapSpan) -> None:
        self._gaps.append(span)

    def push(self, values: np.ndarray, source_index: np.ndarray, first_index: int) -> list[Window]:
        """Append model-rate samples (absolute index ``first_index`` onwards); return new windows."""
        if first_index != self._start + self._n:  # the stream must arrive contiguous
            raise ValueError(f"window cutter expected sample {self._start + self._n}, got {first_index}")
        windows: list[Window] = []
        pos = 0
        while pos < len(values):  # a loop over buffer refills, not over samples
            self._make_room()
            take = min(len(values) - pos, self._cap - self._n)
            sl = slice(self._n, self._n + take)
            self._values[sl] = values[pos : pos + take]
            self._source[sl] = source_index[pos : pos + take]
            self._n += take
            pos += take
            windows.extend(self._cut())
        return windows

    def _make_room(self) -> None:
        """Drop samples no future window needs, keeping the buffer start aligned to data."""
        keep_from = self._next_window * self.hop
        drop = min(max(0, keep_from - self._start), self._n)
        if drop and self._n - drop < self._cap:
            for arr in (self._values, self._source):
                arr[: self._n - drop] = arr[drop : self._n]
            self._n -= drop
            self._start += drop
            self._gaps = [g for g in self._gaps if g.out_end > self._start]

    def _cut(self) -> list[Window]:
        out = []
        held_end = self._start + self._n
        while self._next_window * self.hop + self.length <= held_end:  # one iteration per window
            j = self._next_window
            lo = j * self.hop - self._start
            hi = lo + self.length
            a, b = j * self.hop, j * self.hop + self.length
            overlapping = [g for g in self._gaps if g.out_start < b and g.out_end > a]
            out.append(
                Window(
                    index=j,
                    out_end=b,
                    values=self._values[lo:hi].copy(),
                    source_last=int(self._source[hi - 1]),
                    gap=bool(overlapping),
                    missing_samples=sum(g.missing_samples for g in overlapping),
                    nonfinite=any(g.nonfinite for g in overlapping),
                )
            )
            self._next_window += 1
        return out
