"""Two-stage bridge position selection (METHOD §4.2-4.3), on pooled features, no ground truth.

1. Input position (new model): for every block k, the 5-fold mean macro-F1 of
   ``LogisticRegression(max_iter=1000, random_state=0)`` on the pooled block-k outputs against
   the old model's pseudo-labels (StratifiedKFold without shuffling, as sklearn's cv=5 does);
   argmax, ties -> the shallowest block.
2. Output position (old model): linear CKA (biased centering) between the chosen input
   features and the pooled input of every old block; argmax, ties -> the shallowest.

Unlike the authors' selector (§10.3), the input layer is scored on exactly the time-pooled
vectors the bridge consumes.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bridge_edge.bridge.features import FeatureStore


@dataclass
class Selection:
    k_in: int
    k_out: int
    input_scores: list[float]  # per new block: mean CV macro-F1 (nan if not scorable)
    output_scores: list[float]  # per old block: linear CKA to the chosen input features
    pinned: bool
    seconds: float
    n_windows: int
    pseudo_label_counts: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA with biased centering: <HKH, HLH> / (|HKH| |HLH|), K = XXᵀ, L = YYᵀ."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(axis=0)  # centering the features = H K H for the linear kernel
    y = y - y.mean(axis=0)
    # <HKH, HLH>_F = |Xᵀ Y|_F², |HKH|_F = |Xᵀ X|_F (cheaper than N x N Grams)
    num = np.linalg.norm(x.T @ y) ** 2
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else 0.0


def lr_macro_f1(features: np.ndarray, pseudo: np.ndarray, folds: int = 5) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    counts = np.bincount(pseudo)
    counts = counts[counts > 0]
    if len(counts) < 2 or counts.min() < folds:
        return float("nan")  # stratified folds impossible: every window in one (or a tiny) class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(
            LogisticRegression(max_iter=1000, random_state=0),
            features,
            pseudo,
            cv=StratifiedKFold(n_splits=folds),
            scoring="f1_macro",
        )
    return float(np.mean(scores))


def _argmax_shallowest(scores: list[float]) -> int:
    arr = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    return int(np.argmax(arr))  # np.argmax returns the first maximum = the shallowest block


def select_positions(
    store: FeatureStore, labels: tuple[str, ...], *, k_in: int = -1, k_out: int = -1, folds: int = 5
) -> Selection:
    """Score every position; pinned positions (>= 0) are kept but still scored for the report."""
    start = time.perf_counter()
    pseudo = store.pseudo_labels
    input_scores = [lr_macro_f1(f, pseudo, folds) for f in store.new_pooled]
    chosen_in = k_in if k_in >= 0 else _argmax_shallowest(input_scores)
    x = store.new_pooled[chosen_in]
    output_scores = [linear_cka(x, y) for y in store.old_pooled]
    chosen_out = k_out if k_out >= 0 else _argmax_shallowest(output_scores)
    values, counts = np.unique(pseudo, return_counts=True)
    return Selection(
        k_in=chosen_in,
        k_out=chosen_out,
        input_scores=input_scores,
        output_scores=output_scores,
        pinned=k_in >= 0 or k_out >= 0,
        seconds=time.perf_counter() - start,
        n_windows=len(pseudo),
        pseudo_label_counts={labels[v]: int(c) for v, c in zip(values, counts)},
    )


def write_selection(sel: Selection, run_dir: Path, new_paths, old_paths) -> None:
    doc = sel.as_dict() | {"new_block_paths": list(new_paths), "old_block_paths": list(old_paths)}
    doc = json.loads(json.dumps(doc).replace("NaN", "null"))
    (run_dir / "selection.json").write_text(json.dumps(doc, indent=2))
    plot_selection(sel, run_dir / "selection.png")


def read_selection(run_dir: Path) -> Selection:
    doc = json.loads((run_dir / "selection.json").read_text())
    fields = Selection.__dataclass_fields__
    return Selection(**{k: v for k, v in doc.items() if k in fields})


def plot_selection(sel: Selection, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.bar(range(len(sel.input_scores)), np.nan_to_num(sel.input_scores), color="tab:blue")
    a1.bar([sel.k_in], [np.nan_to_num(sel.input_scores[sel.k_in])], color="tab:red")
    a1.set(title="input: 5-fold LR macro-F1 (pseudo-labels)", xlabel="new-model block k", ylabel="macro-F1")
    a2.bar(range(len(sel.output_scores)), sel.output_scores, color="tab:green")
    a2.bar([sel.k_out], [sel.output_scores[sel.k_out]], color="tab:red")
    a2.set(title=f"output: linear CKA to new block {sel.k_in}", xlabel="old-model block k", ylabel="CKA")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
