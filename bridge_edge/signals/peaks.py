"""Peak finding in numpy alone (the device side's beat detectors use it; no scipy on a device).

``find_peaks`` follows ``scipy.signal.find_peaks`` for the two options the detectors use, and the
tests check it against scipy: a peak is a sample (or the middle of a flat run, rounded down)
higher than the samples on both sides of it, never at either end; ``min_height`` keeps peaks at
least that high; ``distance`` then keeps the highest peaks and drops every lower peak closer than
``distance`` samples to one kept (equal heights: the later peak counts as higher).
"""

from __future__ import annotations

import numpy as np

# Above this many (peak, neighbour) pairs the distance selection walks the peaks one at a time
# instead of comparing every pair at once (only long recordings with noisy maxima get there).
PAIRS_AT_ONCE = 2_000_000


def find_peaks(x: np.ndarray, min_height: float | None = None, distance: float | None = None):
    """``(indices, heights)`` of the peaks of a 1-D signal (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    peaks = local_maxima(x)
    if min_height is not None:
        peaks = peaks[x[peaks] >= min_height]
    if distance is not None and len(peaks) > 1:
        peaks = peaks[_keep_by_distance(peaks, x[peaks], int(np.ceil(distance)))]
    return peaks, x[peaks]


def local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of samples (middles of flat runs) higher than both neighbours; never the ends."""
    if len(x) < 3:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], x[1:] != x[:-1]]))  # runs of equal values
    ends = np.append(starts[1:], len(x)) - 1
    inner = (starts > 0) & (ends < len(x) - 1)
    s, e = starts[inner], ends[inner]
    up = (x[s - 1] < x[s]) & (x[e + 1] < x[e])
    return ((s[up] + e[up]) // 2).astype(np.int64)


def _keep_by_distance(peaks: np.ndarray, heights: np.ndarray, distance: int) -> np.ndarray:
    """Which peaks survive: highest first, each dropping the lower ones within ``distance``.

    Done in rounds: a live peak higher than every live peak within reach is kept (the highest-
    first walk keeps it too, since nothing higher can remove it), and it removes its reach. A few
    rounds settle typical signals; whatever is still live after them is walked in order."""
    n = len(peaks)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(heights, kind="stable")] = np.arange(n)  # ties: the later peak ranks higher
    lo = np.searchsorted(peaks, peaks - distance + 1, side="left")
    hi = np.searchsorted(peaks, peaks + distance - 1, side="right")
    width = int((hi - lo).max())
    keep = np.zeros(n, dtype=bool)
    live = np.ones(n, dtype=bool)
    if n * width <= PAIRS_AT_ONCE:
        reach = lo[:, None] + np.arange(width)[None, :]
        inside = (reach < hi[:, None]) & (reach != np.arange(n)[:, None])
        reach = np.minimum(reach, n - 1)
        for _ in range(8):  # rounds, not samples
            rival = np.where(inside & live[reach], rank[reach], -1).max(axis=1)
            top = live & (rank > rival)
            if not top.any():
                break
            keep |= top
            removed = np.zeros(n + 1, dtype=np.int64)
            np.add.at(removed, lo[top], 1)
            np.add.at(removed, hi[top], -1)
            live &= np.cumsum(removed[:n]) == 0
            if not live.any():
                return keep
    for i in np.argsort(rank)[::-1]:  # the rest, highest first (one step per peak)
        if live[i]:
            keep[i] = True
            live[lo[i] : hi[i]] = False
    return keep
