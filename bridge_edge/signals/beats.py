"""Beat detection and heart rate from detected beats, for PPG and ECG (numpy only).

PPG: systolic peaks of the band-passed pulse wave, found on their upstrokes so that secondary
waves (dicrotic, reflected, ringing) are not counted as beats (``detect_ppg_beats``). ECG: R peaks found on a Pan-Tompkins-like
energy envelope (5-20 Hz band, squared slope, 120 ms moving integration), then moved to the
largest |ECG| sample nearby. Both find peaks with ``signals.peaks.find_peaks``, never a Python
loop over samples.

Heart rate is the mean rate over the last 4-8 beats: ``60 * (n - 1) / (t_last - t_first)``.
It is None when fewer than 4 beats are found or any interval among them is implausible
(outside 30-220 bpm) -- a monitor shows "---" rather than a guess.
"""

from __future__ import annotations

import numpy as np

from bridge_edge.signals.filters import butter_sos, sosfiltfilt
from bridge_edge.signals.peaks import find_peaks

HR_MIN_BPM = 30.0
HR_MAX_BPM = 220.0
MIN_BEATS = 4
MAX_BEATS = 8

# PPG beat detector (``detect_ppg_beats``)
REFRACTORY_S = 0.25  # shortest beat-to-beat interval kept (AF reaches 0.28 s; 240 bpm)
MIN_SLOPE_FRACTION = 0.35  # of the steepest upstroke nearby; below it a rise is a secondary wave
MIN_HEIGHT_FRACTION = 0.35  # of the highest systolic peak nearby (height above the median)
LOCAL_S = 1.6  # +- window of "nearby" (holds a full beat down to 37 bpm)
PEAK_SEARCH_S = 0.25  # upstroke -> systolic peak search span
# search-back for missed beats (``_missed_beats``; ppg-v4)
SEARCH_BACK_GAP = (1.6, 2.4)  # an interval this many times the window's median holds a missed beat
SEARCH_BACK_SPLIT = 0.25  # the beat taken back leaves two intervals within +-25 % of the median
SEARCH_BACK_FRACTION = 0.1  # its slope and height: at least this share of its neighbours'


def detect_ppg_beats(x: np.ndarray, fs: float, search_back: bool = False) -> np.ndarray:
    """Sample indices of systolic peaks in a band-passed PPG segment (1-D, either polarity).

    Beats are found on the systolic upstroke, the steepest rise of each cycle; secondary waves
    (dicrotic, reflected, a front end's ringing) rise less steeply *and* peak lower:
    1. candidates are local maxima of the slope at least ``REFRACTORY_S`` apart (short enough
       for the shortest AF intervals, 0.28 s);
    2. each candidate's peak is the highest sample in the next ``PEAK_SEARCH_S`` (not past the
       next candidate), its height measured from the segment's median;
    3. a candidate whose upstroke slope is under ``MIN_SLOPE_FRACTION`` or whose peak height is
       under ``MIN_HEIGHT_FRACTION`` of the largest among its neighbours within
       +-``LOCAL_S`` is a secondary wave (or noise) and dropped.
    Both tests are needed: after a causal band-pass a ringing secondary wave can rise at 60 %
    of the systolic slope (heartpy ``data.csv``) but peaks at under 20 % of its height; a
    dicrotic wave rises slowly. The price is that the smallest AF pulses after very short
    intervals (weak filling) are sometimes missed, which merges two intervals and keeps the
    rhythm irregular; docs/method.md ("Pulse-timing baseline") has the measurements.
    4. ``search_back`` (preprocessing ``ppg-v4``): a dropped candidate that fills a gap of about
       two intervals is taken back (``_missed_beats``).
    All steps are array operations over the candidates (no loop over samples).
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:
        return np.empty(0, dtype=np.int64)
    spread = np.percentile(x, 95) - np.percentile(x, 5)
    if not spread > 0:
        return np.empty(0, dtype=np.int64)
    # a pulse wave is positively skewed (narrow systolic peaks, wide troughs): orient the segment
    # that way, so an inverted sensor's pulses are read upright (a no-op on corrected input)
    centred = x - x.mean()
    if np.mean(centred**3) < 0:
        x = -x
    slope = np.gradient(x)
    ups, rise = find_peaks(slope, min_height=0.0, distance=max(1, int(round(REFRACTORY_S * fs))))
    if len(ups) == 0:
        return np.empty(0, dtype=np.int64)
    span = max(1, int(round(PEAK_SEARCH_S * fs)))
    idx = ups[:, None] + np.arange(span)[None, :]
    limit = np.minimum(np.append(ups[1:], len(x)), len(x))[:, None]
    idx = np.where(idx < limit, idx, ups[:, None])
    peaks = idx[np.arange(len(ups)), np.argmax(x[idx], axis=1)]
    height = np.maximum(x[peaks] - np.median(x), 0.0)
    near = np.abs(ups[:, None] - ups[None, :]) <= LOCAL_S * fs
    top_rise = np.max(np.where(near, rise[None, :], 0.0), axis=1)
    top_height = np.max(np.where(near, height[None, :], 0.0), axis=1)
    keep, share = _systolic(rise, height, top_rise, top_height, search_back)
    if search_back:
        keep |= _missed_beats(peaks, keep, share)
    return np.unique(peaks[keep]).astype(np.int64)


def _systolic(rise, height, top_rise, top_height, as_shares: bool) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: which candidates are systolic upstrokes, and each one's share of its neighbours'
    best (the smaller of slope and height share). ``as_shares`` (ppg-v4) tests the shares, so a
    candidate whose neighbourhood has no peak above the median is no beat; ppg-v3 tests products,
    which keeps it (0 >= 0). ppg-v3 stays as it was: bundles up to 0.9.0 were trained on it."""
    rise_share = rise / np.maximum(top_rise, 1e-300)
    height_share = height / np.maximum(top_height, 1e-300)
    if as_shares:
        keep = (rise_share >= MIN_SLOPE_FRACTION) & (height_share >= MIN_HEIGHT_FRACTION)
    else:
        keep = (rise >= MIN_SLOPE_FRACTION * top_rise) & (height >= MIN_HEIGHT_FRACTION * top_height)
    return keep, np.minimum(rise_share, height_share)


def _missed_beats(peaks: np.ndarray, keep: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Dropped candidates that fill a missed beat (a search-back, as Pan-Tompkins does for R peaks).

    An interval between kept beats of ``SEARCH_BACK_GAP`` times the window's median interval is a
    beat the height or slope test dropped (a weak pulse) or a pause. The dropped candidate that
    splits it into two intervals each within ``SEARCH_BACK_SPLIT`` of the median, with slope and
    height at least ``SEARCH_BACK_FRACTION`` of its neighbours', is taken back; the one with the
    largest such share wins. Secondary waves sit a fixed delay after their own beat, not midway
    to the next, so they are not taken. Returns the candidates to add (a mask over ``peaks``)."""
    kept = np.sort(peaks[keep])
    added = np.zeros(len(peaks), dtype=bool)
    if len(kept) < MIN_BEATS:
        return added
    intervals = np.diff(kept)
    median = float(np.median(intervals))
    lo, hi = SEARCH_BACK_GAP
    gaps = np.flatnonzero((intervals >= lo * median) & (intervals <= hi * median))
    if len(gaps) == 0:
        return added
    start, end = kept[gaps][:, None], kept[gaps + 1][:, None]
    before, after = peaks[None, :] - start, end - peaks[None, :]
    fits = (
        ~keep[None, :]
        & (np.abs(before - median) <= SEARCH_BACK_SPLIT * median)
        & (np.abs(after - median) <= SEARCH_BACK_SPLIT * median)
        & (share[None, :] >= SEARCH_BACK_FRACTION)
    )
    score = np.where(fits, share[None, :], -1.0)
    best = np.argmax(score, axis=1)
    added[best[score[np.arange(len(gaps)), best] >= 0]] = True
    return added


def detect_ecg_beats(x: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of R peaks in an ECG segment (1-D, any baseline)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < int(fs):
        return np.empty(0, dtype=np.int64)
    high = min(20.0, 0.45 * fs)
    band = sosfiltfilt(butter_sos(2, [5.0, high], "bandpass", fs), x)
    energy = np.gradient(band) ** 2
    width = max(1, int(0.12 * fs))
    envelope = np.convolve(energy, np.ones(width) / width, mode="same")
    threshold = 0.3 * np.percentile(envelope, 99)
    if not threshold > 0:
        return np.empty(0, dtype=np.int64)
    coarse, _ = find_peaks(envelope, min_height=threshold, distance=max(1, int(fs * 60.0 / HR_MAX_BPM)))
    if len(coarse) == 0:
        return coarse.astype(np.int64)
    # refine: largest |band| within +-60 ms of each envelope peak, all beats at once
    half = max(1, int(0.06 * fs))
    idx = np.clip(coarse[:, None] + np.arange(-half, half + 1)[None, :], 0, len(x) - 1)
    refined = idx[np.arange(len(coarse)), np.argmax(np.abs(band[idx]), axis=1)]
    return np.unique(refined).astype(np.int64)


def detect_beats(x: np.ndarray, fs: float, modality: str, search_back: bool = False) -> np.ndarray:
    if modality == "ecg":
        return detect_ecg_beats(x, fs)
    return detect_ppg_beats(x, fs, search_back)


def heart_rate_bpm(beat_indices: np.ndarray, fs: float) -> float | None:
    """Mean heart rate over the last 4-8 beats, or None when that is not trustworthy."""
    beats = np.asarray(beat_indices)[-MAX_BEATS:]
    if len(beats) < MIN_BEATS:
        return None
    intervals = np.diff(beats) / fs
    if np.any(intervals < 60.0 / HR_MAX_BPM) or np.any(intervals > 60.0 / HR_MIN_BPM):
        return None
    return float(60.0 * (len(beats) - 1) / ((beats[-1] - beats[0]) / fs))
