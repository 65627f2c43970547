"""The pretraining target nn_interval_cv (signals.ppg_targets): the CV of a window's intervals
once isolated premature beats are taken out. It must stay low for slow sinus with two premature
beats, where the interval CV, RMSSD and the v1 irregularity read it as more irregular than AF."""

import numpy as np
import pytest

from bridge_edge.bridge.metrics import average_ranks
from bridge_edge.signals import ppg_targets, resequence
from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.ppg_targets import nn_interval_cv_from_beats, nn_intervals

FS = 125.0


def _beats(rr):
    return np.round(np.concatenate([[0.0], np.cumsum(rr)]) * FS)


def _auroc(positives, negatives):
    ranks = average_ranks(np.concatenate([positives, negatives]))
    n1, n0 = len(positives), len(negatives)
    return (ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def test_premature_beats_and_their_pauses_go_the_regular_intervals_stay():
    rr = np.array([1.10, 1.12, 0.75, 1.45, 1.10, 1.08, 0.72, 1.50, 1.10])  # two PVCs at 54 bpm
    assert np.allclose(nn_intervals(rr), [1.10, 1.12, 1.10, 1.08, 1.10])
    assert nn_interval_cv_from_beats(_beats(rr), FS) < 0.015
    assert rr.std() / rr.mean() > 0.2  # what ibi_cv sees in the same window


def test_sinus_is_left_whole_and_at_most_a_third_goes():
    sinus = 1.0 + 0.03 * np.sin(np.arange(9))
    assert len(nn_intervals(sinus)) == 9  # nothing premature: nothing goes
    alternating = np.tile([0.6, 1.4], 5)  # every other beat premature: (10 - 1) // 3 = 3 beats go
    assert len(nn_intervals(alternating)) == 10 - 2 * 3


def test_implausible_intervals_are_dropped_and_too_few_are_nan():
    assert np.isnan(nn_interval_cv_from_beats(_beats([1.0, 1.0, 1.0, 1.0]), FS))
    # a 3-s gap (missed beats) is not an interval of the rhythm
    with_gap = nn_interval_cv_from_beats(_beats([1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0]), FS)
    assert with_gap == pytest.approx(0.0, abs=1e-9)


def test_slow_double_ectopy_reads_regular_and_af_irregular():
    """At 48-60 bpm, windows with two or more premature beats against AF at the same rates."""
    rng = np.random.default_rng(5)

    def windows(make, n):
        out = []
        while len(out) < n:
            rr = make(30.0, rng.uniform(1.0, 1.25), rng)
            t = np.cumsum(rr)
            start = rng.uniform(2.0, 8.0)
            window_rr = np.diff(t[(t >= start) & (t < start + 10.0)])
            if len(window_rr) >= 5:
                out.append(window_rr)
        return out

    ectopic = [
        rr for rr in windows(resequence.ectopic_intervals, 2000) if (rr < 0.8 * np.median(rr)).sum() >= 2
    ]
    afib = windows(resequence.af_intervals, 400)
    assert len(ectopic) > 100
    nn_cv = _auroc(
        np.array([nn_interval_cv_from_beats(_beats(rr), FS) for rr in afib]),
        np.array([nn_interval_cv_from_beats(_beats(rr), FS) for rr in ectopic]),
    )
    ibi_cv = _auroc(
        np.array([rr.std() / rr.mean() for rr in afib]), np.array([rr.std() / rr.mean() for rr in ectopic])
    )
    assert ibi_cv < 0.5 < 0.85 < nn_cv  # the interval CV ranks double ectopy above AF; this target does not


def test_pretraining_target_is_log_of_the_statistic_on_detected_beats():
    t = np.arange(1250) / FS
    rng = np.random.default_rng(3)
    beats_s = np.cumsum(rng.lognormal(np.log(0.8), 0.2, 13))
    window = np.exp(-(((t[:, None] - beats_s[None, :]) / 0.08) ** 2)).sum(axis=1)
    window = (window - window.mean()) / window.std()
    got = ppg_targets.signal_targets(window[None], FS, ("ibi_cv", "nn_interval_cv"))
    expected = np.log(nn_interval_cv_from_beats(detect_ppg_beats(window, FS), FS) + 0.01)
    assert np.isfinite(expected)
    assert got[0, 1] == pytest.approx(expected, rel=1e-6)
