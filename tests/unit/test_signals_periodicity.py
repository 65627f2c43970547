"""Beat-free periodicity measures: sinus PPG repeats, AF PPG does not, flat windows are unknown."""

import numpy as np
import pytest

from bridge_edge.signals.periodicity import autocorrelation_peak, spectral_concentration, spectral_entropy
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, normalise_windows
from bridge_edge.signals.simulator import PatientSimulator

FS = 125.0


@pytest.fixture(scope="module")
def sinus_and_afib():
    spec = PreprocessSpec(fs_out=FS)
    rec = PatientSimulator(seed=5, script=[("sinus", 120.0), ("afib", 120.0)]).generate(240.0)
    ppg = filter_and_resample(rec.ppg, rec.fs_ppg, spec)
    windows = normalise_windows(ppg[: 24 * 1250].reshape(24, 1250), spec)[1:]  # skip filter warm-up
    return windows[:11], windows[12:]


def test_a_pure_pulse_train_is_perfectly_periodic():
    t = np.arange(1250) / FS
    pulse = np.sin(2 * np.pi * 1.2 * t)[None, :]
    assert autocorrelation_peak(pulse, FS)[0] > 0.8  # 1.2 Hz: one period = 104 samples of 1250
    assert spectral_concentration(pulse, FS)[0] > 0.95
    noise = np.random.default_rng(0).standard_normal((1, 1250))
    assert spectral_entropy(pulse, FS)[0] < spectral_entropy(noise, FS)[0]


def test_sinus_windows_are_more_periodic_than_afib(sinus_and_afib):
    sinus, afib = sinus_and_afib
    for measure, more_regular in (
        (autocorrelation_peak, np.greater),
        (spectral_concentration, np.greater),
        (spectral_entropy, np.less),
    ):
        values_sinus, values_afib = measure(sinus, FS), measure(afib, FS)
        assert values_sinus.shape == (len(sinus),) and values_sinus.dtype == np.float32
        assert more_regular(np.median(values_sinus), np.median(values_afib)), measure.__name__


def test_flat_windows_are_nan_and_shapes_are_checked():
    windows = np.vstack([np.zeros(1250), np.sin(np.arange(1250) / 10.0)])
    for measure in (autocorrelation_peak, spectral_concentration, spectral_entropy):
        values = measure(windows, FS)
        assert np.isnan(values[0]) and np.isfinite(values[1])
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        autocorrelation_peak(np.zeros(1250), FS)
