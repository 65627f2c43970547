"""Pulse-timing AF score: how irregular the beat-to-beat intervals of a window are (numpy/scipy).

What commercial PPG rhythm checks build on: AF is "irregularly irregular", so it can be read
from the tachogram alone, without the pulse shape. Per window:

1. beats from the runtime's own detector (``signals.beats.detect_ppg_beats``); intervals RR
   outside 0.25-2 s dropped (missed or extra beats);
2. isolated premature beats (PACs, PVCs) are taken out before measuring irregularity, as the
   RR literature does (Dash et al. 2009 and Lian, Wang & Muessig 2011 remove ectopic
   intervals before scoring): an interval shorter than ``PREMATURE_FRACTION`` x the window's
   median that follows one that is not short (>= (1 - ``REGULAR_TOLERANCE``) x the median: a
   sinus interval or a compensatory pause) marks a premature beat; it and the next interval
   (a PVC's compensatory pause, a PAC's reset interval) are excluded, with the successive
   differences that touch them. An interval longer than ``LONG_FRACTION`` x the median is a
   pulse not seen (a premature beat without a palpable pulse, or a missed beat) and is
   excluded too. When more than ``MAX_EXCLUDED_FRACTION`` of the intervals would go, the
   irregularity is not isolated ectopy and nothing is excluded;
3. three established irregularity statistics of what is left, all unit-free:
   - normalised RMSSD, RMSSD / mean RR (Dash et al. 2009, "Automatic real time detection of
     atrial fibrillation", Ann Biomed Eng; McManus et al. 2013 on smartphone pulse): sensitive;
   - median |dRR| / median RR, the robust centre of the successive-difference distribution
     that Tateno & Glass 2001 ("Automatic detection of atrial fibrillation using the
     coefficient of variation and density histograms of RR and dRR intervals", Med Biol Eng
     Comput) and Lian et al. 2011 ("A simple method to detect atrial fibrillation using RR
     intervals", Am J Cardiol) build on: one wrong beat barely moves it; taken as the smaller
     of the lag-1 and lag-2 medians, so bigeminy (regular at lag 2) is not AF;
   - the turning-point ratio TPR (Dash et al. 2009): the share of intervals that are a local
     maximum or minimum of their neighbours, 2/3 for independent intervals (AF), lower for
     the slow breathing modulation of sinus rhythm;
4. score = sqrt(nRMSSD x median|dRR|/RR) x clip(TPR / (2/3), 0.5, 1.25): a typical
   beat-to-beat change as a fraction of an interval, damped when the changes are smooth
   rather than random. NaN with fewer than ``MIN_INTERVALS`` usable intervals, or when the
   window's SQI (``signals.quality``) is under ``LOW_SQI``: beats found in motion or noise are
   not a tachogram.

The threshold (``RR_AF_THRESHOLD``) was chosen on simulated *training* subjects only by
``fit_threshold`` (``scripts/fit_rr_threshold.py``); the numbers that chose it are beside it.
docs/method.md ("Pulse-timing baseline") has what it measures against the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.preprocess import window_polarity
from bridge_edge.signals.quality import LOW_SQI, ppg_sqi

RR_MIN_S, RR_MAX_S = 0.25, 2.0
MIN_INTERVALS = 5  # usable RR intervals a window needs for a score (a 10-s window holds 6-25)
MIN_PAIRS = 3  # successive differences between two usable intervals
PREMATURE_FRACTION = 0.8
REGULAR_TOLERANCE = 0.15
LONG_FRACTION = 1.6
MAX_EXCLUDED_FRACTION = 0.5
TPR_RANDOM = 2.0 / 3.0
TPR_CLIP = (0.5, 1.25)


@dataclass(frozen=True)
class RRThreshold:
    """The AF call of the timing score: ``score >= value`` is AF."""

    value: float
    fitted_on: str  # what data chose it
    train_auroc: float
    train_af_recall: float
    train_false_af: float  # sinus and ectopy windows called AF


# Chosen by `python3 scripts/fit_rr_threshold.py` (defaults: the default recipe's dataset, 30
# subjects, seed 0, 6 min; its 12 *train* subjects, each rendered twice: random episodes and a
# scripted 2 min sinus / 2 min ectopy / 2 min AF; 1,552 pure 10-s windows, simulator dataset
# version 2 with its random sensors and rates): the balanced-accuracy optimum 0.0778, rounded.
# At it, AF windows called AF 0.726 (463 windows, 102 unscored: low SQI), sinus 0.059 (595, 75
# unscored), ectopy 0.117 (494, 35 unscored); AUROC AF vs rest 0.756 with unscored windows
# ranked lowest. (On dataset version 1, without sensors: 0.056, AUROC 0.904.)
RR_AF_THRESHOLD = RRThreshold(
    value=0.078,
    fitted_on="simulated train split of the default dataset (seed 0, dataset version 2), random + scripted episodes",
    train_auroc=0.756,
    train_af_recall=0.726,
    train_false_af=0.087,
)


def _ectopic_exclusions(rr: np.ndarray) -> np.ndarray:
    """Boolean mask of intervals to exclude around isolated premature beats."""
    med = np.median(rr)
    prev = np.concatenate([[med], rr[:-1]])  # the first interval has no predecessor: assume regular
    premature = (rr < PREMATURE_FRACTION * med) & (prev >= (1.0 - REGULAR_TOLERANCE) * med)
    missed = rr > LONG_FRACTION * med  # a pulse not seen: PVC without a pulse, or a missed beat
    excluded = premature | np.concatenate([[False], premature[:-1]]) | missed
    if excluded.mean() > MAX_EXCLUDED_FRACTION:
        return np.zeros_like(excluded)
    return excluded


def _turning_point_ratio(rr: np.ndarray, ok: np.ndarray) -> float:
    """Share of interior intervals (neighbours usable too) that are a strict local max or min."""
    mid = ok[1:-1] & ok[:-2] & ok[2:]
    if not mid.any():
        return TPR_RANDOM
    a, b, c = rr[:-2], rr[1:-1], rr[2:]
    turning = ((b > a) & (b > c)) | ((b < a) & (b < c))
    return float(turning[mid].mean())


def rr_af_score_from_beats(beats: np.ndarray, fs: float) -> float:
    """Timing AF score of one window from its beat sample indices (NaN: too few intervals)."""
    rr = np.diff(np.asarray(beats, dtype=np.float64)) / fs
    if len(rr) < MIN_INTERVALS:
        return float("nan")
    plausible = (rr >= RR_MIN_S) & (rr <= RR_MAX_S)
    ok = plausible.copy()
    if plausible.sum() >= MIN_INTERVALS:
        ok[plausible] &= ~_ectopic_exclusions(rr[plausible])
    pair = ok[1:] & ok[:-1]  # successive differences only between two usable intervals
    if ok.sum() < MIN_INTERVALS or pair.sum() < MIN_PAIRS:
        return float("nan")
    drr = np.diff(rr)[pair]
    kept = rr[ok]
    nrmssd = np.sqrt(np.mean(drr**2)) / kept.mean()
    # "regularly irregular" (bigeminy: short-long-short-long) changes a lot from one interval to
    # the next but not from one to the one after: AF changes at every lag, so the smaller of the
    # lag-1 and lag-2 medians keeps AF and lets bigeminy through as not AF
    pair2 = ok[2:] & ok[:-2]
    med_drr = np.median(np.abs(drr))
    if pair2.sum() >= MIN_PAIRS:
        med_drr = min(med_drr, float(np.median(np.abs(rr[2:] - rr[:-2])[pair2])))
    med_drr /= np.median(kept)
    tpr = _turning_point_ratio(rr, ok)
    return float(np.sqrt(nrmssd * med_drr) * np.clip(tpr / TPR_RANDOM, *TPR_CLIP))


def rr_af_scores_from_beats(beats: list, sqi: np.ndarray, fs: float) -> np.ndarray:
    """Scores of windows whose beats and SQI are known; NaN where SQI < ``LOW_SQI`` (beats in
    noise or motion are not a tachogram) or too few intervals."""
    scores = np.array([rr_af_score_from_beats(b, fs) for b in beats], dtype=np.float64)
    return np.where(np.asarray(sqi) >= LOW_SQI, scores, np.nan)


def rr_af_scores(windows: np.ndarray, fs: float) -> np.ndarray:
    """Scores of a batch (N, L) of preprocessed (band-passed, optionally z-scored) PPG windows;
    NaN where the window's SQI is low or it has too few beats."""
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    w = w * window_polarity(w)[:, None]  # pulses upright, as preprocessing ppg-v2 turns them
    beats = [detect_ppg_beats(x, fs) for x in w]  # loop over windows
    return rr_af_scores_from_beats(beats, ppg_sqi(w, fs, beats=beats), fs)


def rr_af_score(window: np.ndarray, fs: float) -> float:
    """Score of one preprocessed PPG window (NaN: low SQI or too few beats)."""
    return float(rr_af_scores(np.asarray(window)[None, :], fs)[0])


def rr_af_probability(scores: np.ndarray, threshold: RRThreshold = RR_AF_THRESHOLD) -> np.ndarray:
    """The score as a pseudo-probability for reports: monotone, 0.5 at the threshold, NaN -> 0.

    score / (score + threshold): ranks (AUROC) are the score's, and ``p >= 0.5`` is the AF call.
    A window without a score cannot be called AF from timing, so it counts as not AF.
    """
    s = np.asarray(scores, dtype=np.float64)
    p = s / (s + threshold.value)
    return np.where(np.isfinite(p), p, 0.0)


def fit_threshold(scores: np.ndarray, is_af: np.ndarray, fitted_on: str = "") -> RRThreshold:
    """The threshold that maximises balanced accuracy (AF recall + not-AF specificity) / 2.

    Windows without a score count as not AF (as in ``rr_af_probability``). Candidates are the
    midpoints between consecutive distinct scores; ties go to the lower threshold.
    """
    from bridge_edge.bridge.metrics import _auroc  # numpy/scipy; only the fit needs it

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_af, dtype=bool)
    ranked = np.where(np.isfinite(s), s, -np.inf)
    values = np.unique(ranked[np.isfinite(ranked)])
    cuts = (values[1:] + values[:-1]) / 2.0
    called = ranked[None, :] >= cuts[:, None]  # (cuts, windows)
    recall = called[:, y].mean(axis=1)
    false_af = called[:, ~y].mean(axis=1)
    best = int(np.argmax(recall - false_af))
    return RRThreshold(
        value=float(cuts[best]),
        fitted_on=fitted_on,
        train_auroc=_auroc(y, np.where(np.isfinite(s), s, -1.0)),
        train_af_recall=float(recall[best]),
        train_false_af=float(false_af[best]),
    )
