"""Window-level classification metrics (METHOD §12), numpy + scikit-learn.

Predictions are probabilities over the *head's* vocabulary (e.g. openecg's 6 rhythm classes);
truths are indices into the same vocabulary, -1 where the dataset's label has no counterpart
in the head (those windows are excluded and counted, never silently dropped). Class-wise scores
(macro F1, balanced accuracy) run over the head labels that occur in the truth, so a prediction
of any other head class counts as an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Metrics:
    n_windows: int
    n_excluded: int
    accuracy: float
    balanced_accuracy: float
    kappa: float
    macro_f1: float
    weighted_f1: float
    auroc: dict[str, float]  # one-vs-rest per head label present in the truth with both classes
    positive_label: str
    positive_auroc: float | None
    labels_scored: list[str]
    confusion: list[list[int]] = field(default_factory=list)  # rows truth, cols prediction (head labels)
    confusion_labels: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def compute_metrics(
    probs: np.ndarray, truth: np.ndarray, labels: tuple[str, ...] | list[str], positive_label: str = "afib"
) -> Metrics:
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        roc_auc_score,
    )

    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    keep = truth >= 0
    p, y = probs[keep], truth[keep]
    pred = p.argmax(axis=1)
    present = np.unique(y)
    labels = list(labels)
    auroc = {}
    for k in present:
        is_k = y == k
        if is_k.any() and (~is_k).any():
            auroc[labels[k]] = float(roc_auc_score(is_k, p[:, k]))
    nan = float("nan")
    scored = len(y) > 0
    # balanced accuracy = mean recall over the truth classes (sklearn's version would also
    # average over head classes that were only predicted, never true)
    recalls = [float((pred[y == k] == k).mean()) for k in present]
    return Metrics(
        n_windows=len(y),
        n_excluded=int((~keep).sum()),
        accuracy=float(accuracy_score(y, pred)) if scored else nan,
        balanced_accuracy=float(np.mean(recalls)) if scored else nan,
        kappa=float(cohen_kappa_score(y, pred)) if scored and len(set(y) | set(pred)) > 1 else 0.0,
        macro_f1=float(f1_score(y, pred, labels=present, average="macro", zero_division=0))
        if scored
        else nan,
        weighted_f1=float(f1_score(y, pred, labels=present, average="weighted", zero_division=0))
        if scored
        else nan,
        auroc=auroc,
        positive_label=positive_label,
        positive_auroc=auroc.get(positive_label),
        labels_scored=[labels[k] for k in present],
        confusion=confusion_matrix(y, pred, labels=np.arange(len(labels))).tolist() if scored else [],
        confusion_labels=labels,
    )
