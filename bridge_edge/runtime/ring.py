"""Fixed-capacity ring buffer: one producer, several readers, nothing lost silently.

One ring holds one stream at one sampling rate (never mixed rates). Every sample row carries
its values (``channels`` float32) and ``time_columns`` int64 times (the pipeline stores the
fitted time t_est and the host arrival time, both ns in the host monotonic domain).
Storage is preallocated once; a push copies at most two slices and a read copies at most two.

Positions are absolute: sample ``i`` is the i-th sample ever pushed. A reader keeps a
``RingCursor`` (its next position); when the producer laps it, the overwritten samples are
reported to that reader as ``lost`` and added to its cursor's ``lost_total``, and the ring's
``overwritten_samples`` counts every sample overwritten before the slowest cursor had read it.

A single lock guards positions and copies: copies are short memcpy's, so readers and the
producer never see a torn row, and no reader ever steals another reader's data.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from bridge_edge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class RingCursor:
    """A reader's position in the ring (absolute sample index) and what it lost so far."""

    position: int = 0
    lost_total: int = 0


@dataclass(frozen=True)
class RingRead:
    """Result of a read: ``n`` rows starting at absolute index ``start``; ``lost`` rows skipped."""

    n: int
    start: int
    lost: int


class RingBuffer:
    def __init__(self, capacity: int, channels: int = 1, time_columns: int = 1, name: str = "ring") -> None:
        if capacity < 1 or channels < 1:
            raise ConfigError(
                f"ring {name!r}: capacity and channels must be >= 1, got {capacity} and {channels}",
                key="capacity",
                value=capacity,
                expected=">= 1",
            )
        self.name = name
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._values = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self.time_columns = int(time_columns)
        self._times = np.zeros((self.capacity, self.time_columns), dtype=np.int64)
        self._lock = threading.Lock()
        self._written = 0  # absolute index of the next sample to be written
        self._cursors: list[RingCursor] = []
        self.overwritten_samples = 0  # overwritten before the slowest registered reader read them
        self.resets = 0

    # --- producer ------------------------------------------------------------------------

    def push(self, values: np.ndarray, times_ns: np.ndarray) -> None:
        """Append rows; the oldest rows are overwritten (and counted) when the ring is full."""
        values = values.reshape(len(values), self.channels)
        times_ns = times_ns.reshape(len(times_ns), self.time_columns)
        n = len(values)
        if n == 0:
            return
        with self._lock:
            self._count_overwrites_locked(self._written + n - self.capacity)
            skip = max(0, n - self.capacity)  # only the newest `capacity` rows can survive
            self._written += skip
            values, times_ns, n = values[skip:], times_ns[skip:], n - skip
            start = self._written % self.capacity
            first = min(n, self.capacity - start)
            self._values[start : start + first] = values[:first]
            self._times[start : start + first] = times_ns[:first]
            if first < n:
                self._values[: n - first] = values[first:]
                self._times[: n - first] = times_ns[first:]
            self._written += n

    def _count_overwrites_locked(self, oldest_kept: int) -> None:
        """Rows below ``oldest_kept`` are about to vanish; count those the slowest reader missed."""
        if not self._cursors:
            return
        slowest = min(c.position for c in self._cursors)
        if oldest_kept > slowest:
            self.overwritten_samples += oldest_kept - max(slowest, self._written - self.capacity)

    # --- readers ---------------------------------------------------------------------------

    def cursor(self, from_now: bool = False) -> RingCursor:
        """Register a reader; it starts at the oldest held sample (or at the newest with from_now)."""
        with self._lock:
            start = self._written if from_now else max(0, self._written - self.capacity)
            c = RingCursor(position=start)
            self._cursors.append(c)
            return c

    def release(self, cursor: RingCursor) -> None:
        with self._lock:
            self._cursors = [c for c in self._cursors if c is not cursor]

    @property
    def written(self) -> int:
        return self._written

    def read_new(
        self,
        cursor: RingCursor,
        out: np.ndarray | None = None,
        out_times: np.ndarray | None = None,
        max_n: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, RingRead]:
        """Rows the cursor has not seen yet (oldest first), and how many it lost to overwrites.

        With ``out``/``out_times`` (shape (m, channels) / (m,)) nothing is allocated: at most
        ``m`` rows are copied into them (times: (m, time_columns)) and views of the filled part are returned.
        """
        with self._lock:
            oldest = max(0, self._written - self.capacity)
            lost = max(0, oldest - cursor.position)
            start = cursor.position + lost
            n = self._written - start
            limit = max_n if max_n is not None else n
            if out is not None:
                limit = min(limit, len(out))
            n = min(n, limit)
            values, times = self._copy_out(start, n, out, out_times)
            cursor.position = start + n
            cursor.lost_total += lost
        return values, times, RingRead(n=n, start=start, lost=lost)

    def peek_latest(
        self, n: int, out: np.ndarray | None = None, out_times: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The newest ``n`` rows (fewer if the ring holds fewer), without moving any cursor."""
        with self._lock:
            n = min(n, self._written, self.capacity)
            if out is not None:
                n = min(n, len(out))
            return self._copy_out(self._written - n, n, out, out_times)

    def drain(self, cursor: RingCursor) -> tuple[np.ndarray, np.ndarray, RingRead]:
        """Everything the cursor has not read yet (alias of read_new without a limit)."""
        return self.read_new(cursor)

    def lag(self, cursor: RingCursor) -> int:
        """Rows written but not yet read by this cursor."""
        return self._written - cursor.position

    def reset(self, reason: str) -> None:
        """Forget all held rows (explicit and logged); cursors move to the new start."""
        with self._lock:
            log.warning(
                "ring %s reset (%s): %d held rows discarded",
                self.name,
                reason,
                min(self._written, self.capacity),
            )
            for c in self._cursors:
                c.position = self._written
            self.resets += 1

    def _copy_out(
        self, start: int, n: int, out: np.ndarray | None, out_times: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if out is None:
            out = np.empty((n, self.channels), dtype=np.float32)
        if out_times is None:
            out_times = np.empty((n, self.time_columns), dtype=np.int64)
        s = start % self.capacity
        first = min(n, self.capacity - s)
        out[:first] = self._values[s : s + first]
        out_times[:first] = self._times[s : s + first]
        if first < n:
            out[first:n] = self._values[: n - first]
            out_times[first:n] = self._times[: n - first]
        return out[:n], out_times[:n]
