"""Rate-balanced sampling of the pair windows (bridge.balance) and the weighted epoch draw."""

import numpy as np
import pytest

from bridge_edge.bridge.balance import (
    INTERVAL_CV_BINS,
    MAX_WEIGHT,
    RATE_BINS_BPM,
    rate_balanced_weights,
    window_heart_rates,
    window_rhythm,
)


def _rate_confounded(n=4000, seed=0):
    """The faster the window, the likelier positive: the confound the weights must remove."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(45, 165, n)
    positive = rng.random(n) < 0.05 + 0.75 * (rates - 45) / 120
    return rates, positive


def test_weighted_positive_share_is_the_pooled_share_in_every_populated_bin():
    rates, positive = _rate_confounded()
    balance = rate_balanced_weights(rates, positive)
    w = balance.weights
    assert w.mean() == pytest.approx(1.0)
    bin_of = np.digitize(rates, RATE_BINS_BPM) - 1
    raw, weighted = [], []
    for b in np.unique(bin_of):
        m = bin_of == b
        if positive[m].sum() < 20 or (~positive[m]).sum() < 20:
            continue  # cells this small hit the weight limit
        raw.append(positive[m].mean())
        weighted.append(np.sum(w[m] * positive[m]) / np.sum(w[m]))
    assert np.ptp(raw) > 0.4  # the confound is there before weighting...
    assert np.allclose(weighted, positive.mean(), atol=1e-9)  # ...and gone after it


def test_weights_are_limited_and_windows_without_a_rate_form_their_own_bin():
    rates, positive = _rate_confounded(1000)
    rates[:50] = np.nan
    rates[50] = 30.0  # one lone slow positive: its cell wants a huge weight
    positive[50] = True
    balance = rate_balanced_weights(rates, positive)
    w = balance.weights
    assert np.all(np.isfinite(w)) and w.max() / w.min() <= MAX_WEIGHT**2 + 1e-9
    assert balance.counts[:, -1].sum() == 50  # the no-rate bin
    assert balance.counts.sum() == 1000
    assert 0 < balance.summary()["effective_windows"] <= 1000


def test_balanced_by_irregularity_too_the_interval_cv_no_longer_predicts_the_call():
    """pair_balance = "rate_irregularity": the positive share is the pooled one in every
    rate x interval-CV cell, while balancing by rate alone leaves the CV confound in place."""
    rng = np.random.default_rng(1)
    rates = rng.uniform(45, 120, 6000)
    cv = rng.uniform(0.0, 0.35, 6000)
    positive = rng.random(6000) < 0.05 + 0.8 * cv / 0.35  # irregular windows: mostly positive
    by_rate = rate_balanced_weights(rates, positive).weights
    both = rate_balanced_weights(rates, positive, interval_cv=cv)
    assert both.counts.shape == (2, len(RATE_BINS_BPM), len(INTERVAL_CV_BINS))
    assert both.summary()["kind"] == "rate_irregularity"
    cv_bin = np.digitize(cv, INTERVAL_CV_BINS) - 1

    def share(w, m):
        return np.sum(w[m] * positive[m]) / np.sum(w[m])

    spread = {
        name: np.ptp([share(w, cv_bin == b) for b in np.unique(cv_bin)])
        for name, w in (("rate", by_rate), ("both", both.weights))
    }
    assert spread["rate"] > 0.5  # by rate alone, the most irregular bin is still mostly positive
    assert spread["both"] < 0.05


def _spike_ecg(bpm: float, fs: float = 500.0, seconds: float = 10.0) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    beats = np.arange(0.3, seconds, 60.0 / bpm)
    return np.exp(-(((t[:, None] - beats[None, :]) / 0.012) ** 2)).sum(axis=1)


def test_window_heart_rates_reads_the_r_peak_rate_and_nan_without_beats():
    ecg = np.stack([_spike_ecg(54.0), _spike_ecg(123.0), np.zeros(5000)])
    rates = window_heart_rates(ecg, 500.0)
    assert rates[0] == pytest.approx(54.0, abs=1.0)
    assert rates[1] == pytest.approx(123.0, abs=1.5)
    assert np.isnan(rates[2])
    rhythm = window_rhythm(ecg, 500.0)  # the same R peaks give the interval CV: regular spikes, ~0
    assert rhythm.interval_cv[0] < 0.01 and np.isnan(rhythm.interval_cv[2])


def test_weighted_epochs_draw_in_proportion_and_never_a_zero_weight_window():
    pytest.importorskip("torch")
    from bridge_edge.bridge.loop import batch_indices

    gen = np.random.default_rng(0)
    weights = np.array([0.0, 1.0, 3.0])
    drawn = np.concatenate([np.concatenate(batch_indices(3, 2, gen, weights)) for _ in range(4000)])
    assert len(drawn) == 12000 and 0 not in drawn
    assert np.mean(drawn == 2) == pytest.approx(0.75, abs=0.02)
    # unweighted: a permutation, every window once per epoch
    assert sorted(np.concatenate(batch_indices(5, 2, gen)).tolist()) == [0, 1, 2, 3, 4]
