import numpy as np
import pytest

pytest.importorskip("sklearn")

from bridge_edge.bridge.data import WindowSet, _window_labels, map_labels
from bridge_edge.bridge.metrics import compute_metrics

HEAD = ("sinus", "avb", "paced", "afib", "bbb", "ventricular")
DATASET = ("sinus", "afib", "ectopy")


def test_dataset_labels_map_by_name_and_unknowns_are_minus_one():
    y = np.array([0, 1, 2, -1, 1])
    assert map_labels(y, DATASET, HEAD).tolist() == [0, 3, -1, -1, 3]


def test_window_labels_need_purity():
    rhythm = np.array([0] * 10 + [1] * 10 + [0] * 2 + [1] * 8)
    # windows of 10 samples starting at 0, 10, 5, 20 (fs = 1 Hz)
    lab = _window_labels(rhythm, 1.0, np.array([0.0, 10.0, 5.0, 20.0]), 10.0, 3, 0.8)
    assert lab.tolist() == [0, 1, -1, 1]


def test_metrics_on_head_vocabulary_with_exclusions():
    truth = np.array([0, 0, 0, 3, 3, 3, -1, -1])
    probs = np.full((8, 6), 0.01)
    probs[[0, 1], 0] = 0.9  # sinus right
    probs[2, 4] = 0.9  # sinus predicted as bbb: an error (not a truth class)
    probs[[3, 4, 5], 3] = [0.9, 0.8, 0.7]  # afib right
    probs[2, 3] = 0.5
    m = compute_metrics(probs, truth, HEAD, "afib")
    assert (m.n_windows, m.n_excluded) == (6, 2)
    assert m.accuracy == pytest.approx(5 / 6)
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 1) / 2)
    assert m.macro_f1 == pytest.approx((0.8 + 1.0) / 2)  # sinus P=1 R=2/3, afib P=R=1
    assert m.labels_scored == ["sinus", "afib"]
    assert m.positive_auroc == pytest.approx(1.0)  # afib scores of true afib > all others
    assert set(m.auroc) == {"sinus", "afib"}
    assert m.macro_auroc == pytest.approx(np.mean(list(m.auroc.values())))
    cm = np.array(m.confusion)
    assert cm.shape == (6, 6) and cm[0, 4] == 1 and cm[3, 3] == 3


def test_auroc_missing_when_only_one_class_present():
    m = compute_metrics(np.eye(6)[[0, 0]], np.array([0, 0]), HEAD, "afib")
    assert m.positive_auroc is None and m.auroc == {} and m.macro_auroc is None


def test_windowset_head_truth_and_subset():
    w = WindowSet(
        np.zeros((3, 4)),
        np.zeros((3, 2)),
        np.array([1, 2, 0]),
        np.array(["a", "b", "c"]),
        np.arange(3.0),
        DATASET,
    )
    assert w.head_truth(HEAD).tolist() == [3, -1, 0]
    assert len(w.subset(np.array([0, 2]))) == 2


def _subjects_with_scores(seed=0, n_subjects=8, per_subject=20):
    """Subjects with sinus/afib windows and a noisy AF score; every other subject has no AF."""
    rng = np.random.default_rng(seed)
    truth = np.concatenate(
        [np.where(rng.random(per_subject) < 0.5 * (s % 2), 3, 0) for s in range(n_subjects)]
    )
    subjects = np.repeat([f"s{s}" for s in range(n_subjects)], per_subject)
    probs = np.full((len(truth), 6), 0.05)
    probs[:, 3] = np.clip(0.5 * (truth == 3) + 0.25 + rng.normal(0, 0.2, len(truth)), 0, 1)
    probs[:, 0] = 1 - probs[:, 3]
    return probs, truth, subjects


def test_bootstrap_helpers_agree_with_sklearn():
    from sklearn.metrics import f1_score, roc_auc_score

    from bridge_edge.bridge.metrics import _auroc, _macro_f1

    probs, truth, _ = _subjects_with_scores()
    pred = probs.argmax(axis=1)
    assert _macro_f1(pred, truth, 6) == pytest.approx(
        f1_score(truth, pred, labels=np.unique(truth), average="macro", zero_division=0)
    )
    assert _auroc(truth == 3, probs[:, 3]) == pytest.approx(roc_auc_score(truth == 3, probs[:, 3]))
    assert np.isnan(_auroc(np.zeros(4, bool), np.arange(4.0)))


def test_subject_bootstrap_resamples_subjects_and_pairs_the_models():
    from bridge_edge.bridge.metrics import subject_bootstrap

    probs, truth, subjects = _subjects_with_scores()
    truth[:3] = -1  # excluded windows play no part
    perfect = np.eye(6)[np.maximum(truth, 0)]
    out = subject_bootstrap(
        {"noisy": probs, "perfect": perfect, "same": probs.copy()}, truth, subjects, HEAD, "afib", 300, seed=1
    )
    assert out["subjects"] == 8 and out["resamples"] == 300
    lo, hi = out["models"]["noisy"]["positive_auroc"]
    point = compute_metrics(probs, truth, HEAD, "afib").positive_auroc
    assert lo < point < hi and 0 <= lo < hi <= 1
    assert out["models"]["perfect"]["macro_f1"] == [1.0, 1.0]
    assert out["differences"]["noisy - same"]["positive_auroc"] == [0.0, 0.0]  # paired: same resamples
    assert out["differences"]["noisy - perfect"]["positive_auroc"][1] < 0
    # Half the subjects hold no AF: some resamples of 8 subjects have none, and are counted
    assert 0 < out["resamples_without_auroc"] < 300
    again = subject_bootstrap({"noisy": probs}, truth, subjects, HEAD, "afib", 300, seed=1)
    assert again["models"]["noisy"] == out["models"]["noisy"]  # seeded


def test_per_subject_scores_split_recall_and_the_rest_by_subject():
    from bridge_edge.bridge.metrics import per_subject_scores

    truth = np.array([3, 3, 0, 0, 0, 0, -1])
    subjects = np.array(["a", "a", "a", "b", "b", "b", "b"])
    probs = np.eye(6)[[3, 0, 0, 0, 3, 0, 0]]  # a: one of two AF found; b: one sinus called AF
    rows = per_subject_scores({"m": probs}, truth, subjects, HEAD, "afib")
    assert rows[0] == {
        "subject": "a",
        "windows": 3,
        "afib_windows": 2,
        "m": {"afib_recall": 0.5, "other_accuracy": 1.0},
    }
    assert rows[1]["windows"] == 3  # the excluded window is not scored
    assert rows[1]["m"] == {"afib_recall": None, "other_accuracy": pytest.approx(2 / 3)}


def test_window_sets_pool_only_with_one_vocabulary():
    from bridge_edge.errors import DataError

    def windows(n, labels):
        return WindowSet(
            np.zeros((n, 0)),
            np.zeros((n, 5)),
            np.zeros(n, np.int64),
            np.array(["s"] * n),
            np.zeros(n),
            labels,
        )

    pooled = WindowSet.concat([windows(2, DATASET), windows(3, DATASET)])
    assert len(pooled) == 5 and pooled.ppg.shape == (5, 5)
    with pytest.raises(DataError, match="vocabular"):
        WindowSet.concat([windows(2, DATASET), windows(1, ("sinus", "afib"))])


def test_numpy_metrics_agree_with_scikit_learn():
    """compute_metrics is numpy-only (the device side scores bundles without scikit-learn)."""
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    truth = rng.choice([0, 3, 5, -1], size=200, p=[0.4, 0.3, 0.2, 0.1])
    probs = rng.dirichlet(np.ones(6), size=200)
    probs[truth == 3, 3] += 0.3  # some signal, some errors
    m = compute_metrics(probs, truth, HEAD, "afib")
    y, pred = truth[truth >= 0], probs[truth >= 0].argmax(axis=1)
    present = np.unique(y)
    assert m.kappa == pytest.approx(sk.cohen_kappa_score(y, pred))
    assert m.macro_f1 == pytest.approx(sk.f1_score(y, pred, labels=present, average="macro", zero_division=0))
    assert m.weighted_f1 == pytest.approx(
        sk.f1_score(y, pred, labels=present, average="weighted", zero_division=0)
    )
    assert m.positive_auroc == pytest.approx(sk.roc_auc_score(y == 3, probs[truth >= 0][:, 3]))
    assert m.confusion == sk.confusion_matrix(y, pred, labels=np.arange(6)).tolist()
