"""What the pipeline emits per hop, and the smoothing of class probabilities over hops."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class StreamRef:
    index: int
    name: str


@dataclass(frozen=True)
class LatencyMs:
    preprocess: float  # DSP + cut + SQI + normalise for this hop's windows
    infer: float  # the engine call that included this window
    total: float  # arrival of the window's last sample -> prediction emitted


@dataclass(frozen=True)
class Prediction:
    """One model output with its provenance. ``label``/``probs`` are None when not inferred
    (window gated by low SQI or skipped for a gap); ``smoothed_label`` follows the smoother."""

    stream: StreamRef
    window_index: int
    t_start: float  # unix s of the window's first sample
    t_end: float  # unix s of the window's last sample
    label: str | None
    probs: dict[str, float] | None
    smoothed_label: str | None
    smoothed_probs: dict[str, float] | None
    sqi: float
    hr_bpm: float | None
    latency_ms: LatencyMs
    dropped_samples: int  # input samples missing inside this window (gaps, ring overwrites)
    gap: bool
    gated: str | None  # why no model call was made ("warmup", "gap", "low_sqi", "nonfinite"), else None
    engine: str
    precision: str
    bundle_name: str
    bundle_version: str
    # pulse-timing AF score of the same window (signals.rr_timing; AF at >= its threshold), beside
    # the model's probabilities, not an alarm; None when not computable (low SQI, too few beats)
    rr_af_score: float | None = None
    # the regular-rhythm rule (signals.regular_rhythm) overturned the model's AF call: the beats
    # are regular once isolated premature beats are taken out, so ``probs`` carry its AF
    # probability as sinus. (The rule moves that probability wherever it fires; this marks only
    # the windows whose call it changed.)
    af_ruled_out: bool = False
    # a window gated "low_sqi": the gate factor that pulled its SQI down most
    # (signals.quality.GATE_FACTORS: "pulse_quality", "motion", "lost_pulse"; "ecg_quality"), so a
    # monitor can say why it shows no rhythm; None for every other window
    sqi_cause: str | None = None

    def as_json(self) -> dict:
        """A plain dict whose non-finite floats are None (``strict_json`` prints it)."""
        d = asdict(self)
        d["stream"] = self.stream.name
        d["stream_index"] = self.stream.index
        return finite_or_none(d)


def finite_or_none(value):
    """``value`` with every NaN/±inf float (nested in dicts, lists, numpy scalars) as None."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def strict_json(value) -> str:
    """One line of strict JSON (RFC 8259): non-finite numbers become null, never NaN/Infinity."""
    return json.dumps(finite_or_none(value), allow_nan=False)


class ProbabilitySmoother:
    """Exponential moving average of class probabilities over hops, per stream.

    ``alpha`` is the weight of the newest hop (1.0 = no smoothing). Gated hops leave it as is.
    """

    def __init__(self, labels: list[str], alpha: float = 0.5) -> None:
        self.labels = labels
        self.alpha = alpha
        self._state: dict[int, np.ndarray] = {}

    def reset(self, stream_index: int) -> None:
        """Forget a stream's history (after non-finite input: nothing carries across it)."""
        self._state.pop(stream_index, None)

    def update(self, stream_index: int, probs: np.ndarray | None) -> np.ndarray | None:
        prev = self._state.get(stream_index)
        if probs is None:
            return prev
        new = probs if prev is None else self.alpha * probs + (1 - self.alpha) * prev
        self._state[stream_index] = new
        return new
