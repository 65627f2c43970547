"""The numpy filters and peak finder (bridge_edge.signals.filters / .peaks) against scipy.signal.

The device side has no scipy; these tests hold the replacements to scipy's results on the
designs and signals the package uses, so training (which ran on scipy before) and the device
agree. scipy is a dev/train dependency; without it they skip."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_edge.bridge.metrics import average_ranks
from bridge_edge.errors import ConfigError
from bridge_edge.signals import filters, peaks

sps = pytest.importorskip("scipy.signal")

# (order, corners Hz, type, fs): the preprocessing band at sensor rates 20-2048 Hz, the ECG
# detector's band, the simulator's front ends and noise, the monitor's display bands
DESIGNS = [
    (2, [0.5, 8.0], "bandpass", 125.0),
    (2, [0.5, 8.0], "bandpass", 20.0),
    (2, [0.5, 8.0], "bandpass", 2048.0),
    (3, [0.5, 8.0], "bandpass", 125.0),
    (2, [5.0, 20.0], "bandpass", 500.0),
    (1, 0.05, "highpass", 25.0),
    (1, 0.3, "highpass", 250.0),
    (2, 9.0, "lowpass", 20.0),
    (4, [0.05, 15.0], "bandpass", 1000.0),
]


@pytest.mark.parametrize("order,corners,btype,fs", DESIGNS)
def test_butterworth_sections_equal_scipys(order, corners, btype, fs):
    ours = filters.butter_sos(order, corners, btype, fs)
    theirs = sps.butter(order, corners, btype=btype, fs=fs, output="sos")
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(filters.sosfilt_zi(ours), sps.sosfilt_zi(theirs), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(filters.sos_response(ours, 512), sps.sosfreqz(theirs, worN=512)[1], atol=1e-10)


@pytest.mark.parametrize("order,corners,btype,fs", DESIGNS)
def test_causal_and_zero_phase_filtering_equal_scipys(order, corners, btype, fs):
    rng = np.random.default_rng(order)
    # a raw sensor's scale: a large DC level, slow drift and noise, longer than several blocks
    x = (
        2e4
        + np.cumsum(rng.standard_normal(3 * filters.BLOCK + 77))
        + 50 * rng.standard_normal(3 * filters.BLOCK + 77)
    )
    sos = filters.butter_sos(order, corners, btype, fs)
    y = sps.sosfilt(sos, x)
    assert np.abs(filters.sosfilt(sos, x) - y).max() <= 1e-9 * np.abs(x).max()
    zi = sps.sosfilt_zi(sos) * x[0]
    y_zi, z_end = sps.sosfilt(sos, x, zi=zi)
    ours, our_end = filters.sosfilt(sos, x, zi)
    assert np.abs(ours - y_zi).max() <= 1e-9 * np.abs(x).max()
    np.testing.assert_allclose(our_end, z_end, atol=1e-9 * np.abs(x).max())
    y_ff = sps.sosfiltfilt(sos, x)
    assert np.abs(filters.sosfiltfilt(sos, x) - y_ff).max() <= 1e-9 * np.abs(x).max()


def test_a_stream_in_chunks_of_any_size_equals_one_pass():
    rng = np.random.default_rng(3)
    sos = filters.butter_sos(2, [0.5, 8.0], "bandpass", 130.0)
    x = rng.standard_normal(9000)
    stream = filters.SosFilter(sos)
    cuts = np.cumsum(rng.integers(1, 2 * filters.BLOCK + 3, size=200))
    pieces = [stream.process(chunk) for chunk in np.split(x, cuts[cuts < len(x)])]
    np.testing.assert_allclose(np.concatenate(pieces), sps.sosfilt(sos, x), atol=1e-12)
    assert len(stream.process(np.empty(0))) == 0


def test_analog_biquad_equals_scipys_bilinear():
    w0, q, fs = 2 * 250.0 * np.tan(np.pi * 6.0 / 250.0), 1.4, 250.0
    ours = filters.biquad_from_analog([w0**2], [1.0, w0 / q, w0**2], fs)
    b, a = sps.bilinear([w0**2], [1.0, w0 / q, w0**2], fs)
    np.testing.assert_allclose(ours, sps.tf2sos(b, a), rtol=1e-12)


def test_bad_designs_and_inputs_are_refused_with_what_was_expected():
    with pytest.raises(ConfigError, match="between 0 and 10.0 Hz"):
        filters.butter_sos(2, [0.5, 12.0], "bandpass", 20.0)
    with pytest.raises(ConfigError, match="expected one of"):
        filters.butter_sos(2, 3.0, "notch", 100.0)
    with pytest.raises(ConfigError, match="expected one dimension"):
        filters.sosfilt(filters.butter_sos(1, 1.0, "highpass", 50.0), np.zeros((2, 8)))
    with pytest.raises(ConfigError, match="more than"):
        filters.sosfiltfilt(filters.butter_sos(2, [0.5, 8.0], "bandpass", 125.0), np.zeros(10))


def _signals(rng, count):
    for i in range(count):
        n = int(rng.integers(1, 900))
        x = np.cumsum(rng.standard_normal(n)) if i % 2 else rng.standard_normal(n)
        yield np.sin(np.arange(n) / 7.0) + 0.3 * x if i % 3 == 0 else x


def test_peaks_equal_scipys_with_height_and_distance():
    rng = np.random.default_rng(5)
    for i, x in enumerate(_signals(rng, 1500)):
        height = float(rng.normal()) if i % 4 else None
        distance = int(rng.integers(1, 80)) if i % 3 else None
        theirs, props = sps.find_peaks(x, height=height, distance=distance)
        ours, heights = peaks.find_peaks(x, min_height=height, distance=distance)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(heights, x[theirs])


def test_flat_peaks_sit_in_the_middle_of_their_run_and_never_at_the_ends():
    x = np.array([3, 1, 1, 1, 0, 2, 2, 0, 3, 3, 3, 3, 0, 1, 0, 5, 5], dtype=float)
    np.testing.assert_array_equal(peaks.local_maxima(x), sps.find_peaks(x)[0])
    np.testing.assert_array_equal(peaks.local_maxima(x), [5, 9, 13])


def test_long_signals_take_the_peak_by_peak_path_with_the_same_answer(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(20_000)
    expected = sps.find_peaks(x, height=0.0, distance=40)[0]
    monkeypatch.setattr(peaks, "PAIRS_AT_ONCE", 10)
    np.testing.assert_array_equal(peaks.find_peaks(x, min_height=0.0, distance=40)[0], expected)


def test_average_ranks_equal_scipys_rankdata():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    for _ in range(200):
        x = np.round(rng.standard_normal(int(rng.integers(1, 300))), 1)  # many ties
        np.testing.assert_array_equal(average_ranks(x), stats.rankdata(x))
