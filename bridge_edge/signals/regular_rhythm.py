"""The regular-rhythm rule: a PPG window whose beats are regular once isolated premature beats
are taken out is not atrial fibrillation, whatever the model says.

AF is irregularly irregular. Sinus rhythm with premature beats (PACs, PVCs) is irregular only at
the premature beat and the interval after it; take those out and what is left is regular. RR-based
AF detectors do exactly this before they score irregularity (signals.rr_timing cites them). The
bridged model reads sinus with premature beats as AF too often, most at slow rates
(docs/method.md, "The regular-rhythm rule"), so the runtime checks its AF probability against the
beats it already detected:

- ``signals.ppg_targets.nn_interval_cv_from_beats``: the coefficient of variation of the
  window's intervals after up to a third of them (isolated premature beats and the interval after
  each) are taken out;
- under ``REGULAR_NN_CV`` the rule fires: the window's AF probability is added to sinus and its
  AF probability becomes 0. Label, smoothing and alarms then read the moved probabilities, and
  a prediction whose AF call it overturned says so (``Prediction.af_ruled_out``);
- NaN (fewer than 5 plausible intervals) never fires.

``REGULAR_NN_CV`` is the 1st percentile of the statistic over the AF windows of 200 simulated
subjects that pass the runtime's gate (``scripts/fit_regular_rhythm_cv.py``; simulated labels
only, no real PPG): the rule can take at most about 1 % of AF windows like the simulator's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.errors import DataError
from bridge_edge.signals.ppg_targets import nn_interval_cv_from_beats

# fit_regular_rhythm_cv.py, seed 31337, 200 subjects: 0.0607 over 3,366 AF windows; 0.0605 over
# the 3,222 left once the lost-pulse gate joined the SQI (docs/method.md, "Lost pulses")
REGULAR_NN_CV = 0.06
MAX_AF_SHARE = 0.01  # the share of simulated AF windows the threshold may take


@dataclass(frozen=True)
class RegularRhythmRule:
    """Moves ``from_label``'s probability to ``to_label`` where a window's beats are regular."""

    max_nn_cv: float = REGULAR_NN_CV
    from_label: str = "afib"
    to_label: str = "sinus"

    def applies_to(self, labels, modality: str) -> bool:
        """The rule reads PPG beats and needs both labels in the model's vocabulary."""
        return modality == "ppg" and self.from_label in labels and self.to_label in labels

    @classmethod
    def for_model(cls, labels, modality: str) -> RegularRhythmRule | None:
        """The default rule where it applies to a model with these labels, else None."""
        rule = cls()
        return rule if rule.applies_to(labels, modality) else None

    def fires(self, beats: list, fs: float) -> np.ndarray:
        """Per window (its beat sample indices): are its intervals regular once premature beats go?"""
        cv = np.array([nn_interval_cv_from_beats(b, fs) for b in beats], dtype=np.float64)  # per window
        return np.isfinite(cv) & (cv < self.max_nn_cv)

    def apply(self, probs: np.ndarray, labels, fired: np.ndarray) -> np.ndarray:
        """``probs`` (N, C) with the rule applied to the rows where ``fired``; a new array."""
        out = np.array(probs, copy=True)
        src, dst = list(labels).index(self.from_label), list(labels).index(self.to_label)
        fired = np.asarray(fired, dtype=bool)
        out[fired, dst] += out[fired, src]
        out[fired, src] = 0.0
        return out


def fit_max_nn_cv(af_nn_cv: np.ndarray, max_af_share: float = MAX_AF_SHARE) -> float:
    """The threshold that takes at most ``max_af_share`` of these AF windows (NaN ones never fire)."""
    values = np.asarray(af_nn_cv, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise DataError("no AF window with a finite nn_interval_cv to fit the threshold on")
    return float(np.quantile(values, max_af_share))
