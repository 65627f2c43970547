"""Beat timing of the simulator: one vectorised beat train per rhythm episode.

Every beat carries its time (s, absolute), its kind (how the ventricles were activated, which
decides the ECG morphology) and the RR interval that preceded it (which decides the QT interval
and the stroke volume, hence the pulse amplitude). ECG and PPG are both rendered from this one
train, so the pair is consistent beat by beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.signals.physiology import Physiology

# Episode names a script may use, and the rhythm label each one carries.
EPISODE_LABEL = {
    "sinus": "sinus",
    "brady": "sinus",  # sinus bradycardia
    "tachy": "sinus",  # sinus tachycardia
    "afib": "afib",
    "ectopy": "ectopy",  # sinus with isolated premature atrial and ventricular beats
    "bigeminy": "ectopy",  # every other beat premature: regularly irregular, not AF
}

# Beat kinds (how the beat was conducted).
SINUS, AF_CONDUCTED, PVC, PAC = 0, 1, 2, 3

MIN_RR_S = 0.25  # refractory floor of the ventricles


@dataclass
class BeatTrain:
    times: np.ndarray  # float64 s
    kinds: np.ndarray  # int8, one of SINUS / AF_CONDUCTED / PVC / PAC
    rr_prev: np.ndarray  # float64 s, interval since the previous beat
    # (n, 2) standard-normal draws per beat for its pulse width and amplitude jitter, drawn with
    # the beat so a beat rendered in two blocks looks the same in both; the same for every rhythm
    shape_noise: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.shape_noise is None:
            self.shape_noise = np.zeros((len(self.times), 2))

    @classmethod
    def empty(cls) -> BeatTrain:
        return cls(np.zeros(0), np.zeros(0, np.int8), np.zeros(0))

    def __len__(self) -> int:
        return len(self.times)

    def select(self, mask: np.ndarray) -> BeatTrain:
        return BeatTrain(self.times[mask], self.kinds[mask], self.rr_prev[mask], self.shape_noise[mask])

    def extend(self, other: BeatTrain) -> BeatTrain:
        return BeatTrain(
            np.concatenate([self.times, other.times]),
            np.concatenate([self.kinds, other.kinds]),
            np.concatenate([self.rr_prev, other.rr_prev]),
            np.concatenate([self.shape_noise, other.shape_noise]),
        )


def episode_beats(
    name: str, last_beat_s: float, start_s: float, end_s: float, phys: Physiology, rng: np.random.Generator
) -> BeatTrain:
    """Beats of the episode [start_s, end_s], the first one at least one RR after ``last_beat_s``.

    If the first beat would fall before ``start_s`` (previous rhythm's territory), the train is
    delayed to start there: beats never precede the label boundary of their rhythm.
    """
    if name == "afib":
        times, kinds = _afib_times(last_beat_s, end_s, phys, rng)
    else:
        hr = {"brady": phys.brady_hr_bpm, "tachy": phys.tachy_hr_bpm}.get(name, phys.resting_hr_bpm)
        times = _sinus_times(last_beat_s, end_s, 60.0 / hr, phys, rng)
        kinds = np.full(len(times), SINUS, np.int8)
        if name in ("ectopy", "bigeminy"):
            every_other = name == "bigeminy"
            times, kinds = _insert_ectopy(times, kinds, last_beat_s, phys, rng, every_other)
    if len(times) and times[0] < start_s:
        times = times + (start_s - times[0])
    keep = times <= end_s
    times, kinds = times[keep], kinds[keep]
    rr_prev = np.diff(np.concatenate([[last_beat_s], times]))
    return BeatTrain(times, kinds, rr_prev, rng.standard_normal((len(times), 2)))


def _sinus_times(
    last_s: float, end_s: float, mean_rr: float, phys: Physiology, rng: np.random.Generator
) -> np.ndarray:
    """Sinus RR = mean x (1 + RSA at the breathing rate + Mayer wave at 0.1 Hz) + jitter."""
    n = int(np.ceil((end_s - last_s) / (0.7 * mean_rr))) + 2
    t_nominal = last_s + mean_rr * np.arange(1, n + 1)
    modulation = phys.rsa_fraction * np.sin(2 * np.pi * phys.resp_rate_hz * t_nominal) + (
        phys.mayer_fraction * np.sin(2 * np.pi * 0.1 * t_nominal)
    )
    rr = mean_rr * (1.0 + modulation) + rng.normal(0.0, phys.rr_jitter_s, n)
    return last_s + np.cumsum(np.maximum(rr, MIN_RR_S))


def _afib_times(
    last_s: float, end_s: float, phys: Physiology, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Irregularly irregular: independent log-normal RR intervals (no serial correlation)."""
    mean_rr = 60.0 / phys.af_hr_bpm
    sigma = np.sqrt(np.log1p(phys.af_rr_cv**2))
    n = int(np.ceil((end_s - last_s) / (0.5 * mean_rr))) + 4
    rr = mean_rr * np.exp(rng.normal(-0.5 * sigma**2, sigma, n))
    times = last_s + np.cumsum(np.maximum(rr, MIN_RR_S + 0.03))
    return times, np.full(n, AF_CONDUCTED, np.int8)


def _insert_ectopy(
    times: np.ndarray,
    kinds: np.ndarray,
    last_s: float,
    phys: Physiology,
    rng: np.random.Generator,
    every_other: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace some sinus beats with premature beats (``every_other``: bigeminy, all of one kind).

    A PVC does not reset the sinus node: the next sinus beat keeps its time, so the pause
    after it is fully compensatory (coupling + pause = 2 RR). A PAC resets the sinus node:
    every later beat moves earlier by the prematurity.
    """
    n = len(times)
    if every_other:
        chosen = np.arange(n) % 2 == 1
        is_pvc = chosen & (rng.random() < phys.pvc_share)
    else:
        chosen = rng.random(n) < phys.ectopic_fraction
        chosen[0] = False
        chosen[1:] &= ~chosen[:-1]  # no couplets: each premature beat follows a sinus beat
        is_pvc = chosen & (rng.random(n) < phys.pvc_share)
    is_pac = chosen & ~is_pvc
    previous = np.concatenate([[last_s], times[:-1]])
    rr = times - previous
    coupling = np.where(is_pvc, rng.uniform(0.55, 0.72, n), rng.uniform(0.6, 0.8, n))
    premature = previous + coupling * rr
    shift = np.where(is_pac, premature - times, 0.0)  # PAC: reset of all later beats
    new_times = times + np.cumsum(shift) - shift  # shift applies to the beats after the PAC
    new_times = np.where(chosen, previous + np.cumsum(shift) - shift + coupling * rr, new_times)
    new_kinds = kinds.copy()
    new_kinds[is_pvc] = PVC
    new_kinds[is_pac] = PAC
    return new_times, new_kinds
