"""paired_windows: strided windows of both signals, pure-label windows labelled, mixed ones -1."""

import numpy as np
import pytest

from bridge_edge.errors import ConfigError
from bridge_edge.signals.simulator import PatientSimulator
from bridge_edge.signals.windows import paired_windows


def test_windows_match_slices_and_labels():
    rec = PatientSimulator(2, script=[("sinus", 20), ("afib", 20)]).generate(40.0)
    w = paired_windows(rec, window_s=10.0, hop_s=5.0)
    assert w.ecg.shape == (7, 5000) and w.ppg.shape == (7, 1250)
    assert w.ecg.dtype == np.float32 and w.ppg.dtype == np.float32
    np.testing.assert_array_equal(w.start_s, np.arange(7) * 5.0)
    np.testing.assert_array_equal(w.label, [0, 0, 0, -1, 1, 1, 1])  # window 15-25 s is mixed
    np.testing.assert_array_equal(w.ecg[3], rec.ecg[7500:12500])
    np.testing.assert_array_equal(w.ppg[3], rec.ppg[1875:3125])


def test_too_short_recording_gives_no_windows_and_bad_hop_is_an_error():
    rec = PatientSimulator(2, script=[("sinus", 20)]).generate(8.0)
    assert len(paired_windows(rec)) == 0
    with pytest.raises(ConfigError, match="whole number of samples"):
        paired_windows(rec, window_s=10.0, hop_s=0.0031)
