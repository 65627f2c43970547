"""Alarm rules: categories, priorities, SQI gating of physiological alarms, HR never stale."""

from __future__ import annotations

import numpy as np

from bridge_edge.monitor.alarms import (
    PHYSIOLOGICAL,
    TECHNICAL,
    AlarmRules,
    BedStatus,
    Priority,
    TraceStatus,
    alarm_onset_in,
    evaluate,
    rhythm_alarm_onsets,
    valid_heart_rate,
)

RULES = AlarmRules()


def healthy_bed(now: float, label: str = "sinus") -> BedStatus:
    return BedStatus(
        name="sim",
        traces=[
            TraceStatus("ECG", last_sample_at=now - 0.1, sqi=0.9),
            TraceStatus("PPG", last_sample_at=now - 0.1, sqi=0.9),
        ],
        started_at=now - 60,
        label=label,
        label_since=now - 60,  # the label has held for a minute: past the alarm onset
        probs={label: 0.9},
        sqi=0.9,
        hr_bpm=72.0,
        prediction_at=now - 0.5,
    )


def codes(alarms):
    return [a.code for a in alarms]


def test_quiet_bed_has_no_alarms_and_shows_hr():
    now = 1000.0
    bed = healthy_bed(now)
    active = evaluate(0, bed, now, RULES)
    assert active == []
    assert valid_heart_rate(bed, now, RULES, active) == 72.0


def test_af_is_a_medium_physiological_alarm():
    now = 1000.0
    active = evaluate(0, healthy_bed(now, "afib"), now, RULES)
    assert codes(active) == ["afib"]
    assert active[0].category == PHYSIOLOGICAL and active[0].priority == Priority.MEDIUM
    assert active[0].to_json("sim")["marker"] == "**"


def test_af_is_suppressed_while_the_model_window_is_unacceptable():
    now = 1000.0
    bed = healthy_bed(now, "afib")
    bed.sqi = 0.2
    active = evaluate(0, bed, now, RULES)
    assert "afib" not in codes(active)
    assert valid_heart_rate(bed, now, RULES, active) is None


def test_stale_stream_is_technical_blanks_hr_and_suppresses_af():
    now = 1000.0
    bed = healthy_bed(now, "afib")
    bed.traces[1].last_sample_at = now - 2.5  # > 2 s without samples
    active = evaluate(0, bed, now, RULES)
    assert codes(active) == ["stale:PPG"]
    assert active[0].category == TECHNICAL
    assert valid_heart_rate(bed, now, RULES, active) is None


def test_a_trace_that_never_delivered_goes_stale_after_start():
    now = 1000.0
    bed = healthy_bed(now)
    bed.traces[0].last_sample_at = None
    bed.started_at = now - 1.0
    assert evaluate(0, bed, now, RULES) == []
    assert codes(evaluate(0, bed, now + 1.5, RULES)) == ["stale:ECG"]


def test_disconnect_and_lead_off_are_technical():
    now = 1000.0
    bed = healthy_bed(now)
    bed.connected = False
    bed.lead_off_at = now - 0.5
    assert set(codes(evaluate(0, bed, now, RULES))) == {"disconnect", "lead_off"}
    bed.connected = True
    for trace in bed.traces:
        trace.last_sample_at = now + 2.0
    assert codes(evaluate(0, bed, now + 2.0, RULES)) == []  # no "!" for 2 s: the lead is back


def test_low_trace_sqi_is_a_low_priority_technical_alarm_and_blanks_hr():
    now = 1000.0
    bed = healthy_bed(now)
    bed.traces[0].sqi = 0.1
    active = evaluate(0, bed, now, RULES)
    assert codes(active) == ["sqi:ECG"] and active[0].priority == Priority.LOW
    assert valid_heart_rate(bed, now, RULES, active) is None


def test_hr_is_never_stale():
    now = 1000.0
    bed = healthy_bed(now)
    bed.prediction_at = now - RULES.hr_timeout_s - 0.1
    assert valid_heart_rate(bed, now, RULES, []) is None
    bed.prediction_at = now
    bed.hr_bpm = None  # no beats detected
    assert valid_heart_rate(bed, now, RULES, []) is None


def test_alarms_are_sorted_highest_priority_first():
    now = 1000.0
    bed = healthy_bed(now)
    bed.traces[0].sqi = 0.1  # low
    bed.connected = False  # medium
    active = evaluate(0, bed, now, RULES)
    assert [a.priority for a in active] == sorted((a.priority for a in active), reverse=True)


def test_af_alarms_only_once_the_label_has_held_for_the_onset():
    now = 1000.0
    bed = healthy_bed(now, "afib")
    bed.label_since = now - 10
    assert evaluate(0, bed, now, RULES) == [] and alarm_onset_in(bed, now, RULES) == 20.0
    bed.label_since = now - 30
    assert codes(evaluate(0, bed, now, RULES)) == ["afib"] and alarm_onset_in(bed, now, RULES) == 0
    bed.label_since = None  # never scored
    assert evaluate(0, bed, now, RULES) == []
    assert codes(evaluate(0, healthy_bed(now, "afib"), now, AlarmRules(onset_s=0.0))) == ["afib"]


def _hops(labels_per_hop: str) -> np.ndarray:
    """One-hot probabilities over (sinus, afib) from a string: 's' sinus, 'a' afib."""
    return np.array([[0.9, 0.1] if c == "s" else [0.1, 0.9] for c in labels_per_hop])


def test_a_held_af_label_raises_one_alarm_once_the_onset_has_passed():
    probs = _hops("ss" + "a" * 12 + "ss")  # AF from hop 2 (t = 10 s), every 5 s
    end_s = 10.0 + 5.0 * np.arange(len(probs))
    onsets = rhythm_alarm_onsets(probs, end_s, ["sinus", "afib"], smoothing_alpha=1.0)
    assert onsets == [20.0 + AlarmRules().onset_s]  # once, 30 s after the label turned afib


def test_single_af_hops_and_short_runs_raise_no_alarm_through_the_smoothing():
    probs = _hops("sssasssasaaassss" * 3)
    end_s = 10.0 + 5.0 * np.arange(len(probs))
    assert rhythm_alarm_onsets(probs, end_s, ["sinus", "afib"]) == []
    # the runtime's smoothing turns a single afib hop among sinus ones into no label change at all
    assert rhythm_alarm_onsets(_hops("sasasasasasasasasasa"), 5.0 * np.arange(20), ["sinus", "afib"]) == []


def test_a_gated_hop_neither_starts_nor_breaks_the_label():
    probs = _hops("a" * 8)
    end_s = np.array([0.0, 5.0, 10.0, 25.0, 30.0, 35.0, 40.0, 45.0])  # hops 15-20 s gated: absent
    assert rhythm_alarm_onsets(probs, end_s, ["sinus", "afib"], smoothing_alpha=1.0) == [30.0]
