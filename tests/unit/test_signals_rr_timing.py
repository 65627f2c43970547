"""Pulse-timing AF score on simulated sinus, sinus + isolated ectopics and AF (test seeds only)."""

import numpy as np
import pytest

from bridge_edge.bridge.metrics import _auroc
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample
from bridge_edge.signals.rr_timing import (
    RR_AF_THRESHOLD,
    fit_threshold,
    rr_af_probability,
    rr_af_score,
    rr_af_score_from_intervals,
    rr_af_scores,
)
from bridge_edge.signals.simulator import PatientSimulator

FS = 125.0
L = int(10 * FS)


def episode_windows(rhythm: str, seed: int, seconds: float = 125.0) -> np.ndarray:
    rec = PatientSimulator(seed, fs_ecg=250.0, fs_ppg=FS, script=[(rhythm, seconds)], sensor=False).generate(
        seconds
    )
    y = filter_and_resample(rec.ppg, FS, PreprocessSpec())[L:]  # past the filter warm-up
    return np.stack([y[a : a + L] for a in range(0, len(y) - L + 1, L // 2)])


@pytest.fixture(scope="module")
def scores():
    # seeds 900-904: not the fit's training subjects (those come from the dataset seed stream)
    return {
        rhythm: np.concatenate([rr_af_scores(episode_windows(rhythm, s), FS) for s in range(900, 905)])
        for rhythm in ("sinus", "ectopy", "afib")
    }


def test_timing_score_separates_sinus_from_af(scores):
    sinus, af = scores["sinus"], scores["afib"]
    assert np.mean(np.isfinite(sinus)) > 0.9 and np.mean(np.isfinite(af)) > 0.9
    s = np.concatenate([sinus, af])
    auroc = _auroc(np.r_[np.zeros(len(sinus), bool), np.ones(len(af), bool)], np.where(np.isfinite(s), s, -1))
    assert auroc >= 0.95, auroc
    assert np.mean(af >= RR_AF_THRESHOLD.value) >= 0.85
    assert np.mean(sinus >= RR_AF_THRESHOLD.value) <= 0.05


def test_isolated_ectopics_stay_below_threshold(scores):
    ectopy = scores["ectopy"]
    assert np.mean(~(ectopy >= RR_AF_THRESHOLD.value)) >= 0.90, np.round(ectopy, 3)


def test_premature_beats_are_excluded_not_scored_as_irregularity():
    regular = np.full(11, 0.8)
    pvc = regular.copy()
    pvc[4], pvc[5] = 0.45, 1.15  # premature beat; the next beat keeps its time: compensatory pause
    assert rr_af_score_from_intervals(pvc) < 0.01
    pac = regular.copy()
    pac[4] = 0.55  # premature atrial beat; the sinus node resets: the next interval is a normal one
    assert rr_af_score_from_intervals(pac) < 0.01
    missed = regular.copy()
    missed[6] = 1.2  # a premature beat without a pulse: coupling + reset merged into one interval
    assert rr_af_score_from_intervals(missed) < 0.01
    af = np.random.default_rng(0).lognormal(np.log(0.7), 0.25, 11)
    assert rr_af_score_from_intervals(af) > RR_AF_THRESHOLD.value
    assert np.isnan(rr_af_score_from_intervals(np.array([0.8, 0.8, 0.8])))  # too few intervals


def test_frequent_exclusions_are_not_isolated_ectopy():
    """Short-long at every other beat that is not regular at lag 2 is scored on every interval."""
    rr = np.array([0.5, 1.2, 0.8, 0.45, 1.3, 0.9, 0.55, 1.1, 0.85, 0.5, 1.25, 0.95])
    assert rr_af_score_from_intervals(rr) > RR_AF_THRESHOLD.value


def test_single_window_api_and_noise_gives_nan():
    w = episode_windows("afib", 905, 40.0)
    assert rr_af_score(w[0], FS) == pytest.approx(rr_af_scores(w[:1], FS)[0], nan_ok=True)
    noise = np.random.default_rng(3).standard_normal((2, L))
    assert np.all(np.isnan(rr_af_scores(noise, FS)))  # low SQI: no tachogram to read


def test_probability_is_monotone_half_at_threshold_and_nan_is_not_af():
    t = RR_AF_THRESHOLD.value
    p = rr_af_probability(np.array([0.0, t, 2 * t, np.nan]))
    assert p[1] == pytest.approx(0.5) and p[0] < p[1] < p[2] and p[3] == 0.0


def test_fit_threshold_finds_the_gap():
    s = np.array([0.01, 0.02, 0.03, 0.2, 0.3, np.nan])
    fit = fit_threshold(s, np.array([0, 0, 0, 1, 1, 0], bool))
    assert 0.03 < fit.value < 0.2 and fit.train_af_recall == 1.0 and fit.train_false_af == 0.0
