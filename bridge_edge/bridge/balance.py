"""Rate-balanced sampling of the pair windows: rhythm made independent of heart rate.

Simulated (and real) AF runs faster than sinus: in 0.7.0's pair split 56 % of the windows the
old model calls AF were faster than 100 bpm against 26 % of the others, and the bridged model learnt
rate as evidence of AF (docs/method.md, "Bundle 0.8.0"). With ``[data] pair_balance = "rate"``
the bridge, its selection trials, the position check and the KD baseline draw their training
windows with replacement, weighted so that within every heart-rate bin the old model's AF share
is the pooled one. Both inputs are label-free: the rate comes from the R peaks of the pair's
ECG, the class from the old model's output on that ECG (its AF probability above 0.5).

``pair_balance = "rate_irregularity"`` balances within every (rate bin, R-R interval CV bin)
cell instead. AF is irregular, but so is slow sinus with two premature beats, whose interval CV
is as high as AF's. Balanced by rate alone, the CV still predicts the old model's call (in the
default pair corpus 70 % of the windows with a CV of 0.2-0.3 are called AF, against 30 % of all);
balanced by irregularity too, it no longer does, and only the pattern of the intervals can
(docs/method.md, "Slow ectopy: the encoder tells it from AF, the bridge does not").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.bridge.shards import RowReader
from bridge_edge.signals.beats import detect_ecg_beats

# Bin edges in bpm; windows without a rate (fewer than 3 R peaks) share one extra bin.
RATE_BINS_BPM = (0.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 115.0, 130.0, 150.0, 1000.0)
# Bin edges of a window's R-R interval CV (std / mean of its ECG's R-R intervals) for
# "rate_irregularity": sinus 0-0.05, one premature beat ~0.1-0.15, AF and frequent ectopy above.
INTERVAL_CV_BINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, float("inf"))
# A window counts at most this many times its unweighted share (and at least its inverse): a bin
# with a handful of windows of one class must not dominate an epoch.
MAX_WEIGHT = 5.0


@dataclass(frozen=True)
class RateBalance:
    weights: np.ndarray  # (N,) mean 1: the relative chance of each window being drawn
    # windows per (not positive / positive) x rate bin (+ no rate) [x interval CV bin (+ none)]
    counts: np.ndarray
    bins_bpm: tuple[float, ...] = RATE_BINS_BPM
    interval_cv_bins: tuple[float, ...] | None = None  # set when balanced by irregularity too

    def summary(self) -> dict:
        """What the training reports record about the sampling."""
        w = self.weights
        out = {
            "kind": "rate" if self.interval_cv_bins is None else "rate_irregularity",
            "bins_bpm": list(self.bins_bpm),
            "windows_per_bin": {"other": self.counts[0].tolist(), "positive": self.counts[1].tolist()},
            "effective_windows": round(float(w.sum() ** 2 / np.sum(w**2)), 1),
            "max_weight": MAX_WEIGHT,
        }
        if self.interval_cv_bins is not None:
            out["interval_cv_bins"] = [b if np.isfinite(b) else None for b in self.interval_cv_bins]
        return out


@dataclass(frozen=True)
class WindowRhythm:
    """Per ECG window, from its R peaks (NaN under 3 peaks): label-free."""

    rates_bpm: np.ndarray  # from the median R-R interval
    interval_cv: np.ndarray  # std / mean of the R-R intervals


def window_rhythm(ecg: np.ndarray, fs: float) -> WindowRhythm:
    rates, cvs = np.full(len(ecg), np.nan), np.full(len(ecg), np.nan)
    reader = RowReader(ecg)  # a memory-mapped split's pages given back as it goes (docs/scale.md)
    for i in range(len(ecg)):  # one R-peak detection per window (signals.beats)
        peaks = detect_ecg_beats(reader[i], fs)
        if len(peaks) >= 3:
            rr = np.diff(peaks) / fs
            rates[i] = 60.0 / float(np.median(rr))
            cvs[i] = float(rr.std() / rr.mean())
    return WindowRhythm(rates, cvs)


def window_heart_rates(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate (bpm) of each ECG window from its median R-R interval; NaN under 3 R peaks."""
    return window_rhythm(ecg, fs).rates_bpm


def _bin_index(values: np.ndarray, bins) -> np.ndarray:
    """Bin of each value; NaN goes to one extra bin after the last."""
    n_bins = len(bins) - 1
    finite = np.isfinite(values)
    inner = np.clip(np.digitize(np.where(finite, values, bins[0]), bins) - 1, 0, n_bins - 1)
    return np.where(finite, inner, n_bins)


def rate_balanced_weights(
    rates_bpm: np.ndarray,
    positive: np.ndarray,
    bins=RATE_BINS_BPM,
    interval_cv: np.ndarray | None = None,
    interval_cv_bins=INTERVAL_CV_BINS,
) -> RateBalance:
    """Weights that make the positive share the same in every rate bin (and, given
    ``interval_cv``, in every rate x interval-CV cell).

    A cell (class c, bin b) with n_cb windows gets the mass n_c n_b / N it would hold if class and
    bin were independent; each of its windows weighs that over n_cb, clipped to
    [1/MAX_WEIGHT, MAX_WEIGHT], then all weights are scaled to mean 1.
    """
    cls = np.asarray(positive, dtype=bool).astype(int)
    rate_bin = _bin_index(np.asarray(rates_bpm, dtype=float), bins)
    shape = (len(bins),)
    if interval_cv is None:
        bin_of = rate_bin
    else:
        cv_bin = _bin_index(np.asarray(interval_cv, dtype=float), interval_cv_bins)
        shape = (len(bins), len(interval_cv_bins))
        bin_of = np.ravel_multi_index((rate_bin, cv_bin), shape)
    counts = np.zeros((2, int(np.prod(shape))), dtype=np.int64)
    np.add.at(counts, (cls, bin_of), 1)
    n = max(1, len(cls))
    expected = counts.sum(axis=1)[:, None] * counts.sum(axis=0)[None, :] / n
    cell_weight = np.divide(expected, counts, out=np.ones_like(expected), where=counts > 0)
    weights = np.clip(cell_weight[cls, bin_of], 1.0 / MAX_WEIGHT, MAX_WEIGHT)
    return RateBalance(
        weights / weights.mean() if len(weights) else weights,
        counts.reshape((2, *shape)),
        tuple(bins),
        None if interval_cv is None else tuple(interval_cv_bins),
    )
