"""Two-stage bridge position selection (docs/method.md), on pooled features, no ground truth.

1. Input position (new model): for every block k, the 5-fold mean macro-F1 of
   ``LogisticRegression(max_iter=1000, random_state=0)`` on the pooled block-k outputs
   (standardised on each training fold) against
   the old model's pseudo-labels (StratifiedKFold without shuffling, as sklearn's cv=5 does);
   argmax, ties -> the shallowest block.
2. Output position (old model): linear CKA (biased centering) between the chosen input
   features and the pooled input of every old block; argmax, ties -> the shallowest.

Both scores are computed on at most ``max_windows`` pair windows (``[selection] max_windows``,
8,192 by default), evenly spaced over the split (all when it has fewer), so the stage's memory
does not grow with the corpus (docs/scale.md).

Unlike the authors' selector (docs/method.md), the input layer is scored on exactly the time-pooled
vectors the bridge consumes. A pseudo-label class with fewer windows than folds cannot be
stratified; its windows are left out of the input score and counted in the report, so one
stray pseudo-label (a single "paced" window) cannot make every block unscorable.

Two bridge-edge options (off by default, on in recipes/default.toml; docs/method.md):

- ``trials``: neighbouring blocks' mean scores are often closer together than one standard
  error over the folds, so the argmax among them is a coin flip. With a trial function, every
  input block within one standard error of the best becomes a candidate, a bridge is trained
  briefly at each, and the lowest *validation* score wins: the same score the bridge picks its
  epoch on (``trial_score``: the cosine loss at the old model's last block, or the old head's
  KL; both are measured after the last old block, so they compare across positions; no labels).
- ``cka_tolerance``: the deepest old block whose CKA is within the tolerance of the best. A
  deeper output position leaves fewer old blocks to backpropagate through in training and to
  run on the device.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.bridge.rundir import FeatureStore, RunDir
from bridge_edge.bridge.shards import release_pages
from bridge_edge.errors import DataError


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
    input_score_se: list[float] = field(default_factory=list)  # standard error over the folds
    trials: list[dict] = field(default_factory=list)  # {k_in, k_out, val_loss, ...} per candidate
    trial_score: str = "val_loss"  # the trials' key that decided
    # windows left out of the input score: their pseudo-label class has fewer than `folds` windows
    pseudo_labels_left_out: dict[str, int] = field(default_factory=dict)
    scored_windows: int = 0  # the windows both scores were computed on (n_windows or fewer)

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


def lr_macro_f1(features: np.ndarray, pseudo: np.ndarray, folds: int = 5) -> tuple[float, float]:
    """Mean and standard error over the folds of the LR macro-F1 (nan, nan if not scorable)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    counts = np.bincount(pseudo)
    counts = counts[counts > 0]
    if len(counts) < 2 or counts.min() < folds:
        return float("nan"), float("nan")  # stratified folds impossible: one (or a tiny) class
    # One BLAS thread: these are small matrices, and with two threads on a loaded machine each
    # call waited for the other thread (118 s for one block, 2.3 s single-threaded). Standardised
    # per fold: on raw pooled features L-BFGS ran into max_iter on every fold.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0)),
            features,
            pseudo,
            cv=StratifiedKFold(n_splits=folds),
            scoring="f1_macro",
        )
    return float(np.mean(scores)), float(np.std(scores, ddof=1) / np.sqrt(len(scores)))


def score_rows(n: int, most: int) -> np.ndarray | None:
    """``most`` evenly spaced rows of ``n`` (first and last included); None: all of them."""
    if most <= 0 or n <= most:
        return None
    return np.linspace(0, n - 1, most).round().astype(np.int64)  # distinct, since n > most


def _scores(values: list[float]) -> np.ndarray:
    return np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)


def _argmax_shallowest(scores: list[float]) -> int:
    return int(np.argmax(_scores(scores)))  # np.argmax returns the first maximum = the shallowest


def within_one_se(scores: list[float], ses: list[float]) -> list[int]:
    """Blocks whose score is at least the best score minus the best block's standard error."""
    arr, best = _scores(scores), _argmax_shallowest(scores)
    floor = arr[best] - np.nan_to_num(ses[best])
    return [k for k in range(len(arr)) if arr[k] >= floor]


def output_position(cka: list[float], tolerance: float = 0.0) -> int:
    """Argmax (ties -> shallowest); with a tolerance, the deepest block within it of the best."""
    if tolerance <= 0:
        return _argmax_shallowest(cka)
    arr = _scores(cka)
    return int(np.flatnonzero(arr >= arr.max() - tolerance)[-1])


# A trial: briefly train a bridge at (k_in, k_out) and return at least {trial_score: ...}.
Trial = Callable[[int, int], dict]


def select_positions(
    store: FeatureStore,
    labels: tuple[str, ...],
    *,
    k_in: int = -1,
    k_out: int = -1,
    folds: int = 5,
    cka_tolerance: float = 0.0,
    trial: Trial | None = None,
    trial_score: str = "val_loss",
    max_windows: int = 0,
) -> Selection:
    """Score every position; pinned positions (>= 0) are kept but still scored for the report.

    With ``trial``, the input blocks within one standard error of the best are each tried (with
    their own output position) and the lowest ``trial_score`` decides.
    """
    start = time.perf_counter()
    rows = score_rows(len(store.old_probs), max_windows)

    def read(features: np.ndarray) -> np.ndarray:
        """The scored rows, copied; a mapped store's pages given back (shards.release_pages)."""
        out = np.array(features if rows is None else features[rows])
        release_pages(features)
        return out

    pseudo = read(store.pseudo_labels)
    values, counts = np.unique(pseudo, return_counts=True)
    count_of = {labels[v]: int(c) for v, c in zip(values, counts)}
    scored = np.isin(pseudo, values[counts >= folds])
    if len(np.unique(pseudo[scored])) < 2 and k_in < 0:
        raise DataError(
            f"position selection needs at least two pseudo-label classes with >= {folds} pair windows "
            f"each (the {folds}-fold LR score); got {count_of}. Use more pair windows, "
            "or pin [selection] k_in",
            reason="pseudo-labels",
        )
    input_scores, input_se = (
        list(v) for v in zip(*(lr_macro_f1(read(f)[scored], pseudo[scored], folds) for f in store.new_pooled))
    )

    def cka_to(ki: int) -> list[float]:
        x = read(store.new_pooled[ki])
        return [linear_cka(x, read(y)) for y in store.old_pooled]

    def out_for(ki: int) -> int:
        return k_out if k_out >= 0 else output_position(cka_to(ki), cka_tolerance)

    if k_in >= 0:
        candidates = [k_in]
    elif trial is None:
        candidates = [_argmax_shallowest(input_scores)]
    else:
        candidates = within_one_se(input_scores, input_se)
    pairs = [(ki, out_for(ki)) for ki in candidates]
    trials = []
    if len(pairs) > 1:
        trials = [{"k_in": ki, "k_out": ko} | trial(ki, ko) for ki, ko in pairs]
        best = min(trials, key=lambda t: t[trial_score])  # first (shallowest) on ties
        chosen_in, chosen_out = best["k_in"], best["k_out"]
    else:
        chosen_in, chosen_out = pairs[0]
    return Selection(
        k_in=chosen_in,
        k_out=chosen_out,
        input_scores=input_scores,
        output_scores=cka_to(chosen_in),
        pinned=k_in >= 0 or k_out >= 0,
        seconds=time.perf_counter() - start,
        n_windows=len(store.old_probs),
        scored_windows=len(pseudo),
        pseudo_label_counts=count_of,
        input_score_se=input_se,
        trials=trials,
        trial_score=trial_score,
        pseudo_labels_left_out={name: c for name, c in count_of.items() if c < folds},
    )


def write_selection(sel: Selection, run_dir: Path, new_paths, old_paths) -> None:
    doc = sel.as_dict() | {"new_block_paths": list(new_paths), "old_block_paths": list(old_paths)}
    doc = json.loads(json.dumps(doc).replace("NaN", "null"))
    rd = RunDir(run_dir)
    rd.save_json(rd.selection, doc)
    plot_selection(sel, rd.selection_plot)


def read_selection(run_dir: Path) -> Selection:
    doc = RunDir.load_json(RunDir(run_dir).selection)
    fields = Selection.__dataclass_fields__
    return Selection(**{k: v for k, v in doc.items() if k in fields})


def plot_selection(sel: Selection, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if sel.trials else 2, figsize=(13.5 if sel.trials else 9, 3.2))
    a1, a2 = axes[:2]
    se = np.nan_to_num(sel.input_score_se) if sel.input_score_se else None
    a1.bar(range(len(sel.input_scores)), np.nan_to_num(sel.input_scores), yerr=se, color="tab:blue")
    a1.bar([sel.k_in], [np.nan_to_num(sel.input_scores[sel.k_in])], color="tab:red")
    a1.set(title="input: 5-fold LR macro-F1 (pseudo-labels)", xlabel="new-model block k", ylabel="macro-F1")
    a2.bar(range(len(sel.output_scores)), sel.output_scores, color="tab:green")
    a2.bar([sel.k_out], [sel.output_scores[sel.k_out]], color="tab:red")
    a2.set(title=f"output: linear CKA to new block {sel.k_in}", xlabel="old-model block k", ylabel="CKA")
    if sel.trials:
        names = [f"{t['k_in']}->{t['k_out']}" for t in sel.trials]
        chosen = [(t["k_in"], t["k_out"]) == (sel.k_in, sel.k_out) for t in sel.trials]
        axes[2].bar(
            names,
            [t[sel.trial_score] for t in sel.trials],
            color=["tab:red" if c else "tab:gray" for c in chosen],
        )
        title = {"val_loss": "validation cosine loss", "val_head_kl": "validation head KL"}[sel.trial_score]
        axes[2].set(title=f"trials: {title}", xlabel="k_in -> k_out", ylabel="lower wins")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
