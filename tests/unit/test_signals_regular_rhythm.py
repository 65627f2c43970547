"""The regular-rhythm rule: regular beats once isolated premature beats go rule AF out."""

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from bridge_edge.devices.replay import from_array
from bridge_edge.errors import DataError
from bridge_edge.runtime.engines import select_engine
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
from bridge_edge.signals.regular_rhythm import REGULAR_NN_CV, RegularRhythmRule, fit_max_nn_cv
from bridge_edge.signals.simulator import PatientSimulator

FS = 125.0
LABELS = ("sinus", "afib", "ectopy")


def beats_of(rr_s: np.ndarray) -> np.ndarray:
    return np.round(np.concatenate([[0.3], 0.3 + np.cumsum(rr_s)]) * FS).astype(np.int64)


def sinus_with_premature_beats(rng, n: int = 11, rr: float = 0.8) -> np.ndarray:
    """Sinus intervals with 2 % jitter; two premature beats (at 65 %) with compensatory pauses."""
    intervals = rr * (1 + 0.02 * rng.standard_normal(n))
    for k in (3, 7):
        intervals[k], intervals[k + 1] = 0.65 * rr, 1.35 * rr
    return intervals


def test_fires_on_sinus_with_isolated_premature_beats_and_not_on_af():
    rng = np.random.default_rng(0)
    rule = RegularRhythmRule()
    ectopy = [beats_of(sinus_with_premature_beats(rng)) for _ in range(20)]
    af = [beats_of(rng.uniform(0.45, 1.2, 12)) for _ in range(400)]  # irregularly irregular
    assert rule.fires(ectopy, FS).all()
    # taking out up to a third of the intervals leaves a few AF windows regular by chance
    assert rule.fires(af, FS).mean() < 0.03
    # premature beats alone are irregular: without taking them out, sinus + ectopy would not pass
    raw = np.diff(ectopy[0]) / FS
    assert raw.std() / raw.mean() > REGULAR_NN_CV


def test_too_few_beats_never_fire():
    assert not RegularRhythmRule().fires([np.array([0, 100, 200]), np.array([], np.int64)], FS).any()


def test_apply_moves_af_probability_to_sinus_only_where_it_fired():
    rule = RegularRhythmRule()
    probs = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1]], np.float32)
    out = rule.apply(probs, LABELS, np.array([True, False]))
    np.testing.assert_allclose(out[0], [0.9, 0.0, 0.1], atol=1e-7)
    np.testing.assert_array_equal(out[1], probs[1])
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    assert probs[0, 1] == np.float32(0.7)  # a new array: the model's output is kept as it was


def test_applies_only_to_ppg_models_with_both_labels():
    rule = RegularRhythmRule()
    assert rule.applies_to(LABELS, "ppg")
    assert not rule.applies_to(LABELS, "ecg")
    assert not rule.applies_to(("normal", "afib"), "ppg")
    assert RegularRhythmRule.for_model(LABELS, "ppg") == rule
    assert RegularRhythmRule.for_model(LABELS, "ecg") is None


def test_the_threshold_is_the_af_quantile_and_needs_af_windows():
    values = np.concatenate([np.linspace(0.05, 0.5, 1000), [np.nan] * 10])
    assert fit_max_nn_cv(values, 0.01) == pytest.approx(np.quantile(values[:1000], 0.01))
    with pytest.raises(DataError, match="no AF window"):
        fit_max_nn_cv(np.array([np.nan]))


def _run(bundle, ppg, rule: bool):
    preds = []

    class Listener:
        def on_prediction(self, p):
            preds.append(p)

    pipe = Pipeline(
        [from_array(ppg, FS, chunk_sizes=(64,))],
        bundle,
        config=PipelineConfig(lossless=True, sqi_policy="off", regular_rhythm_rule=rule),
    )
    pipe.add_listener(Listener())
    pipe.run_until_done(timeout_s=60)
    return [p for p in preds if p.probs is not None]


def test_the_pipeline_rules_af_out_on_regular_windows_and_says_so(tmp_path):
    bundle = make_tiny_bundle(tmp_path, fs=FS, window_s=10.0, hop_s=5.0, labels=LABELS, preprocess="ppg-v4")
    ppg = (
        PatientSimulator(5, fs_ppg=FS, script=[("sinus", 40.0), ("afib", 40.0)], sensor=False)
        .generate(80.0)
        .ppg
    )
    with_rule, without = _run(bundle, ppg, True), _run(bundle, ppg, False)
    assert [p.window_index for p in with_rule] == [p.window_index for p in without]
    moved = [a.probs["afib"] == 0.0 and b.probs["afib"] > 0.0 for a, b in zip(with_rule, without)]
    assert any(moved) and not all(moved)  # the regular sinus windows, not the AF ones
    for a, b, m in zip(with_rule, without, moved):
        assert not b.af_ruled_out
        if m:
            assert a.probs["sinus"] == pytest.approx(b.probs["sinus"] + b.probs["afib"], abs=1e-6)
        else:
            assert a.probs == pytest.approx(b.probs, abs=1e-7)
        # flagged exactly where the model's own call was AF and the rule overturned it
        assert a.af_ruled_out == (m and b.label == "afib")
        assert a.as_json()["af_ruled_out"] is a.af_ruled_out

    # the engine is the bundle's own ONNX Runtime session in both runs
    assert select_engine("ort", bundle).engine.name == "ort"


def test_only_the_af_calls_the_rule_overturns_are_flagged():
    from bridge_edge.runtime.stream import ModelInput
    from bridge_edge.runtime.window_reading import WindowReadings, rule_out_regular
    from bridge_edge.signals.preprocess import PreprocessSpec

    rng = np.random.default_rng(1)
    regular = beats_of(sinus_with_premature_beats(rng))
    irregular = beats_of(rng.uniform(0.45, 1.2, 12))
    beats = [regular, regular, irregular]
    readings = WindowReadings(
        windows=np.zeros((3, 10)),
        beats=beats,
        sqi=np.ones(3),
        sqi_cause=["pulse_quality"] * 3,
        hr_bpm=[None] * 3,
        rr_af=np.full(3, np.nan),
        af_ruled_out=np.zeros(3, dtype=bool),
    )
    model = ModelInput("ppg", FS, 1250, 625, ("ppg",), PreprocessSpec(), list(LABELS), "afib", "t", "0")
    probs = np.array([[0.3, 0.6, 0.1], [0.7, 0.2, 0.1], [0.2, 0.7, 0.1]], np.float32)
    shown = rule_out_regular(readings, RegularRhythmRule(), [0, 1, 2], probs, model)
    assert readings.af_ruled_out.tolist() == [True, False, False]  # overturned / moved only / not fired
    np.testing.assert_allclose(shown[:, 1], [0.0, 0.0, 0.7])
    assert rule_out_regular(readings, None, [0, 1, 2], probs, model) is probs
