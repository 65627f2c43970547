"""Window-level classification metrics (docs/method.md), numpy only (the device side scores
bundles with them).

Predictions are probabilities over the *head's* vocabulary (e.g. openecg's 6 rhythm classes);
truths are indices into the same vocabulary, -1 where the dataset's label has no counterpart
in the head (those windows are excluded and counted, never silently dropped). Class-wise scores
(macro F1, balanced accuracy) run over the head labels that occur in the truth, so a prediction
of any other head class counts as an error.

AUROC vocabulary, the same in run reports, bundle manifests, `inspect`, `evaluate` and bench
(docs/architecture.md, "Metric names"):

- ``positive_auroc``: the positive label (afib) vs the rest, a float or None. What users read
  as "the AUROC"; every target and every printed "AF AUROC" is this one.
- ``auroc``: one-vs-rest per label, a dict label -> float (labels with both classes present).
- ``macro_auroc``: the mean of ``auroc`` over the labels present, a float or None.
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
    positive_auroc: float | None  # positive_label vs the rest
    macro_auroc: float | None  # mean of ``auroc``
    labels_scored: list[str]
    confusion: list[list[int]] = field(default_factory=list)  # rows truth, cols prediction (head labels)
    confusion_labels: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def compute_metrics(
    probs: np.ndarray, truth: np.ndarray, labels: tuple[str, ...] | list[str], positive_label: str
) -> Metrics:
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    keep = truth >= 0
    p, y = probs[keep], truth[keep]
    pred = p.argmax(axis=1)
    present = np.unique(y)
    labels = list(labels)
    auroc = {labels[k]: v for k, v in auroc_by_class(p, y, present).items()}
    nan = float("nan")
    scored = len(y) > 0
    cm = np.zeros((len(labels), len(labels)), np.int64)
    np.add.at(cm, (y, pred), 1)
    # balanced accuracy = mean recall over the truth classes (sklearn's version would also
    # average over head classes that were only predicted, never true)
    recalls = [float((pred[y == k] == k).mean()) for k in present]
    n_true = cm.sum(axis=1)[present]
    f1 = 2 * np.diag(cm)[present] / (n_true + cm.sum(axis=0)[present])  # n_true > 0: defined
    return Metrics(
        n_windows=len(y),
        n_excluded=int((~keep).sum()),
        accuracy=float((pred == y).mean()) if scored else nan,
        balanced_accuracy=float(np.mean(recalls)) if scored else nan,
        kappa=_kappa(cm) if scored else 0.0,
        macro_f1=float(f1.mean()) if scored else nan,
        weighted_f1=float((f1 * n_true).sum() / n_true.sum()) if scored else nan,
        auroc=auroc,
        positive_label=positive_label,
        positive_auroc=auroc.get(positive_label),
        macro_auroc=macro_auroc(auroc),
        labels_scored=[labels[k] for k in present],
        confusion=cm.tolist() if scored else [],
        confusion_labels=labels,
    )


def _kappa(cm: np.ndarray) -> float:
    """Cohen's kappa of a confusion matrix (0 when chance agreement is total)."""
    n = cm.sum()
    observed = np.trace(cm) / n
    expected = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / n**2
    return 0.0 if expected >= 1.0 else float((observed - expected) / (1.0 - expected))


# --- subject-level bootstrap ---------------------------------------------------------------


def _macro_f1(pred: np.ndarray, y: np.ndarray, n_labels: int) -> float:
    """Macro F1 over the classes present in ``y`` (as ``compute_metrics``), from counts."""
    tp = np.bincount(y[pred == y], minlength=n_labels)
    n_true = np.bincount(y, minlength=n_labels)
    n_pred = np.bincount(pred, minlength=n_labels)
    present = n_true > 0
    f1 = 2 * tp[present] / (n_true[present] + n_pred[present])
    return float(f1.mean())


def auroc_by_class(probs: np.ndarray, y: np.ndarray, classes) -> dict[int, float]:
    """One-vs-rest AUROC of each class index in ``classes`` that has both positive and negative
    windows in ``y`` (the others are left out, never scored as NaN)."""
    out = {}
    for k in classes:
        is_k = y == k
        if is_k.any() and (~is_k).any():
            out[int(k)] = _auroc(is_k, probs[:, k])
    return out


def macro_auroc(auroc: dict) -> float | None:
    """The mean one-vs-rest AUROC over the classes scored; None when none was."""
    return float(np.mean(list(auroc.values()))) if auroc else None


def _auroc(is_pos: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half); NaN without both classes."""
    n_pos = int(is_pos.sum())
    n_neg = len(is_pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(score)
    return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (``scipy.stats.rankdata``)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], len(values))  # each run of ties is ordered[start:end]
    mean_rank = (starts + ends + 1) / 2.0  # the mean of ranks start+1 .. end
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _scored_windows(probs_by_model: dict, truth, subjects, labels, positive_label: str):
    """Scored windows only (truth >= 0): truth, subjects, {model: probs}, and the positive class
    index (-1 when the head has no such label: no window is then positive)."""
    truth = np.asarray(truth, np.int64)
    keep = truth >= 0
    preds = {name: np.asarray(p, np.float64)[keep] for name, p in probs_by_model.items()}
    pos = list(labels).index(positive_label) if positive_label in labels else -1
    return truth[keep], np.asarray(subjects)[keep], preds, pos


def subject_bootstrap(
    probs_by_model: dict[str, np.ndarray],
    truth: np.ndarray,
    subjects: np.ndarray,
    labels: tuple[str, ...] | list[str],
    positive_label: str,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """95 % percentile intervals of macro-F1 and positive-class AUROC, resampling whole subjects.

    Windows of one subject share physiology and sensor, so resampling windows would give
    intervals far too narrow. Every model is scored on the same resamples, so ``differences``
    (first model minus each other, positive AUROC) is a paired interval. Resamples that hold
    no positive or no negative window have no AUROC and are counted, not silently dropped.
    """
    y, subj, preds, pos = _scored_windows(probs_by_model, truth, subjects, labels, positive_label)
    ids, subject_of = np.unique(subj, return_inverse=True)
    members = [np.flatnonzero(subject_of == i) for i in range(len(ids))]
    rng = np.random.default_rng(seed)
    f1 = {name: np.empty(resamples) for name in preds}
    auc = {name: np.empty(resamples) for name in preds}
    for r in range(resamples):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        yr = y[idx]
        for name, p in preds.items():
            pr = p[idx]
            f1[name][r] = _macro_f1(pr.argmax(axis=1), yr, len(labels))
            auc[name][r] = _auroc(yr == pos, pr[:, pos])  # no positive class: no positives, NaN

    def interval(values: np.ndarray) -> list[float] | None:
        v = values[np.isfinite(values)]
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else None

    first = next(iter(preds))
    return {
        "resamples": resamples,
        "subjects": len(ids),
        "resamples_without_auroc": int((~np.isfinite(auc[first])).sum()),
        "models": {
            name: {"macro_f1": interval(f1[name]), "positive_auroc": interval(auc[name])} for name in preds
        },
        "differences": {
            f"{first} - {name}": {"positive_auroc": interval(auc[first] - auc[name])}
            for name in preds
            if name != first
        },
    }


def per_subject_scores(
    probs_by_model: dict[str, np.ndarray],
    truth: np.ndarray,
    subjects: np.ndarray,
    labels: tuple[str, ...] | list[str],
    positive_label: str,
) -> list[dict]:
    """Per test subject, at the argmax: recall of the positive class and accuracy on the rest.

    Pooled scores hide where the errors sit; on a few subjects one of them can decide a target.
    ``None`` where the subject has no window of that kind.
    """
    y, subj, preds, pos = _scored_windows(probs_by_model, truth, subjects, labels, positive_label)
    correct = {name: p.argmax(axis=1) == y for name, p in preds.items()}
    rows = []
    for sid in np.unique(subj):
        mine = subj == sid
        is_pos, is_neg = mine & (y == pos), mine & (y != pos)
        row = {
            "subject": str(sid),
            "windows": int(mine.sum()),
            f"{positive_label}_windows": int(is_pos.sum()),
        }
        for name, ok in correct.items():
            row[name] = {
                f"{positive_label}_recall": float(ok[is_pos].mean()) if is_pos.any() else None,
                "other_accuracy": float(ok[is_neg].mean()) if is_neg.any() else None,
            }
        rows.append(row)
    return rows
