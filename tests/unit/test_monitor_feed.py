"""MonitorFeed: pipeline hooks -> frames and JSON (with a recording stand-in for the server)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from bridge_edge.devices.base import Chunk, StreamInfo
from bridge_edge.monitor.alarms import AlarmRules
from bridge_edge.monitor.feed import MonitorFeed, SampleTimeline, TraceHistory, trace_configs
from bridge_edge.monitor.frames import decode_block


class RecordingServer:
    def __init__(self):
        self.blocks, self.messages = [], []

    def send_block(self, frame):
        self.blocks.append(decode_block(frame))

    def send_json(self, message, keep=None):
        self.messages.append(message)

    def stats(self):
        return {"clients": 0, "dropped_blocks": 0}


def scored(label: str, probs: dict, **fields) -> SimpleNamespace:
    """A scored hop of bed 0 as the pipeline emits it (a ``Prediction``'s fields the feed reads)."""
    hop = dict(
        stream=SimpleNamespace(index=0),
        t_end=1.0,
        label=label,
        smoothed_label=label,
        smoothed_probs=probs,
        sqi=0.9,
        hr_bpm=70.0,
        rr_af_score=None,
        af_ruled_out=False,
        gated=None,
        sqi_cause=None,
        dropped_samples=0,
        gap=False,
    )
    return SimpleNamespace(**(hop | fields))


def make_feed(units=("uV", "a.u."), fs=130.0, rules=None):
    """A feed whose alarms sound on the first window (the onset is tested on its own)."""
    server = RecordingServer()
    info = StreamInfo("polar", fs, ("ecg", "ppg"), units)
    feed = MonitorFeed(
        server, [info], provenance={"bundle_name": "b"}, rules=rules or AlarmRules(onset_s=0.0)
    )
    return server, feed


def test_traces_follow_clinical_conventions():
    ecg, ppg = trace_configs(StreamInfo("h10", 130.0, ("ecg", "ppg"), ("uV", "a.u.")))
    assert (ecg.kind, ecg.units, ecg.filter, ecg.scale) == ("ecg", "mV", "0.5-40 Hz", 1e-3)
    assert (ppg.kind, ppg.units, ppg.filter, ppg.scale) == ("ppg", "a.u.", "0.5-8 Hz", 1.0)
    (low_rate,) = trace_configs(StreamInfo("slow", 50.0, ("ecg",), ("mV",)))
    assert low_rate.filter == "0.5-22.5 Hz"  # capped below Nyquist


def test_chunks_become_one_frame_per_channel_in_millivolts():
    server, feed = make_feed()
    t = np.arange(130) / 130.0
    ecg_uv = 1000.0 * np.sin(2 * np.pi * 5 * t)  # 1 mV at 5 Hz, in the display band
    samples = np.stack([ecg_uv, np.cos(2 * np.pi * 1.2 * t)], axis=1).astype(np.float32)
    for _ in range(5):
        feed.on_chunk(0, None, Chunk(samples=samples, t_host_ns=time.monotonic_ns()))
    assert [(b.bed, b.channel) for b in server.blocks[:2]] == [(0, 0), (0, 1)]
    ecg_blocks = np.concatenate([b.samples for b in server.blocks if b.channel == 0])
    assert 0.8 < np.abs(ecg_blocks[-130:]).max() < 1.2  # mV after the band-pass settles


def test_sample_timeline_is_continuous_and_reanchors_on_gaps():
    timeline = SampleTimeline(100.0)
    t0 = timeline.first_sample_time(10, int(10.09e9), 0)
    assert abs(t0 - 10.0) < 1e-9
    t1 = timeline.first_sample_time(10, int(10.19e9 + 3e6), 0)  # 3 ms arrival jitter
    assert abs(t1 - 10.1) < 1e-4  # continues the sample count (slews only 1 %)
    t2 = timeline.first_sample_time(10, int(20.09e9), 500)  # a gap: re-anchor on arrival
    assert abs(t2 - 20.0) < 1e-9


def test_trace_history_keeps_the_newest_window_in_order():
    h = TraceHistory(fs=10.0, seconds=1.0)
    h.push(np.arange(7, dtype=np.float32), t_end=0.6)
    assert h.full_window() is None
    h.push(np.arange(7, 15, dtype=np.float32), t_end=1.4)
    assert np.array_equal(h.full_window(), np.arange(5, 15))


def test_predictions_events_and_alarms_reach_the_status():
    _server, feed = make_feed(units=("mV", "a.u."))
    feed.on_chunk(0, None, Chunk(samples=np.zeros((13, 2), np.float32), t_host_ns=time.monotonic_ns()))
    # pulse timing not computable (NaN): shown as None, never NaN
    feed.on_prediction(scored("afib", {"sinus": 0.2, "afib": 0.8}, hr_bpm=88.4, rr_af_score=float("nan")))
    status = feed.snapshot(time.monotonic())["beds"][0]
    assert status["label"] == "afib" and status["hr_bpm"] == 88 and status["timing_score"] is None
    assert [a["code"] for a in status["alarms"]] == ["afib"]
    feed.on_event(0, {"kind": "disconnect"})
    status = feed.snapshot(time.monotonic())["beds"][0]
    assert [a["code"] for a in status["alarms"]] == ["disconnect"]  # AF suppressed, HR blanked
    assert status["hr_bpm"] is None
    feed.on_event(0, {"kind": "reconnect"})
    assert "disconnect" not in [a["code"] for a in feed.snapshot(time.monotonic())["beds"][0]["alarms"]]


def test_an_irregular_pulse_timing_is_shown_but_never_alarms():
    server, feed = make_feed(units=("mV", "a.u."))
    feed.on_prediction(scored("sinus", {"sinus": 0.9, "afib": 0.1}, rr_af_score=0.3))
    status = feed.snapshot(time.monotonic())["beds"][0]
    assert status["timing_score"] == 0.3 and status["alarms"] == []
    assert feed.config["timing_threshold"] > 0
    assert status["af_ruled_out"] is False and server.messages[-1]["af_ruled_out"] is False


def test_a_window_the_regular_rhythm_rule_changed_is_marked_on_the_bed():
    server, feed = make_feed(units=("mV", "a.u."))
    feed.on_prediction(scored("sinus", {"sinus": 1.0, "afib": 0.0}, rr_af_score=0.05, af_ruled_out=True))
    status = feed.snapshot(time.monotonic())["beds"][0]
    assert status["af_ruled_out"] is True and status["alarms"] == []
    assert server.messages[-1]["type"] == "prediction" and server.messages[-1]["af_ruled_out"] is True


def test_trace_sqi_flags_a_noisy_trace_and_beats_are_sent_once():
    server, feed = make_feed(units=("mV", "a.u."), fs=125.0)
    rng = np.random.default_rng(0)
    t = np.arange(125 * 12) / 125.0
    phase = (t * 1.2) % 1.0
    clean_ppg = np.exp(-(((phase - 0.3) / 0.1) ** 2)) + 0.3 * np.exp(-(((phase - 0.6) / 0.08) ** 2))
    noise_ecg = rng.standard_normal(t.size)
    samples = np.stack([noise_ecg, clean_ppg], axis=1).astype(np.float32)
    feed.on_chunk(0, None, Chunk(samples=samples, t_host_ns=time.monotonic_ns()))
    feed.analyse_traces()
    ecg, ppg = feed.snapshot(time.monotonic())["beds"][0]["traces"]
    assert ecg["sqi_level"] == "unacceptable"
    assert ppg["sqi_level"] != "unacceptable"
    # the clean pleth's beats go to the page as times, 60 / 72 bpm apart
    (beats,) = [m for m in server.messages if m["type"] == "beats" and m["channel"] == 1]
    assert len(beats["times"]) >= 8
    assert np.allclose(np.diff(beats["times"]), 1 / 1.2, atol=0.02)
    feed.analyse_traces()  # nothing new arrived: no beat is sent twice
    assert len([m for m in server.messages if m["type"] == "beats" and m["channel"] == 1]) == 1


def test_a_gated_window_leaves_the_af_alarm_standing_and_shows_the_bed_unscored():
    _server, feed = make_feed(units=("mV", "a.u."))
    feed.on_chunk(0, None, Chunk(samples=np.zeros((13, 2), np.float32), t_host_ns=time.monotonic_ns()))

    def pred(gated, label, sqi):
        probs = None if gated else {"sinus": 0.1, "afib": 0.9}
        return SimpleNamespace(
            stream=SimpleNamespace(index=0),
            t_end=1.0,
            label=label,
            smoothed_label=label,
            smoothed_probs=probs,
            sqi=sqi,
            hr_bpm=90.0,
            rr_af_score=None if gated else 0.2,
            af_ruled_out=False,
            gated=gated,
            sqi_cause="lost_pulse" if gated == "low_sqi" else None,
            dropped_samples=1 if gated else 0,
            gap=bool(gated),
        )

    feed.on_prediction(pred(None, "afib", 0.9))
    assert [a["code"] for a in feed.snapshot(time.monotonic())["beds"][0]["alarms"]] == ["afib"]
    feed.on_prediction(pred("nonfinite", None, 0.0))  # NaN in the window: no label, a poor SQI
    bed = feed.snapshot(time.monotonic())["beds"][0]
    assert [a["code"] for a in bed["alarms"]] == ["afib"]  # not cleared by data the model never saw
    assert bed["scored"] is False and bed["gated"] == "nonfinite" and bed["label"] == "afib"
    assert bed["sqi_cause"] is None
    feed.on_prediction(pred("low_sqi", None, 0.2))  # a lost pulse: the bed says which gate
    bed = feed.snapshot(time.monotonic())["beds"][0]
    assert [a["code"] for a in bed["alarms"]] == ["afib"]
    assert (bed["gated"], bed["sqi_cause"], bed["label"]) == ("low_sqi", "lost_pulse", "afib")
    feed.on_prediction(pred(None, "sinus", 0.9))  # scored again: the model's word counts
    bed = feed.snapshot(time.monotonic())["beds"][0]
    assert bed["scored"] is True and bed["alarms"] == []


def test_the_af_alarm_sounds_only_once_the_label_has_held_for_the_onset():
    """A healthy patient's one false-AF window must not sound an alarm: the default rules wait
    30 s of scored AF; gated windows neither start nor break the wait, another label restarts it."""
    _server, feed = make_feed(units=("mV", "a.u."), rules=AlarmRules(stale_after_s=600.0))
    feed.on_chunk(0, None, Chunk(samples=np.zeros((13, 2), np.float32), t_host_ns=time.monotonic_ns()))

    def pred(label, gated=None):
        return SimpleNamespace(
            stream=SimpleNamespace(index=0), t_end=1.0, label=label, smoothed_label=label,
            smoothed_probs=None if gated else {"sinus": 0.1, "afib": 0.9}, sqi=0.9, hr_bpm=90.0,
            rr_af_score=None, af_ruled_out=False, gated=gated, sqi_cause=None, dropped_samples=0,
            gap=False,
        )  # fmt: skip

    def bed(after_s):
        return feed.snapshot(time.monotonic() + after_s)["beds"][0]

    feed.on_prediction(pred("afib"))
    assert bed(0)["alarms"] == [] and 29 <= bed(0)["alarm_in_s"] <= 30
    assert [a["code"] for a in bed(31)["alarms"]] == ["afib"] and bed(31)["alarm_in_s"] == 0
    feed.on_prediction(pred(None, gated="nonfinite"))  # no label: the wait goes on
    assert [a["code"] for a in bed(31)["alarms"]] == ["afib"]
    feed.on_prediction(pred("sinus"))
    assert bed(31)["alarms"] == [] and bed(31)["alarm_in_s"] is None  # sinus has no alarm
    feed.on_prediction(pred("afib"))  # a new episode waits again
    assert bed(0)["alarms"] == [] and bed(0)["alarm_in_s"] > 29
