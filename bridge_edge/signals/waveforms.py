"""ECG and PPG waveforms rendered from a beat train, vectorised over beats.

Each beat is a sum of asymmetric Gaussian waves placed at its R time (ECG: P, Q, R, S, T;
PPG: systolic, reflected and diastolic wave, the dicrotic notch is the valley before the last). All beats of
a block are evaluated on one (beats x support) grid of sample times and added into the output
with ``np.bincount``, so there is no per-sample or per-beat Python loop. Times are absolute
seconds and sample k of the output sits at ``k / fs``, so blocks rendered separately join
without a seam.
"""

from __future__ import annotations

import numpy as np

from bridge_edge.signals.physiology import Physiology
from bridge_edge.signals.rhythms import PAC, PVC, SINUS, BeatTrain

ECG_SUPPORT_S = (-0.4, 0.7)  # every ECG wave of a beat lies within this range of its R time
PPG_SUPPORT_S = (0.0, 2.0)  # wide pulses of slow hearts fit
FILLING_DEAD_S = 0.3  # no effective ejection after a shorter RR interval
FILLING_TAU_S = 0.15  # time constant of ventricular filling


def _place(
    beat_times: np.ndarray, support: tuple[float, float], n0: int, n: int, fs: float, waves: np.ndarray
) -> np.ndarray:
    """Sum ``waves`` (beats, n_waves, 4: centre, sigma_left, sigma_right, amplitude; centre
    relative to the beat time) on samples ``n0 .. n0 + n - 1`` of a grid at ``fs``."""
    out = np.zeros(n)
    if len(beat_times) == 0:
        return out
    length = int(np.ceil((support[1] - support[0]) * fs)) + 1
    first = np.ceil((beat_times + support[0]) * fs).astype(np.int64)
    idx = first[:, None] + np.arange(length)[None, :]  # (beats, length) absolute sample index
    dt = idx / fs - beat_times[:, None]
    centre, sig_l, sig_r, amp = (waves[:, :, i][:, :, None] for i in range(4))
    offset = dt[:, None, :] - centre
    sigma = np.where(offset < 0, sig_l, sig_r)
    values = (amp * np.exp(-0.5 * (offset / sigma) ** 2)).sum(axis=1)
    local = idx - n0
    inside = (local >= 0) & (local < n)
    return np.bincount(local[inside], weights=values[inside], minlength=n)


def ecg_waves(beats: BeatTrain, phys: Physiology, resp_phase: np.ndarray) -> np.ndarray:
    """Per-beat wave table (beats, 5 waves P Q R S T, 4) in mV and seconds, lead-II-like."""
    k = beats.kinds
    n = len(k)
    proj = phys.lead_ii_projection()
    qrs = phys.qrs_s
    breathing = 1.0 + 0.05 * np.sin(resp_phase)  # heart-electrode distance changes with breath
    r_amp = phys.r_mv * (0.35 + 0.65 * proj) * breathing
    s_amp = phys.s_mv * (1.6 - proj)
    rr = np.clip(beats.rr_prev, 0.3, 1.8)
    qt = phys.qtc_s * np.sqrt(rr)  # Bazett
    t_centre = -qrs / 2 + qt - 0.1
    p_centre = -qrs / 2 - phys.pr_s + 0.05
    w = np.zeros((n, 5, 4))
    # P: only when the atria depolarise in an organised way before the beat
    has_p = (k == SINUS) | (k == PAC)
    w[:, 0] = [p_centre, 0.022, 0.02, 0.0]
    w[:, 0, 3] = np.where(k == PAC, -0.5 * phys.p_mv, np.where(has_p, phys.p_mv, 0.0))
    w[:, 0, 0] = np.where(k == PAC, p_centre + 0.03, p_centre)
    # narrow QRS and upright T for every supraventricular beat
    w[:, 1] = [-0.3 * qrs, qrs / 10, qrs / 10, -phys.q_mv]
    w[:, 2, :3] = [0.0, qrs / 8.5, qrs / 8.5]
    w[:, 2, 3] = r_amp
    w[:, 3] = [0.3 * qrs, qrs / 10, qrs / 9, -s_amp]
    w[:, 4, 0] = t_centre
    w[:, 4, 1:] = [0.06, 0.04, phys.t_mv]
    # PVC: no P, wide bizarre QRS, large discordant T
    pvc = k == PVC
    if pvc.any():
        w[pvc, 1] = [-0.05, 0.02, 0.02, 0.0]
        w[pvc, 2] = [0.0, 0.03, 0.035, 1.2 * phys.r_mv]
        w[pvc, 3] = [0.07, 0.03, 0.03, -0.5 * phys.r_mv]
        w[pvc, 4] = [0.33, 0.07, 0.05, -1.3 * phys.t_mv]
    return w


def render_ecg(beats: BeatTrain, phys: Physiology, n0: int, n: int, fs: float) -> np.ndarray:
    resp_phase = 2 * np.pi * phys.resp_rate_hz * beats.times
    return _place(beats.times, ECG_SUPPORT_S, n0, n, fs, ecg_waves(beats, phys, resp_phase))


def fibrillatory_waves(t: np.ndarray, phys: Physiology) -> np.ndarray:
    """Atrial f-waves: a frequency-wandering oscillation around the dominant AF frequency."""
    phase = 2 * np.pi * phys.fwave_hz * t + 6.0 * np.sin(2 * np.pi * 0.11 * t)
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * 0.23 * t + 1.0)
    return phys.fwave_mv * envelope * (0.75 * np.sin(phase) + 0.25 * np.sin(1.9 * phase + 0.7))


def pulse_amplitude(beats: BeatTrain, phys: Physiology) -> np.ndarray:
    """Stroke volume follows diastolic filling time (Frank-Starling): ventricular filling rises
    exponentially with the preceding RR, so a short RR gives a small pulse and below
    FILLING_DEAD_S no palpable pulse at all (pulse deficit). Normalised to the resting RR and
    raised to the subject's ``starling_strength``; the same rule for every rhythm."""

    def filling(rr):
        return 1.0 - np.exp(-np.maximum(rr - FILLING_DEAD_S, 0.0) / FILLING_TAU_S)

    relative = np.minimum(filling(beats.rr_prev) / filling(60.0 / phys.resting_hr_bpm), 1.15)
    relative = np.where(relative > 0, relative**phys.starling_strength, 0.0)
    contractility = np.where(beats.kinds == PVC, 0.75, 1.0)  # dyssynchronous contraction
    breathing = 1.0 + 0.08 * np.sin(2 * np.pi * phys.resp_rate_hz * beats.times)
    jitter = np.exp(phys.beat_shape_jitter * beats.shape_noise[:, 1])
    return phys.perfusion * relative * contractility * breathing * jitter


def render_ppg(beats: BeatTrain, phys: Physiology, n0: int, n: int, fs: float) -> np.ndarray:
    """Systolic, reflected (late-systolic) and diastolic waves per beat; the pulse's shape is the
    subject's (``pulse_width``, ``reflected_ratio``, ``dicrotic_ratio``), whatever the rhythm."""
    amp = pulse_amplitude(beats, phys)
    # a shorter cycle shortens ejection and run-off: the decaying parts of the pulse follow RR, as
    # strongly as the subject's squeeze_strength says, under every rhythm alike
    ratio = np.clip(beats.rr_prev * phys.resting_hr_bpm / 60.0, 0.45, 1.3)
    squeeze = ratio**phys.squeeze_strength * np.exp(phys.beat_shape_jitter * beats.shape_noise[:, 0])
    width = phys.pulse_width
    rise = phys.pulse_rise_s * width
    peak = phys.ptt_s + rise
    w = np.zeros((len(beats), 3, 4))
    w[:, 0, 0] = peak
    w[:, 0, 1] = rise / 2.2
    w[:, 0, 2] = (0.6 * rise + 0.06 * width) * squeeze
    w[:, 0, 3] = amp
    w[:, 1, 0] = peak + 0.12 * width * squeeze
    w[:, 1, 1:3] = (0.05 * width * squeeze)[:, None]
    w[:, 1, 3] = amp * phys.reflected_ratio
    w[:, 2, 0] = peak + phys.dicrotic_delay_s * width * np.sqrt(squeeze)
    w[:, 2, 1] = 0.05 * width * np.sqrt(squeeze)
    w[:, 2, 2] = 0.11 * width * squeeze
    w[:, 2, 3] = amp * phys.dicrotic_ratio
    return _place(beats.times, PPG_SUPPORT_S, n0, n, fs, w)
