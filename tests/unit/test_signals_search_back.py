"""Preprocessing ppg-v4: the PPG beat detector searches back for a beat it dropped (a weak pulse
in sinus rhythm), so one missed pulse no longer leaves a double interval that reads as AF."""

import numpy as np
import pytest

from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, preprocess_spec, window_beats

FS = 125.0
V4 = preprocess_spec("ppg-v4", FS)


def finger_pulses(beat_s, amps, fs=FS, seconds=12.0):
    """Narrow pulses with a dicrotic wave 0.3 s after each (a secondary wave the detector drops)."""
    t = np.arange(int(seconds * fs)) / fs
    d = t[None, :] - np.asarray(beat_s)[:, None]
    pulse = np.exp(-0.5 * (d / np.where(d < 0, 0.06, 0.12)) ** 2) + 0.3 * np.exp(
        -0.5 * ((d - 0.35) / 0.06) ** 2
    )
    return filter_and_resample((np.asarray(amps)[:, None] * pulse).sum(axis=0), fs, V4)


def intervals(beats):
    return np.diff(beats) / FS


def test_a_weak_pulse_is_dropped_by_the_height_test_and_taken_back_by_search_back():
    beats = 0.5 + 0.95 * np.arange(12)
    amps = np.ones(12)
    amps[6] = 0.2  # a weak pulse among full ones: under MIN_HEIGHT_FRACTION of its neighbours
    x = finger_pulses(beats, amps)
    plain, searched = detect_ppg_beats(x, FS), detect_ppg_beats(x, FS, search_back=True)
    assert intervals(plain).max() == pytest.approx(1.9, abs=0.05)  # the weak pulse was missed
    assert len(searched) == len(plain) + 1
    np.testing.assert_allclose(intervals(searched), 0.95, atol=0.04)  # sinus again


def test_a_pause_without_a_pulse_stays_a_pause_and_no_secondary_wave_is_taken():
    beats = np.delete(0.5 + 0.95 * np.arange(12), 6)  # a dropped beat: no pulse at all
    x = finger_pulses(beats, np.ones(11))
    plain, searched = detect_ppg_beats(x, FS), detect_ppg_beats(x, FS, search_back=True)
    np.testing.assert_array_equal(searched, plain)
    assert intervals(searched).max() == pytest.approx(1.9, abs=0.05)


def test_search_back_leaves_af_whose_every_pulse_is_found_unchanged():
    rr = np.random.default_rng(5).uniform(0.45, 1.2, 20)
    beats = 0.5 + np.concatenate([[0.0], np.cumsum(rr)])
    x = finger_pulses(beats[beats < 11.5], np.ones(int((beats < 11.5).sum())))
    np.testing.assert_array_equal(detect_ppg_beats(x, FS, search_back=True), detect_ppg_beats(x, FS))


def test_ppg_v4_is_ppg_v3_with_search_back_and_says_so_in_its_steps():
    v3 = preprocess_spec("ppg-v3", FS)
    assert (V4.render, V4.search_back, v3.search_back) == ("beat_pulses", True, False)
    steps = V4.as_dict()["steps"]
    assert steps.index("beats_search_back") < steps.index("render_beat_pulses")
    assert "beats_search_back" not in v3.as_dict()["steps"]
    assert PreprocessSpec.from_dict(V4.as_dict()) == V4
    recorded_before = v3.as_dict()
    recorded_before.pop("search_back")  # manifests written before ppg-v4 have no such key
    assert PreprocessSpec.from_dict(recorded_before) == v3


def test_window_beats_follow_the_spec():
    beats = 0.5 + 0.95 * np.arange(12)
    amps = np.ones(12)
    amps[6] = 0.2
    w = finger_pulses(beats, amps)[None, :]
    assert len(window_beats(w, V4)[0]) == len(window_beats(w, preprocess_spec("ppg-v3", FS))[0]) + 1


def test_a_neighbourhood_without_a_peak_above_the_median_keeps_its_candidates_in_v3_only():
    """ppg-v3's rule is what bundles up to 0.9.0 were trained on and must not change: a candidate
    whose neighbours all peak at or below the window's median (height 0) is kept. ppg-v4 (0.9.1's
    training) tests shares of the neighbours' best, and drops it."""
    from bridge_edge.signals.beats import _systolic

    rise, height = np.array([1.0, 0.2, 1.0]), np.array([0.0, 0.0, 2.0])
    top_rise, top_height = np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 2.0])
    v3, _ = _systolic(rise, height, top_rise, top_height, as_shares=False)
    v4, share = _systolic(rise, height, top_rise, top_height, as_shares=True)
    assert v3.tolist() == [True, False, True] and v4.tolist() == [False, False, True]
    np.testing.assert_allclose(share, [0.0, 0.0, 1.0])
