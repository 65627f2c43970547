"""Signal-quality index (SQI) per window, vectorised over windows, in [0, 1] (1 = clean).

Input: windows (N, L) of the band-passed signal at rate ``fs`` (what the runtime cuts before
z-scoring). Moments and spectra are computed for all windows at once; the PPG beat template
loops over windows (not samples).

PPG:
- template: beats are detected (``signals.beats``), a fixed segment around every systolic peak
  is cut (all beats at once by fancy indexing) and correlated with the window's mean beat; the
  mean correlation is high for clean pulses, including the irregular intervals of AF (interval
  length does not change the pulse shape), and low for noise and motion. Scored as
  clip((r - 0.5) / 0.4, 0, 1);
- shape (Elgendi 2016, who found skewness the best single PPG quality index): a pulse wave is
  clearly skewed (steep upstroke, slow decay); noise is near-symmetric. min(1, |skew| / 0.5);
- flat line (std below ``flat_std``, e.g. finger off the sensor) scores 0.

ECG (after Li, Clifford et al. 2008 / Behar 2013): kurtosis (kSQI: QRS complexes make clean
ECG peaky, > 5), QRS-band power share pSQI = P(5-15 Hz) / P(5-40 Hz) (0.5-0.8 is typical of
clean ECG), baseline share basSQI = 1 - P(0-1 Hz) / P(0-40 Hz).

The final SQI is the geometric mean of the components, so one bad component pulls it down.
Windows under ``LOW_SQI`` are "unacceptable": the runtime skips the model or flags the output.

Motion (PPG, ``window_sqi`` only): a movement or a knock on the sensor adds a transient many
times larger than the pulses, and the beat detector, which judges each pulse against the largest
one nearby, then loses the beats around it; what is left reads as an irregular rhythm. The gate's
SQI is therefore ``ppg_sqi`` times ``motion_score``, which is 1 while the window's peak-to-peak
stays within ``MOTION_RATIO_OK`` times its median pulse amplitude and falls to 0 at
``MOTION_RATIO_BAD`` (docs/method.md, "Motion gate", has the measurements that placed them).
``ppg_sqi`` alone stays the pulse quality that pretraining reads to choose its targets.

Lost pulses (PPG, ``window_sqi`` only): where noise hides the pulses, the beat detector finds
none for seconds, and the model reads the stretch as one long, irregular interval. A stretch
without a beat longer than the slowest heart rate a monitor reports (``beats.HR_MIN_BPM``,
30 bpm: 2 s) and than two of the window's median intervals is a lost pulse, not a rhythm;
``pulse_gap_score`` falls from 1 to 0 over the second past that (docs/method.md, "Lost pulses").
"""

from __future__ import annotations

import numpy as np

from bridge_edge.signals.beats import HR_MIN_BPM, detect_ppg_beats
from bridge_edge.signals.preprocess import window_polarity

LOW_SQI = 0.5
# window peak-to-peak / median pulse amplitude: at most 2.6 in the rhythm suite's AF windows
# that pass the pulse-quality gate, 3.6 with ectopic beats; 8.9-16 in the motion windows of the
# development recordings that were still scored (docs/method.md, "Motion gate")
MOTION_RATIO_OK = 6.0
MOTION_RATIO_BAD = 8.0
PULSE_FOOT_S = 0.4  # a pulse's amplitude: its peak above the lowest sample this long before it
# a stretch without a beat is a lost pulse once it is longer than both the longest interval a
# monitor reports as a heart rate and two of the window's median intervals (slow AF's long
# intervals are a rhythm, not a loss); the score falls to 0 over the next second
PULSE_GAP_OK_S = 60.0 / HR_MIN_BPM
PULSE_GAP_OK_INTERVALS = 2.0
PULSE_GAP_RAMP_S = 1.0


def _band_power(spec: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (freqs >= lo) & (freqs < hi)
    return spec[:, sel].sum(axis=1)


def _moments(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centred = w - w.mean(axis=1, keepdims=True)
    var = (centred**2).mean(axis=1)
    safe = np.maximum(var, 1e-30)
    skew = (centred**3).mean(axis=1) / safe**1.5
    kurt = (centred**4).mean(axis=1) / safe**2
    return var, skew, kurt


def beat_template_correlation(x: np.ndarray, fs: float, peaks: np.ndarray | None = None) -> float:
    """Mean correlation of each beat with the window's average beat (0 with < 3 beats)."""
    before, after = int(0.2 * fs), int(0.32 * fs)
    peaks = detect_ppg_beats(x, fs) if peaks is None else np.asarray(peaks)
    peaks = peaks[(peaks >= before) & (peaks < len(x) - after)]
    if len(peaks) < 3:
        return 0.0
    beats = x[peaks[:, None] + np.arange(-before, after)[None, :]]
    beats = beats - beats.mean(axis=1, keepdims=True)
    template = beats.mean(axis=0)
    norms = np.linalg.norm(beats, axis=1) * np.linalg.norm(template)
    return float(np.mean(beats @ template / np.maximum(norms, 1e-30)))


def pulse_amplitudes(x: np.ndarray, fs: float, peaks: np.ndarray) -> np.ndarray:
    """Each beat's rise: the window ``x`` at systolic peak ``peaks`` above its foot, the lowest
    sample in the ``PULSE_FOOT_S`` before it (all beats at once)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    lookback = np.arange(int(round(PULSE_FOOT_S * fs)) + 1)
    feet = x[np.clip(peaks[:, None] - lookback[None, :], 0, len(x) - 1)].min(axis=1)
    return x[peaks] - feet


def motion_ratio(x: np.ndarray, fs: float, peaks: np.ndarray) -> float:
    """The upright window's peak-to-peak over its median pulse amplitude (inf without beats)."""
    amplitudes = pulse_amplitudes(x, fs, peaks)
    median = float(np.median(amplitudes)) if len(amplitudes) else 0.0
    return float(np.ptp(x)) / median if median > 0 else float("inf")


def motion_score(windows: np.ndarray, fs: float, beats: list | None = None) -> np.ndarray:
    """Per window: 1 up to ``MOTION_RATIO_OK``, 0 from ``MOTION_RATIO_BAD``, linear between."""
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    beats = [detect_ppg_beats(x, fs) for x in w] if beats is None else beats  # loop over windows
    w = w * window_polarity(w)[:, None]  # the beat detector reads each window upright: so do we
    ratio = np.array([motion_ratio(x, fs, p) for x, p in zip(w, beats)])
    return np.clip((MOTION_RATIO_BAD - ratio) / (MOTION_RATIO_BAD - MOTION_RATIO_OK), 0.0, 1.0)


def longest_pulse_gap_s(beats: np.ndarray, n_samples: int, fs: float) -> float:
    """The longest stretch of a window without a detected beat, its edges included (seconds)."""
    if len(beats) == 0:
        return n_samples / fs
    bounds = np.concatenate([[0], np.asarray(beats), [n_samples - 1]])  # the window's ends bound one too
    return float(np.max(np.diff(bounds))) / fs


def pulse_gap_score(windows: np.ndarray, fs: float, beats: list) -> np.ndarray:
    """Per window: 1 while its longest stretch without a beat is within ``PULSE_GAP_OK_S`` or
    ``PULSE_GAP_OK_INTERVALS`` median intervals (the longer), 0 from ``PULSE_GAP_RAMP_S`` past
    that, linear between."""
    n_samples = np.atleast_2d(windows).shape[1]
    gap = np.array([longest_pulse_gap_s(b, n_samples, fs) for b in beats])  # per window
    median = np.array([np.median(np.diff(b)) / fs if len(b) > 2 else 0.0 for b in beats])
    ok = np.maximum(PULSE_GAP_OK_S, PULSE_GAP_OK_INTERVALS * median)
    return np.clip((ok + PULSE_GAP_RAMP_S - gap) / PULSE_GAP_RAMP_S, 0.0, 1.0)


def ppg_sqi(windows: np.ndarray, fs: float, flat_std: float = 1e-6, beats: list | None = None) -> np.ndarray:
    """``beats``: systolic peak indices per window if already detected (saves a second pass)."""
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    var, skew, _ = _moments(w)
    peaks = beats if beats is not None else [None] * len(w)
    template = np.array([beat_template_correlation(x, fs, p) for x, p in zip(w, peaks)])  # loop over windows
    template_score = np.clip((template - 0.5) / 0.4, 0.0, 1.0)
    shape_score = np.minimum(1.0, np.abs(skew) / 0.5)
    sqi = np.sqrt(template_score * shape_score)
    return np.where(np.sqrt(var) < flat_std, 0.0, sqi)


def ecg_sqi(windows: np.ndarray, fs: float, flat_std: float = 1e-6) -> np.ndarray:
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    spec = np.abs(np.fft.rfft(w - w.mean(axis=1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.rfftfreq(w.shape[1], 1.0 / fs)
    var, _, kurt = _moments(w)
    k_score = np.clip((kurt - 3.0) / 2.0, 0.0, 1.0)  # kurtosis 5 and above -> 1
    p = _band_power(spec, freqs, 5.0, 15.0) / np.maximum(_band_power(spec, freqs, 5.0, 40.0), 1e-30)
    p_score = np.clip(1.0 - np.abs(p - 0.65) / 0.35, 0.0, 1.0)  # 0.5-0.8 typical of clean ECG
    bas = 1.0 - _band_power(spec, freqs, 0.0, 1.0) / np.maximum(_band_power(spec, freqs, 0.0, 40.0), 1e-30)
    sqi = np.cbrt(k_score * p_score * np.clip(bas, 0.0, 1.0))
    return np.where(np.sqrt(var) < flat_std, 0.0, sqi)


GATE_FACTORS = {"ppg": ("pulse_quality", "motion", "lost_pulse"), "ecg": ("ecg_quality",)}


def gate_factors(windows: np.ndarray, fs: float, modality: str, beats: list | None = None) -> np.ndarray:
    """(N, len(GATE_FACTORS[modality])): the gate's factors per window, named by ``GATE_FACTORS``;
    ``window_sqi`` is their product. For PPG: ``ppg_sqi``, ``motion_score``, ``pulse_gap_score``
    (``beats``: PPG peaks per window, optional)."""
    if modality == "ecg":
        return ecg_sqi(windows, fs)[:, None]
    w = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    beats = [detect_ppg_beats(x, fs) for x in w] if beats is None else beats  # loop over windows
    return np.stack(
        [ppg_sqi(w, fs, beats=beats), motion_score(w, fs, beats), pulse_gap_score(w, fs, beats)], 1
    )


def window_sqi(windows: np.ndarray, fs: float, modality: str, beats: list | None = None) -> np.ndarray:
    """The runtime's gate per window for ``modality`` "ppg" or "ecg": the product of its
    ``gate_factors`` (for PPG the pulse quality times the motion and pulse-gap scores)."""
    return gate_factors(windows, fs, modality, beats).prod(axis=1)


def weakest_factor(factors: np.ndarray, modality: str) -> list[str]:
    """Per window, the name of the factor that pulled its SQI down most (what a gated window
    reports as its cause)."""
    names = GATE_FACTORS[modality]
    return [names[i] for i in np.argmin(np.nan_to_num(factors, nan=-1.0), axis=1)]
