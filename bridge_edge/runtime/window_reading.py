"""What the runtime reads from a batch of windows besides the model: each window's beats, SQI,
heart rate and pulse-timing score before the engine call, and after it whether the
regular-rhythm rule (signals.regular_rhythm) rules AF out. Arrays in, arrays out; the pipeline
does the gating, the engine call and the emitting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.runtime.stream import ModelInput
from bridge_edge.signals.beats import detect_beats, heart_rate_bpm
from bridge_edge.signals.preprocess import upright_windows
from bridge_edge.signals.quality import gate_factors, weakest_factor
from bridge_edge.signals.regular_rhythm import RegularRhythmRule
from bridge_edge.signals.rr_timing import rr_af_scores_from_beats


@dataclass
class WindowReadings:
    windows: np.ndarray  # (N, L) band-passed; PPG turned upright as preprocessing turns it
    beats: list[np.ndarray]  # detected beat sample indices per window
    sqi: np.ndarray  # (N,) the gate's SQI (signals.quality.window_sqi)
    sqi_cause: list[str]  # per window, the gate factor that pulled its SQI down most
    hr_bpm: list[float | None]
    rr_af: np.ndarray  # (N,) pulse-timing AF score, NaN where not computable
    af_ruled_out: np.ndarray  # (N,) bool: the regular-rhythm rule overturned the model's AF call

    def at(self, i: int) -> WindowReading:
        return WindowReading(
            float(self.sqi[i]),
            self.sqi_cause[i],
            self.hr_bpm[i],
            float(self.rr_af[i]),
            bool(self.af_ruled_out[i]),
        )


@dataclass(frozen=True)
class WindowReading:
    """One window's readings, as a prediction reports them."""

    sqi: float
    sqi_cause: str  # signals.quality.GATE_FACTORS name: why a gated window scored low
    hr_bpm: float | None
    rr_af: float  # NaN where not computable
    af_ruled_out: bool


def read_windows(values: np.ndarray, model: ModelInput) -> WindowReadings:
    """Beats (upright pulses for PPG), SQI, heart rate and pulse-timing score of each window."""
    raw = upright_windows(values, model.preprocess) if model.modality == "ppg" else values
    search_back = model.preprocess.search_back
    beats = [detect_beats(w, model.fs, model.modality, search_back) for w in raw]  # per window
    factors = gate_factors(raw, model.fs, model.modality, beats=beats)
    sqi = factors.prod(axis=1)
    return WindowReadings(
        windows=raw,
        beats=beats,
        sqi=sqi,
        sqi_cause=weakest_factor(factors, model.modality),
        hr_bpm=[heart_rate_bpm(b, model.fs) for b in beats],
        rr_af=rr_af_scores_from_beats(beats, raw, model.fs, sqi),
        af_ruled_out=np.zeros(len(raw), dtype=bool),
    )


def rule_out_regular(
    readings: WindowReadings,
    rule: RegularRhythmRule | None,
    run: list[int],
    probs: np.ndarray,
    model: ModelInput,
) -> np.ndarray:
    """``probs`` of the windows ``run`` after ``rule`` (None: unchanged). The rule moves the AF
    probability of every window it fires on; ``af_ruled_out`` marks those the model called AF,
    the calls it overturned (elsewhere it moved a probability that decided nothing)."""
    if rule is None or not run:
        return probs
    fired = rule.fires([readings.beats[i] for i in run], model.fs)
    called_af = probs.argmax(axis=1) == list(model.labels).index(rule.from_label)
    readings.af_ruled_out[run] = fired & called_af
    return rule.apply(probs, model.labels, fired)
