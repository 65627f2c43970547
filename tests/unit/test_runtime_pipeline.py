"""The pipeline end to end on in-memory sources and a tiny real ONNX model."""

import threading
import time

import numpy as np
import pytest
from counting_engine import counting_ort
from tiny_bundle import make_tiny_bundle

from bridge_edge.devices.replay import from_array
from bridge_edge.runtime.engines import EngineChoice
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
from bridge_edge.runtime.report import format_prediction, summary_lines
from bridge_edge.signals.preprocess import (
    PreprocessSpec,
    filter_and_resample,
    normalise_windows,
    preprocess_spec,
)
from bridge_edge.signals.simulator import PatientSimulator

pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")

FS = 125.0
WINDOW_S, HOP_S = 4.0, 1.0
L, H = int(FS * WINDOW_S), int(FS * HOP_S)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"), fs=FS, window_s=WINDOW_S, hop_s=HOP_S)


@pytest.fixture(scope="module")
def ppg():
    return PatientSimulator(3, fs_ppg=FS, script=[("sinus", 20.0), ("afib", 20.0)]).generate(40.0).ppg


class Recorder:
    def __init__(self):
        self.preds, self.events, self.chunks = [], [], 0

    def on_prediction(self, p):
        self.preds.append(p)

    def on_event(self, i, e):
        self.events.append((i, e))

    def on_chunk(self, i, info, chunk):
        self.chunks += 1


def run(sources, bundle, engine=None, **cfg):
    cfg.setdefault("lossless", True)
    cfg.setdefault("sqi_policy", "off")
    cfg.setdefault("regular_rhythm_rule", False)  # the model's own outputs (the rule has its own tests)
    cfg.setdefault("engine_batch", 64)  # whole gathered batches: these tests count engine calls
    engine = engine or counting_ort(bundle)
    pipe = Pipeline(sources, bundle, config=PipelineConfig(**cfg), engine_choice=EngineChoice(engine))
    rec = Recorder()
    pipe.add_listener(rec)
    stats = pipe.run_until_done(timeout_s=60)
    return rec, stats, engine


def test_predictions_equal_the_model_on_offline_preprocessed_windows(bundle, ppg):
    rec, stats, engine = run([from_array(ppg, FS, chunk_sizes=(7, 31, 64, 3))], bundle)
    y = filter_and_resample(ppg, FS, PreprocessSpec(fs_out=FS))
    starts = np.arange(0, len(y) - L + 1, H)
    expected = engine.inner.infer(
        normalise_windows(np.stack([y[s : s + L] for s in starts]), PreprocessSpec())
    )
    assert [p.window_index for p in rec.preds] == list(range(len(starts)))
    # windows starting while the filter rings (its first ~4 s) are not given to the model
    warm = [p.window_index for p in rec.preds if p.gated == "warmup"]
    assert warm == [0, 1, 2, 3] and stats.windows_skipped["warmup"] == 4
    got = np.array([[p.probs[k] for k in bundle.manifest.output.labels] for p in rec.preds[4:]])
    np.testing.assert_allclose(got, expected[4:], atol=1e-5)
    assert stats.hops == len(starts) and stats.dropped_samples == 0 and stats.overwrites == 0
    p = rec.preds[-1]
    assert p.engine == "ort" and p.bundle_version == "0.0.1" and p.stream.name == "array"
    assert p.t_end - p.t_start == pytest.approx((L - 1) / FS)
    assert all(a.t_end < b.t_end for a, b in zip(rec.preds, rec.preds[1:]))
    assert p.latency_ms.total >= p.latency_ms.infer >= 0
    assert {"t_end", "label", "probs", "sqi", "latency_ms", "dropped_samples", "gap"} <= set(p.as_json())
    assert rec.chunks > 0 and any(e["kind"] == "end" for _, e in rec.events)


@pytest.mark.parametrize("version", ["ppg-v3", "ppg-v4"])
def test_drawn_beat_stream_inputs_equal_the_offline_drawn_beats(tmp_path, ppg, version):
    """The stream draws the beats of each window it cuts exactly as training drew them (ppg-v4:
    on a recording where its search-back takes beats back in 7 windows)."""
    if version == "ppg-v4":
        ppg = PatientSimulator(10, fs_ppg=FS, script=[("sinus", 20.0), ("afib", 20.0)]).generate(40.0).ppg
    v3_bundle = make_tiny_bundle(tmp_path, fs=FS, window_s=WINDOW_S, hop_s=HOP_S, preprocess=version)
    rec, _, engine = run([from_array(ppg, FS, chunk_sizes=(5, 64, 17))], v3_bundle)
    spec = preprocess_spec(version, FS)
    y = filter_and_resample(ppg, FS, spec)
    windows = np.stack([y[s : s + L] for s in np.arange(0, len(y) - L + 1, H)])
    expected = engine.inner.infer(normalise_windows(windows, spec))
    got = np.array([[p.probs[k] for k in v3_bundle.manifest.output.labels] for p in rec.preds[4:]])
    np.testing.assert_allclose(got, expected[4 : 4 + len(got)], atol=1e-5)
    assert len(got) == len(windows) - 4
    assert not np.allclose(
        expected, engine.inner.infer(normalise_windows(windows, PreprocessSpec(fs_out=FS)))
    )
    if version == "ppg-v4":  # the beats searched back reach the model input
        v3 = normalise_windows(windows, preprocess_spec("ppg-v3", FS))
        assert not np.allclose(normalise_windows(windows, spec), v3)


@pytest.mark.parametrize("policy", ["flag", "skip"])
def test_windows_over_a_gap_are_flagged_or_skipped(bundle, ppg, policy):
    src = from_array(ppg, FS, chunk_sizes=(50,), gaps={40: 60})  # 60 samples missing at sample 2000
    rec, stats, _ = run([src], bundle, gap_policy=policy)
    gap_preds = [p for p in rec.preds if p.gap]
    # missing samples 2000..2060 overlap the windows [125 j, 125 j + 500) with j = 13..16
    assert [p.window_index for p in gap_preds] == [13, 14, 15, 16]
    assert all(p.dropped_samples == 60 for p in gap_preds)
    assert stats.streams[0].gap_samples == 60 and stats.dropped_samples == 60
    assert stats.streams[0].gaps == 1 and stats.streams[0].first_gap_t == stats.streams[0].last_gap_t
    assert next(e for _, e in rec.events if e["kind"] == "gap")["missing_samples"] == 60
    if policy == "skip":
        assert all(p.label is None and p.gated == "gap" for p in gap_preds)
        assert stats.windows_skipped["gap"] == 4
    else:
        assert all(p.label is not None for p in gap_preds)
    # the time axis includes the gap: one more window than without it
    assert len(rec.preds) == (len(ppg) + 60 - L) // H + 1


def test_faster_than_real_time_never_drops_silently(bundle, ppg):
    """A slow engine and a small ring: the reader is lapped, and every lost sample is counted."""
    src = from_array(np.tile(ppg, 2), FS, chunk_sizes=(200,))
    engine = counting_ort(bundle, delay_s=0.05)
    rec, stats, _ = run([src], bundle, engine=engine, lossless=False, ring_seconds=1.0)
    s = stats.streams[0]
    assert s.lost_samples > 0 and stats.dropped_samples == s.lost_samples
    assert s.ring_overwrites == s.lost_samples
    assert sum(p.dropped_samples > 0 for p in rec.preds) > 0
    # the time axis is kept: lost samples were filled, so the window count matches the input
    assert len(rec.preds) == (2 * len(ppg) - L) // H + 1


def test_streams_are_batched_into_one_engine_call(bundle, ppg):
    sources = [from_array(ppg, FS, chunk_sizes=(len(ppg),), name=f"s{i}") for i in range(3)]
    rec, _stats, engine = run(sources, bundle)
    n_windows = 3 * ((len(ppg) - L) // H + 1)
    assert len(rec.preds) == n_windows
    inferred = sum(p.label is not None for p in rec.preds)
    assert inferred == n_windows - 3 * 4  # all but each stream's warm-up windows
    assert sum(engine.batches) == inferred and len(engine.batches) < inferred
    assert {p.stream.index for p in rec.preds} == {0, 1, 2}


def test_one_engine_call_serves_windows_of_several_streams(bundle, ppg):
    sources = [from_array(ppg, FS, name=f"s{i}") for i in range(2)]
    engine = counting_ort(bundle)
    cfg = PipelineConfig(sqi_policy="off", engine_batch=64)
    pipe = Pipeline(sources, bundle, config=cfg, engine_choice=EngineChoice(engine))
    for st in pipe.streams:  # feed both streams by hand, then one inference pass
        for chunk in st.source:
            st.ingest(chunk)
    jobs = [job for st in pipe.streams for job in st.advance(pipe._timer) if not job.warmup]
    pipe._run_jobs(jobs)
    assert engine.batches == [len(jobs)] and {j.stream_index for j in jobs} == {0, 1}


def test_low_quality_windows_are_gated_before_the_model(bundle):
    x = np.zeros(int(FS * 16))  # finger off the sensor
    engine = counting_ort(bundle)
    rec, stats, _ = run([from_array(x, FS)], bundle, engine=engine, sqi_policy="skip")
    after_warmup = [p for p in rec.preds if p.gated != "warmup"]
    assert after_warmup and all(p.gated == "low_sqi" and p.label is None for p in after_warmup)
    assert all(p.sqi < 0.5 for p in after_warmup)
    assert engine.batches == [] and stats.windows_skipped["low_sqi"] == len(after_warmup)
    low = [e for _, e in rec.events if e["kind"] == "low_sqi"]
    assert low and all(e["cause"] == "pulse_quality" for e in low)  # no pulse at all, not motion
    assert {p.sqi_cause for p in after_warmup} == {"pulse_quality"}  # what a monitor shows
    assert stats.low_sqi_causes == {"pulse_quality": len(after_warmup)}  # and the run's summary
    assert "-- (low_sqi: pulse_quality)" in format_prediction(after_warmup[0])
    assert f"run: low-SQI windows by cause {{'pulse_quality': {len(after_warmup)}}}" in summary_lines(stats)
    assert {p.sqi_cause for p in rec.preds if p.gated == "warmup"} == {None}


def test_stop_ends_a_live_stream_cleanly(bundle, ppg):
    src = from_array(ppg, FS, speed=1.0)  # paced like a sensor
    pipe = Pipeline([src], bundle, config=PipelineConfig(), engine_choice=EngineChoice(counting_ort(bundle)))
    pipe.start()
    time.sleep(0.5)
    pipe.stop()
    assert src._closed
    assert not any(t.is_alive() for t in pipe._threads)
    assert threading.active_count() >= 1
    assert 0 < pipe.stats().streams[0].samples < len(ppg)


def test_the_pipeline_counts_its_heap_trims_and_makes_none_when_off(bundle, ppg, monkeypatch):
    from bridge_edge.runtime import pipeline as pipeline_module

    calls = []
    monkeypatch.setattr(pipeline_module, "release_free_memory", lambda: calls.append(1) or True)
    _, stats, _ = run([from_array(ppg, FS, chunk_sizes=(64,))], bundle, trim_every_s=1e-9)
    assert stats.memory_trims == len(calls) >= 1
    calls.clear()
    _, stats, _ = run([from_array(ppg, FS, chunk_sizes=(64,))], bundle, trim_every_s=0.0)
    assert stats.memory_trims == 0 and not calls
