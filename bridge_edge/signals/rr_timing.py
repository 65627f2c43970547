"""Pulse-timing AF score: how irregular the beat-to-beat intervals of a window are (numpy only).

What commercial PPG rhythm checks build on: AF is "irregularly irregular", so it can be read
from the tachogram alone, without the pulse shape. Per window (rules v2, retuned on simulator
dataset version 2, issue 22; docs/method.md, "Pulse-timing baseline"):

1. beats from the runtime's own detector (``signals.beats.detect_ppg_beats``); intervals RR
   outside 0.25-2 s dropped (missed or extra beats). The window is read when its SQI passes
   (``signals.quality``, ``LOW_SQI``) or, failing that, when its beats are pulses of one shape:
   their mean correlation with the window's average beat
   (``signals.quality.beat_template_correlation``) is at least ``MIN_TEMPLATE_CORRELATION``.
   The SQI's skewness term rejects clean wide pulses with a strong dicrotic wave, whose timing
   is perfectly readable;
2. isolated premature beats (PACs, PVCs) are taken out before measuring irregularity, as the
   RR literature does (Dash et al. 2009 and Lian, Wang & Muessig 2011 remove ectopic
   intervals before scoring): an interval shorter than ``PREMATURE_FRACTION`` x the window's
   median that follows one that is not short marks a premature beat and is excluded; so is
   the next interval when it is longer than ``PAUSE_FRACTION`` x the median (a PVC's
   compensatory pause; a PAC's reset interval is a normal one and stays), and any interval
   longer than ``LONG_FRACTION`` x the median (a pulse not seen: a premature beat without a
   palpable pulse, or a missed beat). The rest are joined into one series (NN intervals, as
   HRV does after removing ectopics). When more than ``MAX_EXCLUDED_FRACTION`` of the
   intervals would go, or fewer than ``MIN_KEPT`` stay, the irregularity is not isolated
   ectopy and every interval is scored;
3. three established irregularity statistics of that series, all unit-free:
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
   rather than random. NaN with fewer than ``MIN_INTERVALS`` plausible intervals, or when the
   window is not readable (motion, noise: not a tachogram).

The threshold (``RR_AF_THRESHOLD``) was chosen on simulated *training* subjects only by
``fit_threshold`` (``scripts/fit_rr_threshold.py``); the numbers that chose it are beside it.
The statistic before this retuning (v1) is frozen in ``signals.rr_irregularity_v1``: it is the
pretraining target ``rr_irregularity`` of the shipped bundle and must not change.
docs/method.md ("Pulse-timing baseline") has what it measures against the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.preprocess import window_polarity
from bridge_edge.signals.quality import LOW_SQI, beat_template_correlation, ppg_sqi

RR_MIN_S, RR_MAX_S = 0.25, 2.0
MIN_INTERVALS = 5  # plausible RR intervals a window needs for a score (a 10-s window holds 6-25)
MIN_KEPT = 4  # intervals left after the ectopic exclusions
PREMATURE_FRACTION = 0.85  # of the window's median: shorter, after one that is not, is premature
PAUSE_FRACTION = 1.15  # of the median: the interval after a premature beat, longer, is its pause
LONG_FRACTION = 1.35  # of the median: longer is a pulse not seen
MAX_EXCLUDED_FRACTION = 0.4  # more excluded than this: not isolated ectopy (docs/method.md)
MIN_TEMPLATE_CORRELATION = 0.9  # beats' mean correlation with their average: a readable tachogram
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


# Chosen by `PYTHONPATH=. python3 scripts/fit_rr_threshold.py` (defaults: the default recipe's
# dataset, 30 subjects, seed 0, 6 min; its 12 *train* subjects, each rendered twice: random
# episodes and a scripted 2 min sinus / 2 min ectopy / 2 min AF; 1,552 pure 10-s windows,
# simulator dataset version 2 with its random sensors and rates), rules v2: the balanced-accuracy
# optimum 0.07064. At it, AF windows called AF 0.842 (463 windows, 41 unscored), sinus 0.089
# (595, 52 unscored), ectopy 0.150 (494, 21 unscored); AUROC AF vs rest 0.864 with unscored
# windows ranked lowest. (v1 rules on the same windows: 0.078, AF 0.726, sinus 0.059, ectopy
# 0.117, AUROC 0.756, 212 unscored.)
RR_AF_THRESHOLD = RRThreshold(
    value=0.0706,
    fitted_on="scripts/fit_rr_threshold.py defaults: simulated train split of the default dataset "
    "(12 of 30 subjects, seed 0, 6 min, dataset version 2), random + scripted episodes; rules v2",
    train_auroc=0.864,
    train_af_recall=0.842,
    train_false_af=0.117,
)


def _ectopic_exclusions(rr: np.ndarray) -> np.ndarray:
    """Boolean mask of intervals to exclude around isolated premature beats and unseen pulses."""
    med = np.median(rr)
    prev = np.concatenate([[med], rr[:-1]])  # the first interval has no predecessor: assume regular
    premature = (rr < PREMATURE_FRACTION * med) & (prev >= PREMATURE_FRACTION * med)
    after = np.concatenate([[False], premature[:-1]])
    # the interval after a premature beat stays only when it is a normal one (a PAC's reset); a
    # compensatory pause (PVC) or a second short one (an extra beat split one interval) goes
    pause = after & ((rr > PAUSE_FRACTION * med) | (rr < PREMATURE_FRACTION * med))
    missed = rr > LONG_FRACTION * med  # a pulse not seen: premature beat without a pulse, or a miss
    return premature | pause | missed


def _irregularity(nn: np.ndarray) -> float:
    """The score of a series of intervals (NaN: fewer than ``MIN_KEPT``)."""
    if len(nn) < MIN_KEPT:
        return float("nan")
    drr = np.diff(nn)
    nrmssd = np.sqrt(np.mean(drr**2)) / nn.mean()
    # "regularly irregular" (bigeminy: short-long-short-long) changes a lot from one interval to
    # the next but not from one to the one after: AF changes at every lag, so the smaller of the
    # lag-1 and lag-2 medians keeps AF and lets bigeminy through as not AF
    med_drr = np.median(np.abs(drr))
    if len(nn) >= MIN_KEPT + 1:
        med_drr = min(med_drr, float(np.median(np.abs(nn[2:] - nn[:-2]))))
    a, b, c = nn[:-2], nn[1:-1], nn[2:]
    tpr = float(np.mean(((b > a) & (b > c)) | ((b < a) & (b < c))))
    return float(np.sqrt(nrmssd * med_drr / np.median(nn)) * np.clip(tpr / TPR_RANDOM, *TPR_CLIP))


def rr_af_score_from_intervals(rr: np.ndarray) -> float:
    """Timing AF score of one window from its beat-to-beat intervals in seconds (NaN: too few)."""
    rr = np.asarray(rr, dtype=np.float64)
    rr = rr[(rr >= RR_MIN_S) & (rr <= RR_MAX_S)]
    if len(rr) < MIN_INTERVALS:
        return float("nan")
    excluded = _ectopic_exclusions(rr)
    if excluded.mean() > MAX_EXCLUDED_FRACTION or (~excluded).sum() < MIN_KEPT:
        return _irregularity(rr)  # too many to be isolated ectopy: score every interval
    return _irregularity(rr[~excluded])


def tachogram_readable(
    windows: np.ndarray, beats: list, fs: float, sqi: np.ndarray | None = None
) -> np.ndarray:
    """Per window: can its beats be read as a tachogram? Yes when the window's SQI passes
    (``LOW_SQI``; ``sqi`` if already computed, else the PPG SQI) or, failing that, when the beats
    are pulses of one shape (template correlation >= ``MIN_TEMPLATE_CORRELATION``): clean wide
    pulses with a strong dicrotic wave fail the SQI's skewness term but are perfectly readable."""
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    if sqi is None:
        sqi = ppg_sqi(w, fs, beats=beats)
    r = np.array([beat_template_correlation(x, fs, np.asarray(b)) for x, b in zip(w, beats)])  # per window
    return (np.asarray(sqi) >= LOW_SQI) | (r >= MIN_TEMPLATE_CORRELATION)


def rr_af_scores_from_beats(
    beats: list, windows: np.ndarray, fs: float, sqi: np.ndarray | None = None
) -> np.ndarray:
    """Scores of windows (N, L) whose beats (upright pulses) are known; NaN where the tachogram
    is not readable (``tachogram_readable``: noise or motion) or too few intervals."""
    scores = np.array([rr_af_score_from_intervals(np.diff(b) / fs) for b in beats], dtype=np.float64)
    return np.where(tachogram_readable(windows, beats, fs, sqi), scores, np.nan)


def rr_af_scores(windows: np.ndarray, fs: float) -> np.ndarray:
    """Scores of a batch (N, L) of preprocessed (band-passed, optionally z-scored) PPG windows;
    NaN where the tachogram is not readable or too few beats."""
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    w = w * window_polarity(w)[:, None]  # pulses upright, as preprocessing ppg-v2 turns them
    beats = [detect_ppg_beats(x, fs) for x in w]  # loop over windows
    return rr_af_scores_from_beats(beats, w, fs)


def rr_af_score(window: np.ndarray, fs: float) -> float:
    """Score of one preprocessed PPG window (NaN: beats unreadable or too few)."""
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
    from bridge_edge.bridge.metrics import _auroc  # numpy; only the fit needs it

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
