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
    cm = np.array(m.confusion)
    assert cm.shape == (6, 6) and cm[0, 4] == 1 and cm[3, 3] == 3


def test_auroc_missing_when_only_one_class_present():
    m = compute_metrics(np.eye(6)[[0, 0]], np.array([0, 0]), HEAD, "afib")
    assert m.positive_auroc is None and m.auroc == {}


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
