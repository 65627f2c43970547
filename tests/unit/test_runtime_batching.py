"""Hop lag (sees an inference backlog) and cross-stream batching, through the engine interface.

The engines are real ONNX Runtime sessions on a tiny bundle, wrapped to count calls and batch
sizes (and, for the backlog test, to sleep before each call). Streams are paced replays.
No test asserts an upper bound on a wall-clock time: the backlog test's bound is the engine's
own sleep, which every inferred hop must have waited through.
"""

import time

import numpy as np
import pytest
from counting_engine import counting_ort
from tiny_bundle import make_tiny_bundle

from bridge_edge.devices.replay import from_array
from bridge_edge.errors import ConfigError
from bridge_edge.runtime.batching import BatchCollector
from bridge_edge.runtime.engines import EngineChoice
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
from bridge_edge.runtime.report import summary_lines
from bridge_edge.runtime.stream import WindowJob
from bridge_edge.runtime.windowing import Window
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, normalise_windows
from bridge_edge.signals.simulator import PatientSimulator

FS = 125.0
WINDOW_S, HOP_S = 4.0, 1.0
L, H = int(FS * WINDOW_S), int(FS * HOP_S)
WARMUP = 4  # windows starting while the filter rings (see test_runtime_pipeline)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"), fs=FS, window_s=WINDOW_S, hop_s=HOP_S)


@pytest.fixture(scope="module")
def ppg():
    return PatientSimulator(5, fs_ppg=FS, script=[("sinus", 10.0), ("afib", 10.0)]).generate(20.0).ppg


def run_paced(bundle, signals, engine, speed, batch_wait_s, stagger_s=0.0):
    sources = [
        from_array(
            x, FS, chunk_sizes=(5,), speed=speed, name=f"s{i}", start_delay_s=stagger_s * i / len(signals)
        )
        for i, x in enumerate(signals)
    ]
    # whole gathered batches in one call: these tests count calls (test_runtime_engine_batch
    # tests the call size measured on a CPU)
    cfg = PipelineConfig(sqi_policy="off", batch_wait_s=batch_wait_s, engine_batch=64)
    pipe = Pipeline(sources, bundle, config=cfg, engine_choice=EngineChoice(engine))
    preds = []
    pipe.add_listener(type("L", (), {"on_prediction": lambda self, p: preds.append(p)})())
    stats = pipe.run_until_done(timeout_s=120)
    return preds, stats


# --- the collector alone (explicit clocks) ------------------------------------------------------


def job(stream, arrival_ns, index=0):
    w = Window(index=index, out_end=4, values=np.zeros(4), source_last=0, gap=False, missing_samples=0)
    return WindowJob(stream, w, float(arrival_ns), arrival_ns, 0.0, False)


def test_collector_holds_windows_until_the_deadline_while_other_streams_are_due():
    c = BatchCollector.from_seconds(0.05)
    c.add([job(0, 1_000_000_000)])
    deadline = 1_050_000_000
    assert c.deadline_ns() == deadline
    # stream 1 is due 20 ms later, within the deadline: wait for it
    assert not c.due(1_001_000_000, [1_020_000_000])
    c.add([job(1, 1_020_000_000)])
    # nobody else is due before the deadline: run now, without waiting it out
    assert c.due(1_021_000_000, [1_900_000_000])
    # the deadline passed: run even if another stream is due soon after
    assert c.due(deadline, [deadline + 1])
    jobs = c.take()
    assert [j.stream_index for j in jobs] == [0, 1] and c.pending == 0 and c.deadline_ns() is None


def test_collector_never_holds_a_backlog_or_a_full_batch_and_zero_means_no_wait():
    backlog = BatchCollector.from_seconds(0.05)
    backlog.add([job(0, 0)])  # its last sample arrived long before "now"
    assert backlog.due(10**9, [10**9])
    full = BatchCollector.from_seconds(0.05, max_batch=2)
    full.add([job(0, 10**9), job(1, 10**9)])
    assert full.due(10**9, [10**9 + 1])
    off = BatchCollector.from_seconds(0.0)
    off.add([job(0, 10**9)])
    assert off.due(10**9, [10**9])
    with pytest.raises(ConfigError, match="expected a wait >= 0 s"):
        BatchCollector.from_seconds(-1.0)


# --- item 2: aligned hops share engine calls -----------------------------------------------------


def test_eight_streams_share_engine_calls_and_predict_as_one_at_a_time(bundle, ppg):
    signals = [np.roll(ppg, 250 * i) for i in range(8)]
    engine = counting_ort(bundle)
    # 4x real time: a hop every 250 ms; starts within 20 ms, the collection deadline 200 ms
    preds, stats = run_paced(bundle, signals, engine, speed=4.0, batch_wait_s=0.2, stagger_s=0.02)
    per_stream = (len(ppg) - L) // H + 1
    inferred = 8 * (per_stream - WARMUP)
    assert stats.hops == len(preds) == 8 * per_stream and stats.dropped_samples == 0
    assert stats.windows_skipped["warmup"] == 8 * WARMUP
    assert sum(engine.batches) == stats.inferred_windows == inferred
    assert len(engine.batches) == stats.infer_calls
    assert len(engine.batches) <= inferred // 2 and max(engine.batches) > 1  # ~N/B calls, not N
    labels = bundle.manifest.output.labels
    for i, x in enumerate(signals):
        mine = [p for p in preds if p.stream.index == i]
        assert [p.window_index for p in mine] == list(range(per_stream))  # per-stream order kept
        y = filter_and_resample(x, FS, PreprocessSpec(fs_out=FS))
        windows = normalise_windows(
            np.stack([y[s : s + L] for s in range(0, per_stream * H, H)]), PreprocessSpec()
        )
        one_at_a_time = np.concatenate([engine.inner.infer(w[None]) for w in windows[WARMUP:]])
        got = np.array([[p.probs[k] for k in labels] for p in mine[WARMUP:]])
        np.testing.assert_allclose(got, one_at_a_time, atol=1e-5)
        assert all(p.gated == "warmup" for p in mine[:WARMUP])


# --- item 1: hop lag sees an inference backlog ---------------------------------------------------


def test_hop_lag_grows_with_slow_inference_while_the_reader_lag_does_not(bundle, ppg):
    delay_s = 0.5  # each engine call sleeps this long: a hop (250 ms at 4x) cannot keep up
    engine = counting_ort(bundle, delay_s=delay_s)
    preds, stats = run_paced(bundle, [ppg], engine, speed=4.0, batch_wait_s=0.0)
    st = stats.streams[0]
    inferred = [p for p in preds if p.label is not None]
    assert inferred and len(inferred) == len(preds) - WARMUP
    # every inferred hop waited through at least one sleeping call before it was emitted
    assert all(p.latency_ms.total >= delay_s * 1e3 for p in inferred)
    assert st.hop_lag.n == len(preds) and st.hop_lag.p50_ms >= delay_s * 1e3
    assert stats.hop_lag.p50_ms == st.hop_lag.p50_ms  # one stream: pooled = its own
    # the old lag (now - newest sample when the reader ran) stays below the backlog it misses
    assert st.lag.p50_ms < st.hop_lag.p50_ms
    assert stats.latency["wait"].n == len(inferred)
    text = "\n".join(summary_lines(stats))
    assert "hop lag" in text and f"{stats.infer_calls} engine calls" in text


def test_windows_held_for_a_batch_are_still_emitted_when_the_pipeline_stops(bundle, ppg):
    """A deadline far beyond the run, and a third stream always about to complete a window (it
    is paced 40x slower than the others): every window is held; stop() must still emit them."""
    engine = counting_ort(bundle)
    sources = [
        from_array(np.roll(ppg, 100 * i), FS, chunk_sizes=(5,), speed=speed, name=f"s{i}")
        for i, speed in enumerate((4.0, 4.0, 0.1))
    ]
    cfg = PipelineConfig(sqi_policy="off", batch_wait_s=600.0, engine_batch=64)
    pipe = Pipeline(sources, bundle, config=cfg, engine_choice=EngineChoice(engine))
    preds = []
    pipe.add_listener(type("L", (), {"on_prediction": lambda self, p: preds.append(p)})())
    pipe.start()
    give_up = time.monotonic() + 90.0  # a generous bound for a loaded machine, not a timing check
    while pipe._collector.pending < 6 and time.monotonic() < give_up:  # some windows held
        time.sleep(0.05)
    held = pipe._collector.pending
    assert held >= 6
    pipe.stop()
    stats = pipe.stats()
    assert len(preds) >= held and stats.hops == len(preds)  # every held window was emitted
    assert {p.stream.index for p in preds} == {0, 1}  # the slow stream never completed a window
    for i in range(2):
        mine = [p.window_index for p in preds if p.stream.index == i]
        assert mine == list(range(len(mine)))  # nothing skipped inside a stream
    assert sum(engine.batches) == stats.inferred_windows and len(engine.batches) <= 1
