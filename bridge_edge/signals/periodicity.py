"""How periodic a pulse window is, without detecting a single beat.

Sinus rhythm repeats: the window's autocorrelation has a tall peak one beat later and its
spectrum sits in narrow lines at the pulse rate. Atrial fibrillation does not repeat: the peak
flattens and the spectrum spreads. Beat detectors miss and double beats on noisy PPG, and every
interval statistic inherits those errors; these whole-window measures degrade more gracefully.
All functions take (N, L) windows and return (N,) float32, NaN for a flat window (nothing
to measure, not zero periodicity).
"""

from __future__ import annotations

import numpy as np

PULSE_BAND_HZ = (0.6, 3.5)  # 36-210 bpm: where the fundamental of a pulse can lie
SPECTRUM_BAND_HZ = (0.5, 8.0)  # the PPG preprocessing band
LINE_HALF_WIDTH_HZ = 0.15
N_FFT = 8192  # zero-padded, so 0.015 Hz bins at 125 Hz: the line half-width spans ~10 bins


def _centred(windows: np.ndarray) -> np.ndarray:
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, L) windows, got shape {x.shape}")
    return x - x.mean(axis=1, keepdims=True)


def _nan_where_flat(value: np.ndarray, energy: np.ndarray) -> np.ndarray:
    return np.where(energy > 0, value, np.nan).astype(np.float32)


def autocorrelation_peak(windows: np.ndarray, fs: float) -> np.ndarray:
    """Highest normalised autocorrelation at a lag of one plausible beat (0.29-1.67 s)."""
    x = _centred(windows)
    n = x.shape[1]
    power = np.abs(np.fft.rfft(x, 2 * n, axis=1)) ** 2  # 2n: linear, not circular, correlation
    acf = np.fft.irfft(power, axis=1)[:, :n]
    energy = acf[:, :1]
    lo, hi = int(fs / PULSE_BAND_HZ[1]), min(n, int(np.ceil(fs / PULSE_BAND_HZ[0])) + 1)
    peak = acf[:, lo:hi].max(axis=1)
    return _nan_where_flat(peak / np.where(energy[:, 0] > 0, energy[:, 0], 1.0), energy[:, 0])


def _band_spectrum(windows: np.ndarray, fs: float, band: tuple[float, float]):
    x = _centred(windows) * np.hanning(np.shape(windows)[1])
    power = np.abs(np.fft.rfft(x, N_FFT, axis=1)) ** 2
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / fs)
    keep = (freqs >= band[0]) & (freqs <= band[1])
    return power[:, keep], freqs[keep]


def spectral_concentration(windows: np.ndarray, fs: float) -> np.ndarray:
    """Share of the pulse-band power within ±0.15 Hz of its strongest line."""
    power, freqs = _band_spectrum(windows, fs, PULSE_BAND_HZ)
    f0 = freqs[power.argmax(axis=1)]
    near = np.abs(freqs[None, :] - f0[:, None]) <= LINE_HALF_WIDTH_HZ
    total = power.sum(axis=1)
    return _nan_where_flat((power * near).sum(axis=1) / np.where(total > 0, total, 1.0), total)


def spectral_entropy(windows: np.ndarray, fs: float) -> np.ndarray:
    """Shannon entropy (nats) of the normalised 0.5-8 Hz power spectrum."""
    power, _ = _band_spectrum(windows, fs, SPECTRUM_BAND_HZ)
    total = power.sum(axis=1)
    p = power / np.where(total > 0, total, 1.0)[:, None]
    return _nan_where_flat(-(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1), total)
