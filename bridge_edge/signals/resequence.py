"""Real pulses at new beat times: the rhythm changes, the pulse shape stays the sensor's own.

``cut_cycles`` cuts a real PPG recording into its beat cycles (foot to next foot), keeping the
cycles that look like the recording's typical pulse. ``place_cycles`` lays cycles end to end
at new intervals: a cycle longer than its new interval loses the end of its diastolic tail, a
shorter one is followed by a flat diastole; each cycle is detrended to start and end at zero,
so the joins are continuous. Interval generators give sinus rhythm with respiratory sinus
arrhythmia, sinus with isolated premature beats, and atrial fibrillation. Used by the
rhythm-not-shape suite (bridge_edge.checks.rhythm_suite) to ask whether a model reads the rhythm
or the pulse shape, and by ``[pair_cohort] pulses = "dev_recordings"``: ``with_real_pulses``
lays a recording's cycles at a simulated subject's heartbeats (``pulses_at``). A workstation
module: ``systolic_peaks`` needs scipy's peak prominences (the ``train`` and ``dev`` extras have
scipy; a device install does not, and never imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from bridge_edge.errors import DataError, DependencyMissingError
from bridge_edge.signals.filters import butter_sos, sosfiltfilt
from bridge_edge.signals.peaks import find_peaks
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, window_polarity
from bridge_edge.signals.types import PairedRecording

MIN_CYCLE_S, MAX_CYCLE_S = 0.33, 1.6
MIN_TEMPLATE_R = 0.8
MIN_CYCLES = 8  # fewer clean cycles than this: the recording is not re-sequenced


def upright(x: np.ndarray, fs: float) -> np.ndarray:
    """The 0.5-8 Hz band-passed recording (zero phase), turned the way the runtime turns it.

    The sign is the majority of the runtime's own per-window polarity (preprocessing step 4: the
    skewness of each causally band-passed 10-s window), so cycles are cut foot to foot in the
    orientation the model reads. The zero-phase recording's own skewness is not that sign: four
    SpO2 channels among the development recordings are skewed the other way once filtered
    without phase lag, the runtime turns every window of theirs over, and cycles cut from them
    ended with their own upstroke (docs/method.md, "The rhythm-not-shape suite")."""
    y = sosfiltfilt(butter_sos(2, [0.5, min(8.0, 0.45 * fs)], "bandpass", fs), x)
    return y * runtime_polarity(x, fs)


def runtime_polarity(x: np.ndarray, fs: float) -> int:
    """+1 or -1: the sign the runtime gives most 10-s windows (5-s hop) of the recording."""
    spec = PreprocessSpec()  # the 0.5-8 Hz band and 125 Hz rate of every ppg version
    y = filter_and_resample(np.asarray(x, np.float64), fs, spec)
    n, hop = int(10 * spec.fs_out), int(5 * spec.fs_out)
    starts = np.arange(hop, len(y) - n + 1, hop) if len(y) >= n + hop else np.array([0])  # after warm-up
    windows = np.stack([y[s : s + n] for s in starts])
    return 1 if np.sum(window_polarity(windows)) >= 0 else -1


def cut_cycles(x: np.ndarray, fs: float) -> list[np.ndarray]:
    """Beat cycles (foot to next foot) of a real PPG recording, detrended to start and end at 0.

    Feet are the minima in the 0.4 s before each systolic peak. Cycles of implausible length or
    whose correlation with the median cycle (resampled to a common length) is below
    ``MIN_TEMPLATE_R`` (motion, dropouts, missed beats) are left out.
    """
    y = upright(x, fs)
    peaks = systolic_peaks(y, fs)
    back = int(0.4 * fs)
    feet = np.array([p - back + int(np.argmin(y[max(0, p - back) : p + 1])) for p in peaks if p >= back])
    if len(feet) < 4:
        raise DataError(
            f"found {len(feet)} pulses; expected a recording with at least 4", reason="too few beats"
        )
    lengths = np.diff(feet)
    ok = (lengths >= MIN_CYCLE_S * fs) & (lengths <= MAX_CYCLE_S * fs)
    cycles = [_detrend(y[a:b]) for a, b, keep in zip(feet[:-1], feet[1:], ok) if keep]
    grid = np.linspace(0, 1, 64)
    shapes = np.array([np.interp(grid, np.linspace(0, 1, len(c)), c) for c in cycles])
    template = np.median(shapes, axis=0)
    r = np.array([np.corrcoef(s, template)[0, 1] for s in shapes])
    return [c for c, ri in zip(cycles, r) if ri >= MIN_TEMPLATE_R]


def dominant_period_s(y: np.ndarray, fs: float, segment_s: float = 10.0) -> float:
    """The recording's typical beat interval: the first strong autocorrelation peak between 0.33
    and 1.6 s, from the median of 10-s segments' normalised autocorrelations (one step or burst
    cannot dominate it)."""
    n = int(segment_s * fs)
    segs = np.stack([y[i : i + n] for i in range(0, max(1, len(y) - n + 1), n)]) if len(y) >= n else y[None]
    segs = segs - segs.mean(axis=1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(segs, 2 * segs.shape[1], axis=1)) ** 2, axis=1)[:, : segs.shape[1]]
    ac = np.median(ac / np.maximum(ac[:, :1], 1e-30), axis=0)
    lo, hi = int(MIN_CYCLE_S * fs), min(int(MAX_CYCLE_S * fs), len(ac) - 1)
    peaks, _ = find_peaks(ac[lo:hi])
    if not len(peaks):
        return float(np.median([MIN_CYCLE_S, MAX_CYCLE_S]))
    strong = peaks[ac[lo:hi][peaks] >= 0.6 * ac[lo:hi][peaks].max()]  # the first, not a multiple
    return (lo + int(strong[0])) / fs


def systolic_peaks(y: np.ndarray, fs: float) -> np.ndarray:
    """One peak per beat: at least 0.6 of the dominant period apart, so a secondary (dicrotic or
    ringing) wave between two beats is not taken for a beat."""
    try:
        from scipy.signal import find_peaks as find_prominent_peaks
    except ImportError as exc:
        raise DependencyMissingError(
            "re-sequencing real pulses needs scipy; install it with `pip install bridge-edge[train]`",
            package="scipy",
            install_hint="pip install bridge-edge[train]",
        ) from exc
    distance = max(1, int(0.6 * dominant_period_s(y, fs) * fs))
    candidates, props = find_prominent_peaks(y, distance=distance, prominence=0.0)
    if not len(candidates):
        return candidates
    keep = props["prominences"] >= 0.25 * np.median(props["prominences"])
    return candidates[keep]


def _detrend(c: np.ndarray) -> np.ndarray:
    return c - np.linspace(c[0], c[-1], len(c))


def place_cycles(cycles: list[np.ndarray], intervals_s: np.ndarray, fs: float) -> np.ndarray:
    """Cycles laid end to end, cycle i (cyclically) taking ``intervals_s[i]`` seconds."""
    lengths = np.maximum(1, np.round(np.asarray(intervals_s) * fs).astype(np.int64))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return _lay(cycles, starts, lengths, int(lengths.sum()))


def pulses_at(cycles: list[np.ndarray], beat_times_s: np.ndarray, n_samples: int, fs: float) -> np.ndarray:
    """``n_samples`` at ``fs`` whose pulse i (cycles in turn) starts at the i-th beat time inside
    the span; flat before the first. Each start is rounded on its own, so timing does not drift."""
    t = np.asarray(beat_times_s, np.float64)
    starts = np.unique(np.round(t[(t >= 0) & (t < n_samples / fs)] * fs).astype(np.int64))
    lengths = np.diff(np.append(starts, n_samples))
    return _lay(cycles, starts, lengths, n_samples)


def _lay(cycles: list[np.ndarray], starts: np.ndarray, lengths: np.ndarray, n_total: int) -> np.ndarray:
    """Cycle i (cyclically) at ``starts[i]`` for ``lengths[i]`` samples: cut short and detrended to
    end at zero when longer, followed by a flat diastole when shorter."""
    out = np.zeros(n_total)
    for i, (start, n) in enumerate(zip(starts, lengths)):  # one copy per beat, not per sample
        c = cycles[i % len(cycles)]
        m = min(n, len(c))
        out[start : start + m] = c[:m] - (c[m - 1] * np.arange(m) / max(m - 1, 1) if m < len(c) else 0.0)
    return out


def resample_cycles(cycles: list[np.ndarray], fs_from: float, fs_to: float) -> list[np.ndarray]:
    """Each cycle linearly resampled from ``fs_from`` to ``fs_to`` (same duration)."""
    out = []
    for c in cycles:  # per beat
        n = max(2, round(len(c) * fs_to / fs_from))
        out.append(np.interp(np.linspace(0, len(c) - 1, n), np.arange(len(c)), c))
    return out


@dataclass(frozen=True)
class RealPulses:
    """The clean beat cycles of one real recording (``cut_cycles``), at their own rate."""

    source: str
    cycles: list[np.ndarray] = field(repr=False)
    fs: float

    @classmethod
    def of(cls, source: str, ppg: np.ndarray, fs: float) -> RealPulses | None:
        """A recording's pulses, or None when it has fewer than ``MIN_CYCLES`` clean ones."""
        try:
            cycles = cut_cycles(ppg, fs)
        except DataError:  # a recording without clean pulses has none to give
            return None
        return cls(source, cycles, fs) if len(cycles) >= MIN_CYCLES else None


def with_real_pulses(rec: PairedRecording, pulses: RealPulses) -> PairedRecording:
    """``rec`` with its PPG replaced by ``pulses``' real cycles, one per heartbeat: each starts
    one pulse transit time (the subject's ``ptt_s``) after its R peak. The ECG, its rhythm and
    the PPG's rate and length are kept, so the old model's output on the ECG still describes
    the rhythm the PPG carries."""
    ptt = float(rec.meta.get("physiology", {}).get("ptt_s", 0.2))
    cycles = resample_cycles(pulses.cycles, pulses.fs, rec.fs_ppg)
    ppg = pulses_at(cycles, rec.r_peaks / rec.fs_ecg + ptt, len(rec.ppg), rec.fs_ppg)
    return replace(rec, ppg=ppg.astype(np.float32), meta={**rec.meta, "ppg_pulses": pulses.source})


def sinus_intervals(seconds: float, mean_rr: float, rng: np.random.Generator) -> np.ndarray:
    """Sinus RR: respiratory sinus arrhythmia (2-8 % at 0.15-0.35 Hz) plus 1 % jitter."""
    n = int(seconds / mean_rr) + 2
    t = np.arange(n) * mean_rr
    rsa = rng.uniform(0.02, 0.08) * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 6.3))
    return mean_rr * (1 + rsa + 0.01 * rng.standard_normal(n))


def ectopic_intervals(
    seconds: float, mean_rr: float, rng: np.random.Generator, share: float = 0.1
) -> np.ndarray:
    """Sinus with isolated premature beats (coupling 60-75 % of RR) and compensatory pauses."""
    rr = sinus_intervals(seconds, mean_rr, rng)
    premature = np.flatnonzero(rng.random(len(rr) - 1) < share)
    premature = premature[np.diff(np.concatenate([[-2], premature])) > 1]  # isolated: no couplets
    coupling = rng.uniform(0.6, 0.75, len(premature))
    pause = rr[premature] + rr[premature + 1]
    rr[premature] *= coupling
    rr[premature + 1] = pause - rr[premature]
    return rr


def af_intervals(seconds: float, mean_rr: float, rng: np.random.Generator) -> np.ndarray:
    """Atrial fibrillation: independent log-normal RR, CV 0.15-0.30, floor 0.3 s."""
    cv = rng.uniform(0.15, 0.30)
    sigma = np.sqrt(np.log1p(cv**2))
    n = int(seconds / mean_rr * 1.5) + 4
    rr = np.maximum(mean_rr * np.exp(rng.normal(-0.5 * sigma**2, sigma, n)), 0.3)
    return rr[: np.searchsorted(np.cumsum(rr), seconds) + 1]
