"""Runtime bench entry points and known-answer checks return complete, consistent results."""

import importlib.util

import numpy as np
import pytest

from bridge_edge.bench import runtime_pipeline as bench
from bridge_edge.checks import known_answers as evaluate
from bridge_edge.runtime.engines import trt as trt_engine

pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")


def test_ingest_throughput_counts_every_sample_and_window():
    r = bench.ingest_throughput(fs=250.0, chunk=32, seconds=40.0)
    assert r.samples == 10_000 and r.samples_per_s > 0
    # 40 s at 125 Hz model rate, 10 s windows every 2 s
    assert r.windows == (40 * 125 - 1250) // 250 + 1


def test_pipeline_latency_splits_a_hops_time_by_stage(tmp_path):
    """The split (streaming DSP, wait for the engine, engine call) comes from the pipeline's own
    stage timer, per hop, on a real ORT session."""
    from tiny_bundle import make_tiny_bundle

    b = make_tiny_bundle(tmp_path, window_s=4.0, hop_s=2.0)
    r = bench.pipeline_latency(
        b, engine="ort", precision="fp32", streams=2, seconds=16.0, speed=8.0, threads=1
    )
    s = r.split
    assert r.hops > 0 and (r.infer_p50_ms, r.infer_p99_ms) == (s.infer_p50_ms, s.infer_p99_ms)
    for p50, p99 in ((s.preprocess_p50_ms, s.preprocess_p99_ms), (s.wait_p50_ms, s.wait_p99_ms)):
        assert p50 is not None and 0 <= p50 <= p99
    assert s.infer_p50_ms > 0 and s.preprocess_p99_ms == r.preprocess_p99_ms


def test_heartpy_recordings_load_with_their_own_sampling_rate():
    if importlib.util.find_spec("heartpy") is None:
        pytest.skip("the heartpy package (which ships the real PPG recordings) is not installed")
    x, fs = evaluate.load_heartpy_ppg("data2.csv")
    assert len(x) == 15000 and 110 < fs < 125
    x3, fs3 = evaluate.load_heartpy_ppg("data3.csv")
    assert len(x3) > 60000 and 90 < fs3 < 110


def test_af_episode_check_scores_each_phase(tmp_path):
    from tiny_bundle import make_tiny_bundle

    b = make_tiny_bundle(tmp_path, window_s=4.0, hop_s=2.0)
    r = evaluate.af_episode_check(b, script=(("sinus", 20.0), ("afib", 20.0)), threads=1)
    assert [p.rhythm for p in r.phases] == ["sinus", "afib"]
    assert r.positive_label == "afib" and r.engine == "ort"
    n_windows = (40 * 125 - 500) // 250 + 1
    assert sum(p.hops + p.gated for p in r.phases) + r.straddling_hops == n_windows
    assert all(p.positive_fraction is None or 0 <= p.positive_fraction <= 1 for p in r.phases)
    # the pulse-timing baseline on the same hops: AF phase irregular, sinus phase not
    sinus, af = r.phases
    assert sinus.timing_positive_fraction is not None and sinus.timing_positive_fraction < 0.2
    assert af.timing_positive_fraction is not None and af.timing_positive_fraction > 0.5


class FakeRunner:
    """Stands in for runtime.engines.trt.TrtEngineRunner: records batch sizes, returns named outputs."""

    def __init__(self, trt, plan, memory):
        self.batches = []
        self.closed = False

    def run(self, x):
        self.batches.append(len(x))
        return {"probs": np.full((len(x), 3), 1 / 3, np.float32), "bridge": np.zeros((len(x), 4), np.float32)}

    def close(self):
        self.closed = True


def test_trt_engine_wraps_the_export_runner_and_splits_at_the_profile_batch(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tiny_bundle import make_tiny_bundle

    from bridge_edge.export import tensorrt as trt_export

    b = make_tiny_bundle(tmp_path, window_s=2.0, hop_s=1.0)
    built = SimpleNamespace(plan=b"plan", path=tmp_path / "x.engine", reason="cache hit")
    monkeypatch.setattr(trt_export, "build_or_load_engine", lambda *a, **k: built)
    monkeypatch.setattr(trt_engine, "TrtEngineRunner", FakeRunner)
    engine = trt_engine.TrtEngine(
        b, "fp32", trt_module=SimpleNamespace(__version__="10.3.0"), memory=object()
    )
    out = engine.infer(np.zeros((19, 250), np.float32))
    assert out.shape == (19, 3) and engine._runner.batches == [8, 8, 3]
    assert "cache hit" in engine.description
    engine.close()
    assert engine._runner.closed


def test_trt_engine_on_a_machine_with_tensorrt(tmp_path):
    reason = trt_engine.tensorrt_missing_reason()
    if reason is not None:
        pytest.skip(f"TensorRT cannot run here: {reason}")
    from tiny_bundle import make_tiny_bundle

    b = make_tiny_bundle(tmp_path, window_s=2.0, hop_s=1.0)
    engine = trt_engine.TrtEngine(b, "fp32")
    x = np.random.default_rng(0).standard_normal((3, 250)).astype(np.float32)
    from bridge_edge.runtime.engines.ort import OrtEngine

    np.testing.assert_allclose(
        engine.infer(x), OrtEngine(b.onnx_path(), "fp32", threads=1).infer(x), atol=1e-3
    )
