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
RR_TARGETS = ("rr_irregularity",)
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
    return out
