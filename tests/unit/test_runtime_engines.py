"""Engine selection and the ONNX Runtime backend (real sessions on a tiny model)."""

import logging

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from bridge_edge.errors import ConfigError, EngineUnavailableError
from bridge_edge.runtime.engines import resolve_precision, select_engine
from bridge_edge.runtime.engines import trt as trt_module
from bridge_edge.runtime.engines.ort import OrtEngine, default_threads

pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"), window_s=2.0, hop_s=1.0)


def test_ort_engine_is_tuned_for_latency_and_returns_probabilities(bundle):
    engine = OrtEngine(bundle.onnx_path("fp32"), "fp32", threads=1)
    x = np.random.default_rng(0).standard_normal((5, 250)).astype(np.float32)
    probs = engine.infer(x)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    opts = engine._session.get_session_options()
    import onnxruntime as ort

    assert opts.intra_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert 1 <= default_threads()


def test_fixed_batch_model_is_run_window_by_window(tmp_path):
    fixed = make_tiny_bundle(tmp_path, window_s=2.0, hop_s=1.0, fixed_batch=1)
    free = make_tiny_bundle(tmp_path / "free", window_s=2.0, hop_s=1.0)
    x = np.random.default_rng(1).standard_normal((4, 250)).astype(np.float32)
    a = OrtEngine(fixed.onnx_path(), "fp32", threads=1).infer(x)
    b = OrtEngine(free.onnx_path(), "fp32", threads=1).infer(x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_auto_falls_back_to_ort_with_a_logged_reason(bundle, monkeypatch, caplog):
    monkeypatch.setattr(trt_module, "tensorrt_missing_reason", lambda: "no tensorrt in this test")
    with caplog.at_level(logging.INFO):
        choice = select_engine("auto", bundle, "auto", threads=1)
    assert choice.engine.name == "ort" and choice.engine.precision == "fp32"
    assert choice.fallbacks and "no tensorrt in this test" in choice.fallbacks[0]
    assert "falling back to onnxruntime" in caplog.text


def test_trt_by_name_fails_clearly_where_tensorrt_is_absent(bundle, monkeypatch):
    monkeypatch.setattr(trt_module, "tensorrt_missing_reason", lambda: "no tensorrt in this test")
    with pytest.raises(EngineUnavailableError) as err:
        select_engine("trt", bundle, "fp32")
    assert err.value.engine == "trt" and "no tensorrt" in str(err.value)


def test_torch_without_run_dir_falls_back_to_ort(bundle, caplog):
    choice = select_engine("torch", bundle, "fp32", threads=1)
    assert choice.engine.name == "ort"
    assert any("RUN_DIR" in f for f in choice.fallbacks)


def test_unknown_engine_and_missing_precision_are_config_errors(bundle):
    with pytest.raises(ConfigError):
        select_engine("tvm", bundle)
    with pytest.raises(ConfigError):
        resolve_precision("int8", ["fp32"])
    assert resolve_precision("auto", ["fp32", "fp16", "int8"]) == "int8"
    assert resolve_precision("auto", ["fp32"]) == "fp32"
