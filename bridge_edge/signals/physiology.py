"""Per-subject physiology of the simulator: every number that makes one simulated person differ
from another, drawn once from the subject's seed and written to the dataset as ``meta``.

Ranges are adult resting values from standard physiology texts (lead-II-like single lead):
PR 140-200 ms, QRS 80-100 ms, QTc 380-440 ms, frontal QRS axis -20..+80 degrees, finger pulse
arrival 150-350 ms after the R peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Physiology:
    # heart rate and its variability
    resting_hr_bpm: float
    brady_hr_bpm: float
    tachy_hr_bpm: float
    resp_rate_hz: float  # respiration drives RSA, baseline wander and pulse amplitude
    rsa_fraction: float  # respiratory sinus arrhythmia, fraction of the mean RR
    mayer_fraction: float  # ~0.1 Hz (Mayer wave) RR modulation
    rr_jitter_s: float  # beat-to-beat white jitter of sinus RR
    # atrial fibrillation
    af_hr_bpm: float
    af_rr_cv: float  # coefficient of variation of AF RR intervals
    fwave_mv: float  # fibrillatory wave amplitude
    fwave_hz: float  # dominant atrial fibrillatory frequency
    # ectopy
    ectopic_fraction: float  # fraction of beats replaced by premature beats in ectopy episodes
    pvc_share: float  # share of premature beats that are ventricular (rest atrial)
    # ECG morphology (mV, s)
    axis_deg: float
    r_mv: float
    q_mv: float
    s_mv: float
    p_mv: float
    t_mv: float
    pr_s: float
    qrs_s: float
    qtc_s: float
    # pulse (PPG): the shape of a subject's pulse, drawn independently of every rhythm parameter
    ptt_s: float  # R peak to pulse foot
    pulse_rise_s: float  # foot to systolic peak
    pulse_width: float  # scales the whole pulse: < 1 narrow (young, finger), > 1 wide (wrist, stiff)
    reflected_ratio: float  # late-systolic reflected wave / systolic amplitude (0 = none)
    dicrotic_ratio: float  # diastolic / systolic wave amplitude (near 0: no notch)
    dicrotic_delay_s: float  # systolic peak to diastolic peak
    squeeze_strength: float  # how much the pulse narrows after a short interval (0 = fixed width)
    starling_strength: float  # how much pulse amplitude follows the filling time (0 = fixed)
    beat_shape_jitter: float  # beat-to-beat random variation of pulse width and amplitude (every rhythm)
    perfusion: float  # pulse amplitude, arbitrary units
    # sensor noise
    baseline_mv: float
    powerline_hz: float
    powerline_mv: float
    emg_mv: float
    motion_level: float  # 0 = still; scales rate and size of PPG motion artifacts

    def as_dict(self) -> dict:
        return {k: round(float(v), 5) for k, v in asdict(self).items()}

    def lead_ii_projection(self) -> float:
        """cos(angle between the QRS axis and lead II at +60 degrees)."""
        return float(np.cos(np.deg2rad(self.axis_deg - 60.0)))


def draw_physiology(rng: np.random.Generator, motion_level: float | None = None) -> Physiology:
    u = rng.uniform
    # Rates overlap across rhythms on purpose: sinus covers 40-150 bpm without a hole, AF 50-160,
    # so a model cannot read AF off the rate (docs/simulator.md).
    resting = u(50, 102)
    return Physiology(
        resting_hr_bpm=resting,
        brady_hr_bpm=u(40, 58),
        tachy_hr_bpm=u(100, 150),  # openecg calls simulated sinus above ~150 bpm "bbb" (P merges into T)
        resp_rate_hz=u(0.15, 0.35),
        rsa_fraction=float(np.exp(u(np.log(0.01), np.log(0.10)))),
        mayer_fraction=u(0.005, 0.02),
        rr_jitter_s=u(0.005, 0.015),
        af_hr_bpm=u(50, 160),
        af_rr_cv=u(0.18, 0.30),
        fwave_mv=u(0.03, 0.09),
        fwave_hz=u(5.0, 7.5),
        ectopic_fraction=u(0.08, 0.2),
        pvc_share=u(0.4, 0.8),
        axis_deg=u(-20, 80),
        r_mv=u(0.9, 1.8),
        q_mv=u(0.03, 0.12),
        s_mv=u(0.1, 0.3),
        p_mv=u(0.1, 0.2),
        t_mv=u(0.2, 0.45),
        pr_s=u(0.14, 0.19),
        qrs_s=u(0.08, 0.10),
        qtc_s=u(0.38, 0.43),
        ptt_s=u(0.12, 0.35),
        pulse_rise_s=u(0.07, 0.18),
        pulse_width=float(np.exp(u(np.log(0.55), np.log(1.7)))),
        reflected_ratio=u(0.0, 0.5) if rng.random() < 0.5 else 0.0,
        dicrotic_ratio=u(0.0, 0.6),
        dicrotic_delay_s=u(0.18, 0.32),
        squeeze_strength=u(0.0, 1.0),
        starling_strength=u(0.0, 1.0),
        beat_shape_jitter=u(0.0, 0.08),
        perfusion=float(np.exp(rng.normal(0.0, 0.35))),
        baseline_mv=u(0.05, 0.2),
        powerline_hz=float(rng.choice([50.0, 60.0])),
        powerline_mv=u(0.0, 0.02),
        emg_mv=u(0.005, 0.02),
        motion_level=u(0.0, 0.6) if motion_level is None else float(motion_level),
    )
