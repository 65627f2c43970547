"""The rhythm-not-shape suite: does a bundle read the heart rhythm, or the sensor's pulse shape?

Every case is a signal whose rhythm is known by construction; each goes through the bundle's own
preprocessing, window grid, warm-up and SQI gate exactly as ``bridge-edge run`` would (offline
preprocessing equals the stream's), and through a runtime engine (ONNX Runtime by default; no
torch). Cases (docs/method.md, "Real PPG"):

- ``fixed_shape``: simulated AF and sinus with one fixed pulse shape and amplitude and an ideal
  sensor: only beat timing tells them apart;
- ``resequenced``: real pulses cut from each development recording (signals.resequence) and laid
  at sinus intervals with respiratory arrhythmia, sinus with isolated premature beats, and AF;
- each of those ``inverted`` and time-stretched ``x0.8`` / ``x1.25``;
- ``dev_recordings``: the development recordings themselves (healthy people: any AF call is false),
  also played hop by hop through the runtime's smoothing and the monitor's alarm onset: the AF
  alarms a bedside monitor would raise on them (any is false);
- probes of the shortcuts the 0.4.x model took: ``dev_at_95bpm`` (each recording played so its
  rate is 95 bpm) and ``sinus_hf_boost`` (simulated sinus with its > 3 Hz content tripled).

``run_suite`` returns a ``SuiteReport``: per case the windows scored, gated, and the share called
the positive label; ``targets`` checks the goals of docs/method.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from bridge_edge.checks.suite_report import VARIANTS, CaseResult, SuiteReport
from bridge_edge.signals import resequence
from bridge_edge.signals.dev_recordings import RealPPG, available_dev_recordings
from bridge_edge.signals.preprocess import (
    PreprocessSpec,
    filter_and_resample,
    normalise_windows,
    upright_windows,
    window_beats,
)

CASE_SECONDS = 90.0


@dataclass(frozen=True)
class Case:
    group: str  # fixed_shape | resequenced | dev_recordings | probe
    rhythm: str  # sinus | ectopic | afib
    variant: str
    source: str
    signal: np.ndarray = field(repr=False)
    fs: float


# --- cases ---------------------------------------------------------------------------------


def fixed_shape_cases(seeds: range = range(8), fs: float = 125.0) -> list[Case]:
    """Simulated AF and sinus with one fixed pulse shape and amplitude, ideal sensor, no motion."""
    from bridge_edge.signals.simulator import PatientSimulator

    cases = []
    for seed in seeds:
        for rhythm, episode in (("afib", "afib"), ("sinus", "sinus")):
            sim = PatientSimulator(1000 + seed, fs_ppg=fs, script=[(episode, CASE_SECONDS)], sensor=False)
            sim.physiology = dataclasses.replace(  # motion_noise defaults to 0: a still subject
                sim.physiology, squeeze_strength=0.0, starling_strength=0.0, beat_shape_jitter=0.0
            )
            rec = sim.generate(CASE_SECONDS)
            cases.append(Case("fixed_shape", rhythm, "as_recorded", f"sim{1000 + seed}", rec.ppg, fs))
    return cases


def resequenced_cases(recordings: list[RealPPG], seed: int = 0) -> list[Case]:
    """Each recording's own pulses at sinus, sinus + ectopic and AF intervals."""
    cases = []
    for k, rec in enumerate(recordings):
        pulses = resequence.RealPulses.of(rec.source, rec.ppg, rec.fs_ppg)
        if pulses is None:  # a recording without clean pulses cannot be re-sequenced
            continue
        cycles = pulses.cycles
        rng = np.random.default_rng([seed, k])
        for rhythm, make, hr in (
            ("sinus", resequence.sinus_intervals, rng.uniform(55, 100)),
            ("ectopic", resequence.ectopic_intervals, rng.uniform(55, 100)),
            ("afib", resequence.af_intervals, rng.uniform(60, 130)),
        ):
            x = resequence.place_cycles(cycles, make(CASE_SECONDS, 60.0 / hr, rng), rec.fs_ppg)
            cases.append(Case("resequenced", rhythm, "as_recorded", rec.source, x, rec.fs_ppg))
    return cases


def with_variants(cases: list[Case]) -> list[Case]:
    """Each case also inverted, and played at 0.8x and 1.25x its speed."""
    out = list(cases)
    for c in cases:
        for name, v in VARIANTS.items():
            if name == "as_recorded":
                continue
            if v < 0:
                out.append(dataclasses.replace(c, variant=name, signal=-c.signal))
            else:
                out.append(dataclasses.replace(c, variant=name, fs=c.fs * v))
    return out


def dev_recording_cases(recordings: list[RealPPG]) -> list[Case]:
    cases = [Case("dev_recordings", "sinus", "as_recorded", r.source, r.ppg, r.fs_ppg) for r in recordings]
    for r in recordings:  # the heart-rate shortcut probe: every recording at 95 bpm
        hr = _median_rate_bpm(r)
        if hr is not None:
            cases.append(Case("probe", "sinus", "dev_at_95bpm", r.source, r.ppg, r.fs_ppg * 95.0 / hr))
    return cases


def hf_boost_cases(seeds: range = range(4), fs: float = 125.0) -> list[Case]:
    """Simulated sinus with its > 3 Hz content tripled (the sensor-brightness shortcut probe)."""
    from bridge_edge.signals.simulator import PatientSimulator

    cases = []
    for seed in seeds:
        x = (
            PatientSimulator(2000 + seed, fs_ppg=fs, script=[("sinus", CASE_SECONDS)], sensor=False)
            .generate(CASE_SECONDS)
            .ppg
        )
        spectrum = np.fft.rfft(x)
        spectrum[np.fft.rfftfreq(len(x), 1 / fs) > 3.0] *= 3.0
        cases.append(
            Case("probe", "sinus", "sinus_hf_boost", f"sim{2000 + seed}", np.fft.irfft(spectrum, len(x)), fs)
        )
    return cases


def _median_rate_bpm(rec: RealPPG) -> float | None:
    try:
        cycles = resequence.cut_cycles(rec.ppg, rec.fs_ppg)
    except Exception:
        return None
    return 60.0 * rec.fs_ppg / float(np.median([len(c) for c in cycles])) if len(cycles) >= 4 else None


def all_cases(recordings: list[RealPPG] | None = None, quick: bool = False) -> list[Case]:
    recordings = available_dev_recordings() if recordings is None else recordings
    seeds = range(3) if quick else range(8)
    cases = with_variants(fixed_shape_cases(seeds) + resequenced_cases(recordings))
    return cases + dev_recording_cases(recordings) + hf_boost_cases(range(2) if quick else range(4))


# --- scoring -------------------------------------------------------------------------------


def case_windows(
    case: Case, spec: PreprocessSpec, window_s: float, hop_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(band-passed windows, SQI-gated mask) of a case, cut as the runtime cuts them: the model-rate
    signal from ``filter_and_resample``, windows on the hop grid, warm-up windows dropped. Window
    i ends at ``first_window_end_s + i * hop_s``."""
    from bridge_edge.signals.quality import LOW_SQI, window_sqi

    y = filter_and_resample(case.signal, case.fs, spec)
    width, hop = round(window_s * spec.fs_out), round(hop_s * spec.fs_out)
    first = round(first_window_end_s(case.fs, spec, window_s, hop_s) * spec.fs_out) - width
    starts = np.arange(first, len(y) - width + 1, hop)
    raw = np.stack([y[s : s + width] for s in starts]) if len(starts) else np.zeros((0, width))
    raw = upright_windows(raw, spec)  # as the runtime: beats and SQI read upright pulses
    beats = window_beats(raw, spec)
    sqi = window_sqi(raw, spec.fs_out, "ppg", beats=beats) if len(raw) else np.zeros(0)
    return raw, sqi < LOW_SQI


def first_window_end_s(fs_in: float, spec: PreprocessSpec, window_s: float, hop_s: float) -> float:
    """Where ``case_windows``' first window ends: the first hop after the filter warm-up."""
    from bridge_edge.runtime.stream_dsp import warmup_seconds

    hop = round(hop_s * spec.fs_out)
    first = int(np.ceil(warmup_seconds(spec, fs_in) * spec.fs_out / hop)) * hop
    return (first + round(window_s * spec.fs_out)) / spec.fs_out


def run_suite(
    bundle, engine: str = "ort", precision: str = "auto", quick: bool = False, cases=None
) -> SuiteReport:
    """Score every case through ``bundle`` (a loaded bundle) on a runtime engine, with the
    runtime's regular-rhythm rule (signals.regular_rhythm) where it applies; the model's own calls
    are kept beside them (``CaseResult.model_called``)."""
    from bridge_edge.monitor.alarms import rhythm_alarm_onsets
    from bridge_edge.runtime.engines import select_engine
    from bridge_edge.runtime.stream import ModelInput
    from bridge_edge.signals.regular_rhythm import RegularRhythmRule

    model = ModelInput.from_manifest(bundle.manifest)
    chosen = select_engine(engine, bundle, precision=precision).engine
    positive = model.labels.index(model.positive_label)
    rule = RegularRhythmRule.for_model(model.labels, model.modality)

    last: dict = {}  # score_cases hands a recording's windows to every call: infer them once

    def inferred(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the model's probabilities, what the runtime shows: them after the regular-rhythm rule)."""
        if last.get("windows") is not windows:
            beats = window_beats(windows, model.preprocess)  # once, for the model input and the rule
            probs = chosen.infer(normalise_windows(windows, model.preprocess, beats))
            shown = probs
            if rule is not None and len(windows):
                fired = rule.fires(beats, model.fs)
                shown = rule.apply(probs, model.labels, fired)
            last.update(windows=windows, both=(probs, shown))
        return last["both"]

    def af_alarms(windows: np.ndarray, end_s: np.ndarray) -> int:
        return len(rhythm_alarm_onsets(inferred(windows)[1], end_s, model.labels))

    results = score_cases(
        all_cases(quick=quick) if cases is None else cases,
        lambda windows: inferred(windows)[1].argmax(axis=1) == positive,
        model.preprocess,
        window_s=model.window_len / model.fs,
        hop_s=model.hop_len / model.fs,
        af_alarms=af_alarms,
        model_calls_af=None if rule is None else lambda w: inferred(w)[0].argmax(axis=1) == positive,
    )
    name = getattr(chosen, "name", engine)
    return SuiteReport(
        f"{bundle.name} {bundle.version}", name, getattr(chosen, "precision", precision), results
    )


def score_cases(
    cases,
    calls_af,
    spec: PreprocessSpec,
    *,
    window_s: float,
    hop_s: float,
    af_alarms=None,
    model_calls_af=None,
) -> list[CaseResult]:
    """``calls_af(band-passed windows) -> bool per window`` on every case's scored windows, with the
    pulse-timing baseline beside it where bridge_edge.signals.rr_timing exists. ``af_alarms(windows,
    end_s) -> int``, where given, counts the monitor's AF alarms over a development recording's
    scored hops in order; ``model_calls_af``, where given, the model's calls before the runtime's
    rules."""
    rr_calls = _rr_timing()
    results = []
    for case in cases:
        raw, gated = case_windows(case, spec, window_s, hop_s)
        keep = raw[~gated]
        called = int(np.sum(calls_af(keep))) if len(keep) else 0
        alarms = None
        if af_alarms is not None and case.group == "dev_recordings":
            end_s = first_window_end_s(case.fs, spec, window_s, hop_s) + hop_s * np.arange(len(raw))
            alarms = af_alarms(keep, end_s[~gated]) if len(keep) else 0
        rr_called = None
        if rr_calls is not None:
            rr_called = int(np.sum(rr_calls(keep, spec.fs_out))) if len(keep) else 0
        model_called = None
        if model_calls_af is not None:
            model_called = int(np.sum(model_calls_af(keep))) if len(keep) else 0
        results.append(
            CaseResult(
                case.group,
                case.rhythm,
                case.variant,
                case.source,
                len(raw),
                int(gated.sum()),
                called,
                rr_called,
                alarms,
                model_called,
            )
        )
    return results


def _rr_timing():
    """The pulse-timing AF call per window (signals.rr_timing): score at or above its threshold."""
    from bridge_edge.signals import rr_timing

    def calls(windows: np.ndarray, fs: float) -> np.ndarray:
        scores = rr_timing.rr_af_scores(windows, fs)
        return np.isfinite(scores) & (scores >= rr_timing.RR_AF_THRESHOLD.value)

    return calls
