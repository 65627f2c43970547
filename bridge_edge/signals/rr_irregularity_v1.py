"""The frozen v1 pulse-interval irregularity statistic: the pretraining target ``rr_irregularity``.

This is the pulse-timing AF score exactly as ``signals.rr_timing`` computed it before its
retuning on simulator dataset version 2 (issue 22; docs/method.md, "Pulse-timing baseline",
"Retuned"). The shipped default bundle's encoder was pretrained on log(this + 0.01)
(``signals.ppg_targets``), so it must not change: its constants live here, not in
``rr_timing``, and ``tests/unit/test_signals_rr_irregularity_v1.py`` pins its values on fixed
beat arrays. The AF baseline itself uses ``signals.rr_timing`` (v2 rules); change that, never this.

Rules (v1): intervals outside 0.25-2 s dropped; an interval < 0.8 x the median that follows one
>= 0.85 x the median is premature, and it and the next interval are excluded, as are intervals
> 1.6 x the median; if more than half would go nothing is excluded; then
sqrt(nRMSSD x min(lag-1, lag-2 median |dRR|) / median RR) x clip(TPR / (2/3), 0.5, 1.25).
NaN with fewer than 5 usable intervals or 3 usable successive differences.
"""

from __future__ import annotations

import numpy as np

V1_RR_MIN_S, V1_RR_MAX_S = 0.25, 2.0
V1_MIN_INTERVALS = 5
V1_MIN_PAIRS = 3
V1_PREMATURE_FRACTION = 0.8
V1_REGULAR_TOLERANCE = 0.15
V1_LONG_FRACTION = 1.6
V1_MAX_EXCLUDED_FRACTION = 0.5
V1_TPR_RANDOM = 2.0 / 3.0
V1_TPR_CLIP = (0.5, 1.25)


def _v1_exclusions(rr: np.ndarray) -> np.ndarray:
    med = np.median(rr)
    prev = np.concatenate([[med], rr[:-1]])
    premature = (rr < V1_PREMATURE_FRACTION * med) & (prev >= (1.0 - V1_REGULAR_TOLERANCE) * med)
    missed = rr > V1_LONG_FRACTION * med
    excluded = premature | np.concatenate([[False], premature[:-1]]) | missed
    if excluded.mean() > V1_MAX_EXCLUDED_FRACTION:
        return np.zeros_like(excluded)
    return excluded


def _v1_turning_point_ratio(rr: np.ndarray, ok: np.ndarray) -> float:
    mid = ok[1:-1] & ok[:-2] & ok[2:]
    if not mid.any():
        return V1_TPR_RANDOM
    a, b, c = rr[:-2], rr[1:-1], rr[2:]
    turning = ((b > a) & (b > c)) | ((b < a) & (b < c))
    return float(turning[mid].mean())


def rr_irregularity_v1_from_beats(beats: np.ndarray, fs: float) -> float:
    """The v1 irregularity of one window from its beat sample indices (NaN: too few intervals)."""
    rr = np.diff(np.asarray(beats, dtype=np.float64)) / fs
    if len(rr) < V1_MIN_INTERVALS:
        return float("nan")
    plausible = (rr >= V1_RR_MIN_S) & (rr <= V1_RR_MAX_S)
    ok = plausible.copy()
    if plausible.sum() >= V1_MIN_INTERVALS:
        ok[plausible] &= ~_v1_exclusions(rr[plausible])
    pair = ok[1:] & ok[:-1]
    if ok.sum() < V1_MIN_INTERVALS or pair.sum() < V1_MIN_PAIRS:
        return float("nan")
    drr = np.diff(rr)[pair]
    kept = rr[ok]
    nrmssd = np.sqrt(np.mean(drr**2)) / kept.mean()
    pair2 = ok[2:] & ok[:-2]
    med_drr = np.median(np.abs(drr))
    if pair2.sum() >= V1_MIN_PAIRS:
        med_drr = min(med_drr, float(np.median(np.abs(rr[2:] - rr[:-2])[pair2])))
    med_drr /= np.median(kept)
    tpr = _v1_turning_point_ratio(rr, ok)
    return float(np.sqrt(nrmssd * med_drr) * np.clip(tpr / V1_TPR_RANDOM, *V1_TPR_CLIP))
