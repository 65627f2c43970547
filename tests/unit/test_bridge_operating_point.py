"""The label-free operating point: the weight that matches the old model's calls, and the
composed model (and its ONNX graph) applying it."""

import numpy as np
import pytest

from bridge_edge.bridge.operating_point import (
    WEIGHT_RANGE,
    calls,
    choose,
    class_weights,
    weight_matching_calls,
)
from bridge_edge.errors import ConfigError


def _probs(n, k=3, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k) * 0.7, size=n)
    return p.astype(np.float32)


@pytest.mark.parametrize("positive", [0, 2])
def test_every_call_count_is_reached_exactly(positive):
    p = _probs(57)
    for target in range(len(p) + 1):
        w = weight_matching_calls(p, positive, target)
        assert WEIGHT_RANGE[0] <= w <= WEIGHT_RANGE[1]
        assert calls(p, positive, w) == target, target


def test_weight_grows_with_the_calls_asked_for():
    p = _probs(40, seed=3)
    weights = [weight_matching_calls(p, 1, t) for t in range(41)]
    assert all(a < b for a, b in zip(weights, weights[1:]))


def test_rows_that_give_the_positive_class_nothing_are_never_called():
    p = _probs(10, seed=4).astype(np.float64)
    p[:3, 1] = 0.0
    w = weight_matching_calls(p, 1, 10)  # 7 callable rows at most: the nearest reachable count
    assert calls(p, 1, w) == 7
    assert weight_matching_calls(np.zeros((0, 3)), 1, 0) == 1.0


def test_choose_matches_the_old_models_calls_without_a_label():
    labels = ["sinus", "afib", "other"]
    bridged = _probs(80, seed=5)
    old = _probs(80, seed=6)
    point = choose("old_model_calls", "afib", labels, bridged, old)
    assert point.old_model_calls == int(np.sum(old.argmax(1) == 1))
    assert point.bridged_calls == point.old_model_calls
    assert point.bridged_calls_as_trained == calls(bridged, 1)
    assert class_weights(point, labels) == [1.0, point.weight, 1.0]
    assert 0.1 <= point.weight <= 10  # two similar models: no warning (below)
    as_trained = choose("as_trained", "afib", labels, bridged, old)
    assert as_trained.weight == 1.0 and class_weights(as_trained, labels) is None
    assert as_trained.bridged_calls == as_trained.bridged_calls_as_trained


def test_a_weight_far_from_one_is_warned_about(caplog):
    labels = ["sinus", "afib", "other"]
    bridged = np.tile([0.9, 0.001, 0.099], (20, 1))  # the bridge all but never calls afib
    bridged[:, 1] += np.linspace(0, 1e-4, 20)
    old = np.tile([0.1, 0.8, 0.1], (20, 1))  # the old model calls it on every window
    with caplog.at_level("WARNING", logger="bridge_edge.bridge.operating_point"):
        point = choose("old_model_calls", "afib", labels, bridged, old)
    assert point.weight > 10 and point.bridged_calls == 20
    assert "reads afib differently from the old model" in caplog.text


torch = pytest.importorskip("torch")

from tiny_adapters import TinyNew, TinyOld, onnx_round_trip  # noqa: E402
from tiny_adapters import paired_data as _data  # noqa: E402

from bridge_edge.bridge.compose import compose  # noqa: E402
from bridge_edge.bridge.train import make_bridge  # noqa: E402


def _composed(class_weights=None):
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data(8)
    bridge = make_bridge(new, old, 0, 2, rank=2, prototypes=3, probe=(ppg[:2], ecg[:2]))
    with torch.no_grad():
        bridge.B.normal_()
    return compose(new, old, bridge, 0, 2, class_weights), ppg


def test_the_composed_model_reweights_and_renormalises(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    raw, ppg = _composed()
    weights = [1.0, 7.5, 0.5]
    weighted = compose(raw._new, raw._old, raw.bridge, 0, 2, weights)
    p = raw.predict_proba(ppg)
    expected = p * np.array(weights) / (p * np.array(weights)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weighted.predict_proba(ppg), expected, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        np.testing.assert_allclose(weighted(torch.from_numpy(ppg)).numpy(), expected, rtol=1e-5, atol=1e-7)
    assert "log_class_weights" not in weighted.state_dict()  # the spec carries them, not the weights file
    got = onnx_round_trip(weighted, ppg, tmp_path / "m.onnx")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weights", [[1.0, 2.0], [1.0, 0.0, 1.0], [1.0, float("nan"), 1.0]])
def test_weights_that_do_not_fit_the_head_are_refused(weights):
    with pytest.raises(ConfigError, match="one finite weight > 0 per label"):
        _composed(weights)
