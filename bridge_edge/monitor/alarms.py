"""Bedside alarm rules (IEC 60601-1-8 categories and priorities), as pure functions.

The standard defines priorities and signals, not triggers; the triggers here are ours:

- physiological: a rhythm label listed in ``AlarmRules.physiological`` (AF by default, medium
  priority "**") that has held for ``AlarmRules.onset_s`` (30 s). Suppressed while the bed
  has a technical alarm or the signal quality of the window the model saw is unacceptable: a
  classifier fed noise must not raise an arrhythmia.
- technical: the source disconnected, a lead is off (reported within the last
  ``stale_after_s``; an AD8232 keeps sending "!" while it is), a trace has had no samples for
  more than ``stale_after_s`` (2 s), a trace's signal quality is unacceptable.

The HR numeric follows the same rules: it is shown only while it is fresh and trustworthy
(``valid_heart_rate``), otherwise the page shows "---", never a stale value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from bridge_edge.signals.quality import LOW_SQI


class Priority(IntEnum):
    LOW = 1  # cyan, steady, "*", 1 beep
    MEDIUM = 2  # yellow, slow flash, "**", 3 beeps
    HIGH = 3  # red, fast flash, "***", 2 x 5 beeps


PHYSIOLOGICAL = "physiological"
TECHNICAL = "technical"


@dataclass(frozen=True)
class SQILevels:
    """Signal quality in [0, 1] mapped to the three zhao2018-style levels."""

    excellent: float = 0.8
    acceptable: float = LOW_SQI  # below this: "unacceptable" (the runtime's own gate)

    def level(self, sqi: float | None) -> str:
        if sqi is None:
            return "unknown"
        if sqi >= self.excellent:
            return "excellent"
        if sqi >= self.acceptable:
            return "acceptable"
        return "unacceptable"


@dataclass(frozen=True)
class AlarmRules:
    stale_after_s: float = 2.0
    hr_timeout_s: float = 6.0  # an HR older than this is blanked
    sqi: SQILevels = field(default_factory=SQILevels)
    # rhythm label -> (priority, text on the alarm bar)
    physiological: dict[str, tuple[Priority, str]] = field(
        default_factory=lambda: {"afib": (Priority.MEDIUM, "AF")}
    )
    # A rhythm alarm is raised once its label has held this long over scored windows (a gated
    # window neither starts nor breaks it). AF is an episode of at least 30 s; one window's
    # label alone is how a healthy patient gets an AF alarm (docs/monitor.md, "Alarm onset").
    onset_s: float = 30.0


@dataclass
class TraceStatus:
    name: str  # e.g. "ECG", "PPG"
    last_sample_at: float | None = None  # monotonic seconds of the newest sample's arrival
    sqi: float | None = None


@dataclass
class BedStatus:
    """What the alarm rules look at for one bed; updated by the monitor's pipeline listener."""

    name: str
    traces: list[TraceStatus]
    started_at: float  # monotonic seconds; a trace that never delivered is stale after that
    connected: bool = True
    lead_off_at: float | None = None  # monotonic seconds of the last lead-off report (AD8232 "!")
    label: str | None = None
    label_since: float | None = None  # monotonic seconds of the first scored window with this label
    probs: dict[str, float] = field(default_factory=dict)
    sqi: float | None = None  # quality of the window the model classified
    hr_bpm: float | None = None
    prediction_at: float | None = None  # monotonic seconds the last scored prediction arrived
    gated: str | None = None  # why the newest window was not scored (the bed shows "unscored")
    sqi_cause: str | None = None  # for gated "low_sqi": which gate factor (Prediction.sqi_cause)


@dataclass(frozen=True)
class Alarm:
    bed: int
    code: str  # stable identifier, e.g. "afib", "stale:ECG", "disconnect"
    category: str  # PHYSIOLOGICAL or TECHNICAL
    priority: Priority
    text: str  # what the alarm bar says, without the asterisks

    def to_json(self, bed_name: str) -> dict:
        return {
            "bed": self.bed,
            "bed_name": bed_name,
            "code": self.code,
            "category": self.category,
            "priority": self.priority.name.lower(),
            "marker": "*" * int(self.priority),
            "text": self.text,
        }


def technical_alarms(bed: int, status: BedStatus, now: float, rules: AlarmRules) -> list[Alarm]:
    alarms: list[Alarm] = []
    if not status.connected:
        alarms.append(Alarm(bed, "disconnect", TECHNICAL, Priority.MEDIUM, "SENSOR DISCONNECTED"))
    if status.lead_off_at is not None and now - status.lead_off_at <= rules.stale_after_s:
        alarms.append(Alarm(bed, "lead_off", TECHNICAL, Priority.MEDIUM, "LEAD OFF"))
    for trace in status.traces:
        last = trace.last_sample_at if trace.last_sample_at is not None else status.started_at
        if now - last > rules.stale_after_s:
            alarms.append(
                Alarm(bed, f"stale:{trace.name}", TECHNICAL, Priority.MEDIUM, f"{trace.name} NO SIGNAL")
            )
        elif rules.sqi.level(trace.sqi) == "unacceptable":
            alarms.append(
                Alarm(bed, f"sqi:{trace.name}", TECHNICAL, Priority.LOW, f"{trace.name} POOR SIGNAL")
            )
    return alarms


def physiological_alarms(
    bed: int, status: BedStatus, technical: list[Alarm], now: float, rules: AlarmRules
) -> list[Alarm]:
    rule = rules.physiological.get(status.label or "")
    if rule is None or rules.sqi.level(status.sqi) == "unacceptable":
        return []
    if alarm_onset_in(status, now, rules) > 0:
        return []
    if any(a.code in ("disconnect", "lead_off") or a.code.startswith("stale:") for a in technical):
        return []
    priority, text = rule
    return [Alarm(bed, status.label or "", PHYSIOLOGICAL, priority, text)]


def evaluate(bed: int, status: BedStatus, now: float, rules: AlarmRules) -> list[Alarm]:
    """All active alarms of one bed, highest priority first."""
    technical = technical_alarms(bed, status, now, rules)
    alarms = physiological_alarms(bed, status, technical, now, rules) + technical
    return sorted(alarms, key=lambda a: -a.priority)


def alarm_onset_in(status: BedStatus, now: float, rules: AlarmRules) -> float:
    """Seconds until the bed's label has held for ``rules.onset_s`` (0: it has)."""
    since = now if status.label_since is None else status.label_since
    return max(0.0, rules.onset_s - (now - since))


def valid_heart_rate(status: BedStatus, now: float, rules: AlarmRules, active: list[Alarm]) -> float | None:
    """The HR to show, or None ("---"): missing, old, from a poor window, or during a technical alarm."""
    if status.hr_bpm is None or status.prediction_at is None:
        return None
    if now - status.prediction_at > rules.hr_timeout_s:
        return None
    if rules.sqi.level(status.sqi) == "unacceptable":
        return None
    if any(a.category == TECHNICAL for a in active):
        return None
    return status.hr_bpm


def rhythm_alarm_onsets(
    probs: np.ndarray,
    end_s: np.ndarray,
    labels: list[str],
    rules: AlarmRules | None = None,
    smoothing_alpha: float | None = None,
) -> list[float]:
    """When a monitor raises a rhythm alarm over one stream's scored hops, in order: each hop's
    probabilities (N, K) through the runtime's smoothing, and an alarm each time a smoothed
    label listed in ``rules.physiological`` has held for ``rules.onset_s``. A gated hop is absent
    from ``probs``: it neither starts nor breaks a label, as in the runtime. Returns the onset
    times (seconds, from ``end_s``); offline replays (the rhythm suite, the probes) use it."""
    from bridge_edge.runtime.outputs import ProbabilitySmoother
    from bridge_edge.runtime.pipeline import PipelineConfig

    rules = rules or AlarmRules()
    alpha = PipelineConfig().smoothing_alpha if smoothing_alpha is None else smoothing_alpha
    smoother = ProbabilitySmoother(labels, alpha)
    onsets: list[float] = []
    label, since, raised = None, 0.0, False
    for p, now in zip(np.asarray(probs), np.asarray(end_s, dtype=float), strict=True):  # per hop
        smoothed = labels[int(np.argmax(smoother.update(0, p)))]
        if smoothed != label:
            label, since, raised = smoothed, float(now), False
        if label in rules.physiological and not raised and now - since >= rules.onset_s:
            onsets.append(float(now))
            raised = True
    return onsets
