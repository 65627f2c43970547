"""Paired ECG + PPG simulator: one virtual patient, one beat train, two sensors.

``PatientSimulator`` is a stream: ``generate(seconds)`` continues exactly where the previous
call stopped (beat times, respiration phase, filter and artefact state), so the live ``sim://``
source and an offline dataset come from the same code. ``simulate_subject`` renders one
subject with random rhythm episodes; ``write_dataset`` writes the docs/simulator.md on-disk format.

What is modelled (details in docs/simulator.md): per-subject physiology (physiology.py);
sinus rhythm with respiratory and Mayer-wave HRV, bradycardia and tachycardia, atrial
fibrillation, isolated ectopy and bigeminy (rhythms.py); ECG and PPG beats (waveforms.py);
baseline wander, powerline, EMG, motion artefacts, saturation and dropouts (noise.py); the PPG
sensor's front end: polarity, AC coupling, analog low-pass and ringing, ADC (sensor.py). Pulse
shape, sensor and sampling rate are drawn per subject, independently of its rhythm episodes.
Every clipped or dropped sample is counted in the recording's ``meta["artefacts"]``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bridge_edge.errors import ConfigError
from bridge_edge.signals import noise, waveforms
from bridge_edge.signals import sensor as sensor_module
from bridge_edge.signals.physiology import Physiology, draw_physiology
from bridge_edge.signals.rhythms import EPISODE_LABEL, BeatTrain, episode_beats
from bridge_edge.signals.types import PairedRecording

if TYPE_CHECKING:
    from bridge_edge.signals.resequence import RealPulses

LABELS: tuple[str, ...] = ("sinus", "afib", "ectopy")
DATASET_VERSION = "2"  # 2: rhythm-independent pulse shapes and sensors, rates 40-180 bpm

ECG_RANGE_MV = 5.0  # front-end saturation of the ECG amplifier
PPG_RANGE = 3.0  # PPG saturation in units of the subject's perfusion (the AFE gain is set per subject)
BLOCK_S = 30.0  # rendering block; bounds memory, invisible in the output

RANDOM_EPISODE_S = (30.0, 150.0)  # random episodes last uniformly this long


@dataclass(frozen=True)
class EpisodeMix:
    """Relative weights of the random episodes (``rhythms.EPISODE_LABEL`` names); the next
    episode is never the previous one again. The defaults are every dataset's mix; a
    [pair_cohort] may draw another, e.g. sinus with frequent ectopy."""

    sinus: float = 0.3
    brady: float = 0.1
    tachy: float = 0.1
    afib: float = 0.35
    ectopy: float = 0.1
    bigeminy: float = 0.05

    def __post_init__(self) -> None:
        weights = list(asdict(self).values())
        if min(weights) < 0 or sum(w > 0 for w in weights) < 2:
            raise ConfigError(
                f"episode weights {asdict(self)}; expected every weight >= 0 and at least two above 0 "
                "(episodes alternate)",
                key="episodes",
                value=asdict(self),
                expected="weights >= 0, two or more > 0",
            )


class PatientSimulator:
    """A continuous paired ECG + PPG stream of one simulated patient.

    ``script`` is a list of (episode, seconds) with episodes from ``rhythms.EPISODE_LABEL``
    (sinus, brady, tachy, afib, ectopy, bigeminy); it repeats when it runs out. Without a script
    the episodes are random. ``motion_noise`` (0 = still, 1 = restless) scales PPG motion
    artefacts. ``sensor``: a random PPG front end drawn from the seed (True), an ideal sensor
    (False, the pulse wave itself), or a given ``sensor.FrontEnd``. ``af_hr_bpm``: draw the
    subject's AF rate from this (low, high) range instead of the physiology's (a cohort, e.g.
    rate-controlled AF); ``sinus_hr_bpm`` likewise for the resting sinus rate (from a stream of
    its own, so the AF draw does not move); every other draw stays what the seed gives.
    ``episodes``: the mix of random episodes (no effect with a ``script``).
    """

    def __init__(
        self,
        seed: int,
        fs_ecg: float = 500.0,
        fs_ppg: float = 125.0,
        script: Sequence[tuple[str, float]] | None = None,
        motion_noise: float = 0.0,
        subject_id: str = "sim",
        sensor: bool | sensor_module.FrontEnd = True,
        af_hr_bpm: tuple[float, float] | None = None,
        episodes: EpisodeMix = EpisodeMix(),
        sinus_hr_bpm: tuple[float, float] | None = None,
    ) -> None:
        if script is not None:
            _check_script(script)
        self.seed, self.subject_id = int(seed), subject_id
        self.fs_ecg, self.fs_ppg = float(fs_ecg), float(fs_ppg)
        self.labels = LABELS
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(11)]
        self.physiology: Physiology = draw_physiology(rngs[0], motion_level=motion_noise)
        if af_hr_bpm is not None:
            cohort_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 13]))
            self.physiology = replace(self.physiology, af_hr_bpm=float(cohort_rng.uniform(*af_hr_bpm)))
        if sinus_hr_bpm is not None:
            sinus_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 14]))
            self.physiology = replace(self.physiology, resting_hr_bpm=float(sinus_rng.uniform(*sinus_hr_bpm)))
        p = self.physiology
        self._episode_rng, self._beat_rng, self._ppg_white_rng = rngs[1], rngs[2], rngs[3]
        self._emg = noise.FilteredNoise(rngs[4], (20.0, 150.0), self.fs_ecg)
        self._motion = noise.FilteredNoise(rngs[5], (0.2, 4.0), self.fs_ppg)
        self._emg_bursts = noise.EventTrack(rngs[6], 1.0, (0.5, 3.0))
        self._motion_events = noise.EventTrack(rngs[7], 4.0 * p.motion_level, (1.0, 8.0))
        self._ecg_dropouts = noise.EventTrack(rngs[8], 0.05, (0.2, 1.0))
        self._ppg_dropouts = noise.EventTrack(rngs[9], 0.2, (0.2, 1.5))
        self._phases = rngs[10].uniform(0, 2 * np.pi, 8)
        front_end_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 12]))
        drawn = sensor_module.draw_front_end(front_end_rng)  # drawn always: same physiology either way
        self.front_end = sensor if isinstance(sensor, sensor_module.FrontEnd) else (drawn if sensor else None)
        self._sensor = (
            None
            if self.front_end is None
            else sensor_module.SensorChain(self.front_end, self.fs_ppg, 1.2 * p.perfusion)
        )
        self._script = list(script) if script is not None else None
        self._episode_mix = asdict(episodes)
        self._episodes: list[tuple[str, float, float]] = []  # name, start s, end s
        self._beats = BeatTrain.empty()
        self._next_episode_to_beat = 0
        self._last_beat_s = -0.3
        self._t = 0.0

    # --- schedule ------------------------------------------------------------------------

    def _ensure_episodes(self, t: float) -> None:
        while not self._episodes or self._episodes[-1][2] <= t:
            start = self._episodes[-1][2] if self._episodes else 0.0
            if self._script is not None:
                name, seconds = self._script[len(self._episodes) % len(self._script)]
            else:
                names, weights = zip(*self._episode_mix.items())
                previous = self._episodes[-1][0] if self._episodes else None
                w = np.array([0.0 if n == previous else x for n, x in zip(names, weights)])
                name = str(self._episode_rng.choice(names, p=w / w.sum()))
                seconds = float(self._episode_rng.uniform(*RANDOM_EPISODE_S))
            self._episodes.append((name, start, start + float(seconds)))

    def _ensure_beats(self, t: float) -> None:
        self._ensure_episodes(t)
        while self._next_episode_to_beat < len(self._episodes) and self._last_beat_s < t:
            name, start, end = self._episodes[self._next_episode_to_beat]
            new = episode_beats(name, self._last_beat_s, start, end, self.physiology, self._beat_rng)
            self._beats = self._beats.extend(new)
            if len(new):
                self._last_beat_s = float(new.times[-1])
            self._next_episode_to_beat += 1
            self._ensure_episodes(end + 1.0)

    def _label_index(self, t: np.ndarray) -> np.ndarray:
        starts = np.array([e[1] for e in self._episodes])
        codes = np.array([LABELS.index(EPISODE_LABEL[e[0]]) for e in self._episodes], np.int8)
        return codes[np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(codes) - 1)]

    # --- rendering -----------------------------------------------------------------------

    def generate(self, seconds: float) -> PairedRecording:
        """The next ``seconds`` of the stream (sample k of the stream is at k / fs)."""
        if not seconds > 0:
            raise ConfigError(f"seconds must be positive, got {seconds}", key="seconds", value=seconds)
        t0, t_end = self._t, self._t + float(seconds)
        edges = np.append(np.arange(t0, t_end, BLOCK_S), t_end)
        blocks = [self._render_block(a, b) for a, b in itertools.pairwise(edges) if b > a]
        self._t = t_end
        ecg = np.concatenate([b.ecg for b in blocks])
        r_peaks = np.concatenate([b.r_samples for b in blocks]) - round(t0 * self.fs_ecg)
        artefacts = {k: sum(b.artefacts[k] for b in blocks) for k in blocks[0].artefacts}
        episodes = [[n, round(a, 3), round(b, 3)] for n, a, b in self._episodes if b > t0 and a < t_end]
        meta = {
            "seed": self.seed,
            "t_start_s": t0,
            "physiology": self.physiology.as_dict(),
            "ppg_sensor": None if self.front_end is None else self.front_end.as_dict(),
            "episodes": episodes,
            "artefacts": artefacts,
        }
        return PairedRecording(
            subject_id=self.subject_id,
            ecg=ecg.astype(np.float32),
            ppg=np.concatenate([b.ppg for b in blocks]).astype(np.float32),
            fs_ecg=self.fs_ecg,
            fs_ppg=self.fs_ppg,
            rhythm=np.concatenate([b.rhythm for b in blocks]),
            r_peaks=r_peaks,
            labels=LABELS,
            meta=meta,
        )

    def _render_block(self, t0: float, t1: float) -> _Block:
        p = self.physiology
        self._ensure_beats(t1 + 0.5)
        beats = self._beats.select(
            (self._beats.times > t0 - waveforms.PPG_SUPPORT_S[1]) & (self._beats.times < t1 + 0.5)
        )
        self._beats = self._beats.select(self._beats.times > t0 - 2.0)

        n_e0, n_e1 = round(t0 * self.fs_ecg), round(t1 * self.fs_ecg)
        n_p0, n_p1 = round(t0 * self.fs_ppg), round(t1 * self.fs_ppg)
        n_e, n_p = n_e1 - n_e0, n_p1 - n_p0
        t_e = np.arange(n_e0, n_e1) / self.fs_ecg
        t_p = np.arange(n_p0, n_p1) / self.fs_ppg
        rhythm = self._label_index(t_e)

        ecg = waveforms.render_ecg(beats, p, n_e0, n_e, self.fs_ecg)
        ecg += waveforms.fibrillatory_waves(t_e, p) * (rhythm == LABELS.index("afib"))
        ecg += noise.baseline_wander(t_e, p.baseline_mv, p.resp_rate_hz, self._phases[:3])
        ecg += p.powerline_mv * np.sin(2 * np.pi * p.powerline_hz * t_e + self._phases[3])
        bursts = self._emg_bursts.mask(n_e0, n_e, self.fs_ecg)
        ecg += p.emg_mv * (1.0 + 4.0 * bursts) * self._emg.next(n_e)
        ecg_clipped = np.abs(ecg) > ECG_RANGE_MV
        ecg = np.clip(ecg, -ECG_RANGE_MV, ECG_RANGE_MV)
        ecg_off = self._ecg_dropouts.mask(n_e0, n_e, self.fs_ecg)  # electrode contact lost
        ecg[ecg_off] = 0.0

        ppg = waveforms.render_ppg(beats, p, n_p0, n_p, self.fs_ppg)
        ppg += noise.baseline_wander(t_p, 0.15 * p.perfusion, p.resp_rate_hz, self._phases[4:7])
        ppg += 0.01 * p.perfusion * self._ppg_white_rng.standard_normal(n_p)
        motion = self._motion_events.mask(n_p0, n_p, self.fs_ppg)
        ppg += 2.0 * p.perfusion * motion * self._motion.next(n_p)
        limit = PPG_RANGE * p.perfusion
        ppg_clipped = np.abs(ppg) > limit
        ppg = np.clip(ppg, -limit, limit)
        adc_clipped = 0
        if self._sensor is not None:
            ppg, adc_clipped = self._sensor.apply(ppg)
        ppg_off = self._ppg_dropouts.mask(n_p0, n_p, self.fs_ppg)  # sensor lifted off the skin
        ppg[ppg_off] = 0.0

        r_samples = np.round(beats.times * self.fs_ecg).astype(np.int64)
        in_block = (r_samples >= n_e0) & (r_samples < n_e1)  # each beat in exactly one block
        deficit = in_block & (waveforms.pulse_amplitude(beats, p) < 0.05 * p.perfusion)
        artefacts = {
            "ecg_clipped_samples": int((ecg_clipped & ~ecg_off).sum()),
            "ecg_dropout_samples": int(ecg_off.sum()),
            "ppg_clipped_samples": int((ppg_clipped & ~ppg_off).sum()),
            "ppg_adc_clipped_samples": int(adc_clipped),
            "ppg_dropout_samples": int(ppg_off.sum()),
            "ppg_motion_samples": int(motion.sum()),
            "pulse_deficit_beats": int(deficit.sum()),
        }
        return _Block(ecg, ppg, rhythm, r_samples[in_block], artefacts)


@dataclass(frozen=True)
class _Block:
    """One rendered stretch of the stream (absolute R sample indices, artefact counts)."""

    ecg: np.ndarray
    ppg: np.ndarray
    rhythm: np.ndarray
    r_samples: np.ndarray
    artefacts: dict[str, int]


def _check_script(script: Sequence[tuple[str, float]]) -> None:
    if not script:
        raise ConfigError(
            "rhythm script is empty; expected [(episode, seconds), ...]", key="script", value=[]
        )
    for item in script:
        name, seconds = item
        if name not in EPISODE_LABEL or not float(seconds) > 0:
            raise ConfigError(
                f"bad script episode {item!r}; expected (one of {sorted(EPISODE_LABEL)}, seconds > 0)",
                key="script",
                value=item,
                expected=sorted(EPISODE_LABEL),
            )


# Seed streams: the dataset's own subjects (and the pretraining pool that continues their
# indices) use stream 0; extra held-out test subjects use their own stream, so they can never
# coincide with a subject of any split or of pretraining, whatever those counts are.
DATASET_STREAM = 0
HELD_OUT_STREAM = 1
PAIR_COHORT_STREAM = 2


def subject_seed(dataset_seed: int, index: int, stream: int = DATASET_STREAM) -> int:
    """Seed of subject ``index`` of a dataset: independent streams per subject (and per stream)."""
    key = [int(dataset_seed), int(index)] + ([int(stream)] if stream != DATASET_STREAM else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def simulate_subject(
    subject_id: str,
    minutes: float,
    seed: int,
    fs_ecg: float = 500.0,
    fs_ppg: float | None = None,
    af_hr_bpm: tuple[float, float] | None = None,
    episodes: EpisodeMix = EpisodeMix(),
    sinus_hr_bpm: tuple[float, float] | None = None,
) -> PairedRecording:
    """One subject with random physiology, rhythm episodes, motion level, PPG sensor and (unless
    ``fs_ppg`` is given) a PPG sampling rate drawn from ``sensor.SENSOR_RATES_HZ``; ``af_hr_bpm``,
    ``episodes`` and ``sinus_hr_bpm`` as in ``PatientSimulator``."""
    motion = float(np.random.default_rng([int(seed), 7]).uniform(0.0, 0.6))
    if fs_ppg is None:
        fs_ppg = float(np.random.default_rng([int(seed), 8]).choice(sensor_module.SENSOR_RATES_HZ))
    sim = PatientSimulator(
        seed,
        fs_ecg=fs_ecg,
        fs_ppg=fs_ppg,
        motion_noise=motion,
        subject_id=subject_id,
        af_hr_bpm=af_hr_bpm,
        episodes=episodes,
        sinus_hr_bpm=sinus_hr_bpm,
    )
    return sim.generate(minutes * 60.0)


def write_dataset(
    out_dir: str | Path, subjects: int, minutes: float, seed: int, progress: bool = False
) -> Path:
    """Write ``OUT/dataset.json`` and ``OUT/subjects/<id>.npz`` (docs/simulator.md); returns OUT."""
    from bridge_edge.signals.datasets.splits import split_subjects

    _check_counts(subjects, minutes)
    ids = [f"sim{i:03d}" for i in range(subjects)]
    seeds = [subject_seed(seed, i) for i in range(subjects)]
    return _write(out_dir, ids, seeds, minutes, split_subjects(ids, seed).as_dict(), progress)


def write_held_out_dataset(
    out_dir: str | Path, subjects: int, minutes: float, seed: int, progress: bool = False
) -> Path:
    """Extra test subjects ``tst000``.. from the held-out seed stream, all in the test split.

    Same on-disk format as ``write_dataset``, so ``bridge-edge evaluate BUNDLE --data OUT``
    scores a bundle on exactly the subjects a fit report added to its test split.
    """
    from bridge_edge.signals.types import SPLIT_NAMES

    _check_counts(subjects, minutes)
    ids = [f"tst{i:03d}" for i in range(subjects)]
    seeds = [subject_seed(seed, i, HELD_OUT_STREAM) for i in range(subjects)]
    splits = {name: ids if name == "test" else [] for name in SPLIT_NAMES}
    return _write(out_dir, ids, seeds, minutes, splits, progress)


def write_pair_cohort_dataset(
    out_dir: str | Path,
    subjects: int,
    minutes: float,
    seed: int,
    af_hr_bpm: tuple[float, float],
    episodes: EpisodeMix = EpisodeMix(),
    progress: bool = False,
    pulses: Sequence[RealPulses] = (),
    sinus_hr_bpm: tuple[float, float] | None = None,
) -> Path:
    """Extra pair subjects ``coh000``.. from a seed stream of their own, all in the pair split,
    whose AF rate is drawn from ``af_hr_bpm``, resting sinus rate from ``sinus_hr_bpm`` (None:
    the physiology's) and episodes from ``episodes`` (the fit's [pair_cohort]); same on-disk format as ``write_dataset``. With ``pulses``, subject i's PPG
    is made of ``pulses[i % len(pulses)]``'s real cycles at its heartbeats
    (``resequence.with_real_pulses``)."""
    from bridge_edge.signals.types import SPLIT_NAMES

    _check_counts(subjects, minutes)
    ids = [f"coh{i:03d}" for i in range(subjects)]
    seeds = [subject_seed(seed, i, PAIR_COHORT_STREAM) for i in range(subjects)]
    splits = {name: ids if name == "pair" else [] for name in SPLIT_NAMES}
    return _write(out_dir, ids, seeds, minutes, splits, progress, af_hr_bpm, episodes, pulses, sinus_hr_bpm)


def _check_counts(subjects: int, minutes: float) -> None:
    if subjects < 1 or not minutes > 0:
        raise ConfigError(
            f"need at least 1 subject and minutes > 0, got subjects={subjects}, minutes={minutes}",
            key="subjects/minutes",
            value=[subjects, minutes],
        )


def _write(
    out_dir,
    ids: list[str],
    seeds: list[int],
    minutes: float,
    splits: dict,
    progress: bool,
    af_hr_bpm: tuple[float, float] | None = None,
    episodes: EpisodeMix = EpisodeMix(),
    pulses: Sequence[RealPulses] = (),
    sinus_hr_bpm: tuple[float, float] | None = None,
) -> Path:
    out = Path(out_dir)
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="simulate", unit="subject", file=__import__("sys").stderr)
    for i, (sid, sid_seed) in enumerate(zip(ids, seeds)):
        rec = simulate_subject(
            sid, minutes, sid_seed, af_hr_bpm=af_hr_bpm, episodes=episodes, sinus_hr_bpm=sinus_hr_bpm
        )
        if pulses:
            from bridge_edge.signals.resequence import with_real_pulses

            rec = with_real_pulses(rec, pulses[i % len(pulses)])
        np.savez_compressed(out / "subjects" / f"{sid}.npz", **rec.to_npz_dict())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    index = {"version": DATASET_VERSION, "labels": list(LABELS), "subjects": ids, "splits": splits}
    (out / "dataset.json").write_text(json.dumps(index, indent=2) + "\n")
    return out
