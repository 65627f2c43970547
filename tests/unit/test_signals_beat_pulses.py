"""Preprocessing ppg-v3: the model input is the window's detected beats drawn as fixed pulses,
so pulse shape, amplitude and polarity of the sensor never reach the model."""

import numpy as np
import pytest

from bridge_edge.errors import ConfigError
from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.preprocess import (
    PreprocessSpec,
    beat_pulse_template,
    filter_and_resample,
    normalise_windows,
    preprocess_spec,
    render_beat_pulses,
)

FS = 125.0
V3 = preprocess_spec("ppg-v3", FS)


def pulse_train(beat_s, fs, shape):
    """A pulse wave with one pulse per beat time: 'narrow' (a finger pulse with a notch and a
    ringing undershoot) or 'wide' (a slow wrist pulse), amplitudes varying beat to beat."""
    t = np.arange(int((beat_s[-1] + 2.0) * fs)) / fs
    x = np.zeros_like(t)
    amps = 1.0 + 0.4 * np.sin(np.arange(len(beat_s)))
    for b, a in zip(beat_s, amps):
        d = t - b
        if shape == "narrow":
            x += a * (
                np.exp(-0.5 * (d / 0.05) ** 2)
                + 0.4 * np.exp(-0.5 * ((d - 0.3) / 0.05) ** 2)
                - 0.5 * np.exp(-0.5 * ((d + 0.12) / 0.04) ** 2)
            )
        else:
            x += a * np.exp(-0.5 * (d / np.where(d < 0, 0.1, 0.25)) ** 2)
    return x


def windows_of(x, fs):
    y = filter_and_resample(x, fs, V3)
    return np.stack([y[s : s + 1250] for s in range(625, len(y) - 1250, 625)])


def test_two_sensors_with_the_same_beats_give_the_same_input():
    rr = np.random.default_rng(3).uniform(0.6, 1.1, 60)  # irregular: AF-like
    beats = 1.0 + np.cumsum(rr)
    narrow, wide = (windows_of(pulse_train(beats, 250.0, s), 250.0) for s in ("narrow", "wide"))
    a, b = normalise_windows(narrow, V3), normalise_windows(wide, V3)
    # the raw windows differ a lot; the model inputs are the same pulse trains, shifted by the
    # few samples between the two shapes' peaks (a beat at a window's edge may be seen by one only)
    assert np.mean([np.corrcoef(n, w)[0, 1] for n, w in zip(narrow, wide)]) < 0.8
    lag_free = np.array(
        [max(np.corrcoef(np.roll(x, k), y)[0, 1] for k in range(-8, 9)) for x, y in zip(a, b)]
    )
    assert np.median(lag_free) > 0.98 and np.mean(lag_free > 0.95) >= 0.75


def test_an_inverted_sensor_gives_the_same_input():
    beats = 1.0 + np.cumsum(np.full(40, 0.8))
    w = windows_of(pulse_train(beats, 200.0, "narrow"), 200.0)
    np.testing.assert_array_equal(normalise_windows(w, V3), normalise_windows(-w, V3))


def test_pulses_sit_on_the_detected_beats_and_all_have_one_height():
    beats = 1.0 + np.cumsum(np.random.default_rng(0).uniform(0.5, 1.0, 40))
    w = windows_of(pulse_train(beats, 125.0, "wide"), 125.0)[3]
    drawn = render_beat_pulses(w[None], FS)[0]
    found = detect_ppg_beats(w, FS)
    assert len(found) >= 8
    np.testing.assert_allclose(drawn[found], 1.0, atol=0.02)  # separate pulses, peak 1 each
    template, lead = beat_pulse_template(FS)
    assert np.argmax(template) == lead and template.max() == 1.0


def test_a_window_without_beats_is_zeros_not_noise():
    flat = np.zeros((2, 1250))
    np.testing.assert_array_equal(render_beat_pulses(flat, FS), 0.0)
    assert np.all(normalise_windows(flat, V3) == 0.0)


def test_versions_are_named_and_recorded():
    assert V3.as_dict()["steps"][2] == "render_beat_pulses"
    assert PreprocessSpec.from_dict(V3.as_dict()) == V3
    assert PreprocessSpec.from_dict(preprocess_spec("ppg-v2", FS).as_dict()).render == "none"
    with pytest.raises(ConfigError, match="ppg-v9"):
        preprocess_spec("ppg-v9", FS)
    # a recorded step this package cannot run is refused, never skipped
    future = V3.as_dict() | {"steps": V3.as_dict()["steps"] + ["render_beats_v4"]}
    with pytest.raises(ConfigError, match="render_beats_v4"):
        PreprocessSpec.from_dict(future)
    with pytest.raises(ConfigError, match="render"):
        PreprocessSpec.from_dict(V3.as_dict() | {"render": "wavelets", "steps": []})
