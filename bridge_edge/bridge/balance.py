"""Rate-balanced sampling of the pair windows: rhythm made independent of heart rate.

Simulated (and real) AF runs faster than sinus: in 0.7.0's pair split 56 % of the windows the
old model calls AF were faster than 100 bpm against 26 % of the others, and the bridged model learnt
rate as evidence of AF (docs/method.md, "Bundle 0.8.0"). With ``[data] pair_balance = "rate"``
the bridge, its selection trials, the position check and the KD baseline draw their training
windows with replacement, weighted so that within every heart-rate bin the old model's AF share
is the pooled one. Both inputs are label-free: the rate comes from the R peaks of the pair's
ECG, the class from the old model's output on that ECG (its AF probability above 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.bridge.shards import RowReader
from bridge_edge.signals.beats import detect_ecg_beats

# Bin edges in bpm; windows without a rate (fewer than 3 R peaks) share one extra bin.
RATE_BINS_BPM = (0.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 115.0, 130.0, 150.0, 1000.0)
# A window counts at most this many times its unweighted share (and at least its inverse): a bin
# with a handful of windows of one class must not dominate an epoch.
MAX_WEIGHT = 5.0


@dataclass(frozen=True)
class RateBalance:
    weights: np.ndarray  # (N,) mean 1: the relative chance of each window being drawn
    counts: np.ndarray  # (2, bins + 1): windows per (not positive / positive) x rate bin
    bins_bpm: tuple[float, ...] = RATE_BINS_BPM

    def summary(self) -> dict:
        """What the training reports record about the sampling."""
        w = self.weights
        return {
            "kind": "rate",
            "bins_bpm": list(self.bins_bpm),
            "windows_per_bin": {"other": self.counts[0].tolist(), "positive": self.counts[1].tolist()},
            "effective_windows": round(float(w.sum() ** 2 / np.sum(w**2)), 1),
            "max_weight": MAX_WEIGHT,
        }


def window_heart_rates(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate (bpm) of each ECG window from its median R-R interval; NaN under 3 R peaks."""
    rates = np.full(len(ecg), np.nan)
    reader = RowReader(ecg)  # a memory-mapped split's pages given back as it goes (docs/scale.md)
    for i in range(len(ecg)):  # one R-peak detection per window (signals.beats)
        peaks = detect_ecg_beats(reader[i], fs)
        if len(peaks) >= 3:
            rates[i] = 60.0 * fs / float(np.median(np.diff(peaks)))
    return rates


def rate_balanced_weights(rates_bpm: np.ndarray, positive: np.ndarray, bins=RATE_BINS_BPM) -> RateBalance:
    """Weights that make the positive share the same in every rate bin.

    A cell (class c, bin b) with n_cb windows gets the mass n_c n_b / N it would hold if class and
    rate were independent; each of its windows weighs that over n_cb, clipped to
    [1/MAX_WEIGHT, MAX_WEIGHT], then all weights are scaled to mean 1.
    """
    rates_bpm = np.asarray(rates_bpm, dtype=float)
    cls = np.asarray(positive, dtype=bool).astype(int)
    n_bins = len(bins) - 1
    bin_of = np.where(
        np.isfinite(rates_bpm), np.clip(np.digitize(rates_bpm, bins) - 1, 0, n_bins - 1), n_bins
    )
    counts = np.zeros((2, n_bins + 1), dtype=np.int64)
    np.add.at(counts, (cls, bin_of), 1)
    n = max(1, len(cls))
    expected = counts.sum(axis=1)[:, None] * counts.sum(axis=0)[None, :] / n
    cell_weight = np.divide(expected, counts, out=np.ones_like(expected), where=counts > 0)
    weights = np.clip(cell_weight[cls, bin_of], 1.0 / MAX_WEIGHT, MAX_WEIGHT)
    return RateBalance(weights / weights.mean() if len(weights) else weights, counts, tuple(bins))
