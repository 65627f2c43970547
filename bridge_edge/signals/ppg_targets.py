"""Targets a PPG window carries in itself, for self-supervised pretraining (no labels).

PaPaGei-S learns morphology-aware targets computed from the signal (sVRI, IPA, SQI); ours are
what rhythm analysis needs. Beat targets come from the beats ``signals.beats`` detects; the
periodicity targets (``signals.periodicity``) need no beat detection.
"""

from __future__ import annotations

import numpy as np

from bridge_edge.errors import ConfigError
from bridge_edge.signals import periodicity
from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.rr_irregularity_v1 import rr_irregularity_v1_from_beats

BEAT_TARGETS = ("mean_ibi_s", "ibi_cv", "rmssd_over_ibi", "amplitude_cv")
PERIODICITY_TARGETS = ("autocorrelation_peak", "spectral_concentration", "spectral_entropy")
# log of the pulse-interval irregularity statistic (signals.rr_irregularity_v1, the timing
# baseline's first rules: normalised RMSSD x median |dRR|/RR x turning points, isolated premature
# beats excluded), without its threshold: how
# irregular the intervals are, a property of the signal like the others, not a label
# log of the CV of the intervals left once premature beats are taken out (``nn_interval_cv``):
# at 45-60 bpm a 10-s window holds 7-9 intervals, and two premature beats with their pauses make
# its interval CV and RMSSD larger than AF's, while rr_irregularity gives up (more than half
# excluded) or is NaN. This target stays low for sinus with premature beats and high for AF
# (docs/method.md, "Slow ectopy: the encoder tells it from AF, the bridge does not").
RR_TARGETS = ("rr_irregularity", "nn_interval_cv")
SIGNAL_TARGETS = BEAT_TARGETS + PERIODICITY_TARGETS + RR_TARGETS  # every target a recipe may name
DEFAULT_TARGETS = BEAT_TARGETS


def check_target_names(names) -> tuple[str, ...]:
    names = tuple(names)
    unknown = [n for n in names if n not in SIGNAL_TARGETS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(
            f"pretraining targets must be distinct names from {list(SIGNAL_TARGETS)}; got {list(names)}",
            key="pretrain.targets",
            value=list(names),
        )
    return names


def signal_targets(windows: np.ndarray, fs: float, names=DEFAULT_TARGETS) -> np.ndarray:
    """(N, len(names)) float32 targets by name (``SIGNAL_TARGETS``); unknown names: ConfigError.

    Beat targets (interval mean, CV, RMSSD / mean interval, pulse amplitude CV) are NaN where a
    window has < 4 beats.
    """
    names = check_target_names(names)
    out = np.full((len(windows), len(names)), np.nan, dtype=np.float32)
    beat_cols = [i for i, n in enumerate(names) if n in BEAT_TARGETS]
    if beat_cols:
        beat_values = np.full((len(windows), len(BEAT_TARGETS)), np.nan, dtype=np.float32)
        for i, window in enumerate(windows):  # per window; beat detection is vectorised numpy
            peaks = detect_ppg_beats(window, fs)
            if len(peaks) < 4:
                continue
            ibi = np.diff(peaks) / fs
            amplitude = window[peaks]
            beat_values[i] = (
                ibi.mean(),
                ibi.std() / ibi.mean(),
                np.sqrt(np.mean(np.diff(ibi) ** 2)) / ibi.mean(),
                amplitude.std() / (np.abs(amplitude).mean() + 1e-6),
            )
        for i in beat_cols:
            out[:, i] = beat_values[:, BEAT_TARGETS.index(names[i])]
    for i, name in enumerate(names):
        if name in PERIODICITY_TARGETS:
            out[:, i] = getattr(periodicity, name)(windows, fs)
    if "rr_irregularity" in names:
        scores = np.array([rr_irregularity_v1_from_beats(detect_ppg_beats(w, fs), fs) for w in windows])
        out[:, names.index("rr_irregularity")] = np.log(scores + 0.01)  # NaN: too few usable intervals
    if "nn_interval_cv" in names:
        cvs = np.array([nn_interval_cv_from_beats(detect_ppg_beats(w, fs), fs) for w in windows])
        out[:, names.index("nn_interval_cv")] = np.log(cvs + 0.01)  # NaN: too few plausible intervals
    return out


NN_RR_RANGE_S = (0.25, 2.0)  # plausible intervals; others are missed or extra beats
NN_MIN_INTERVALS = 5
NN_PREMATURE_FRACTION = 0.85  # of the median of the intervals still kept


def nn_intervals(rr: np.ndarray) -> np.ndarray:
    """The intervals left once up to (n - 1) // 3 premature beats are taken out.

    Shortest first: while the shortest kept interval is under ``NN_PREMATURE_FRACTION`` x the
    median of the kept ones, it goes, with the interval after it (a PVC's compensatory pause or
    a PAC's reset). At most (n - 1) // 3 beats go, so at least a third of the intervals stay:
    sinus with isolated ectopy is left with its regular intervals, AF with irregular ones.
    """
    rr = np.asarray(rr, dtype=np.float64)
    keep = np.ones(len(rr), dtype=bool)
    for _ in range((len(rr) - 1) // 3):
        kept = np.flatnonzero(keep)
        shortest = kept[np.argmin(rr[kept])]
        if rr[shortest] >= NN_PREMATURE_FRACTION * np.median(rr[kept]):
            break
        keep[shortest : shortest + 2] = False
    return rr[keep]


def nn_interval_cv_from_beats(beats: np.ndarray, fs: float) -> float:
    """CV of a window's ``nn_intervals`` from its beat sample indices (NaN: < 5 plausible intervals)."""
    rr = np.diff(np.asarray(beats, dtype=np.float64)) / fs
    rr = rr[(rr >= NN_RR_RANGE_S[0]) & (rr <= NN_RR_RANGE_S[1])]
    if len(rr) < NN_MIN_INTERVALS:
        return float("nan")
    nn = nn_intervals(rr)
    return float(nn.std() / nn.mean())
