"""Accuracy of each precision on held-out windows, against the labels and against fp32."""

from __future__ import annotations

import numpy as np

from bridge_edge.bridge.metrics import auroc_by_class, macro_auroc
from bridge_edge.export.calibration import AccuracyFloor
from bridge_edge.export.manifest import PrecisionMetrics


def precision_metrics(
    probs: np.ndarray,
    y_true: np.ndarray,
    fp32_probs: np.ndarray,
    *,
    positive_index: int | None,
    bridge: np.ndarray | None = None,
    fp32_bridge: np.ndarray | None = None,
    size_bytes: int = 0,
) -> PrecisionMetrics:
    """``y_true`` indexes the model's labels; macro-F1 averages over the classes present in it."""
    from sklearn.metrics import f1_score

    present = np.unique(y_true)
    pred = probs.argmax(axis=1)
    cosine = None
    if bridge is not None and fp32_bridge is not None:
        a = bridge.reshape(len(bridge), -1).astype(np.float64)
        b = fp32_bridge.reshape(len(fp32_bridge), -1).astype(np.float64)
        denom = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        cosine = float(np.mean(np.sum(a * b, axis=1) / denom))
    auroc = auroc_by_class(np.asarray(probs, np.float64), y_true, present)
    return PrecisionMetrics(
        n_windows=len(y_true),
        macro_f1=float(f1_score(y_true, pred, labels=present, average="macro", zero_division=0)),
        positive_auroc=None if positive_index is None else auroc.get(positive_index),
        macro_auroc=macro_auroc(auroc),
        agreement_with_fp32=float(np.mean(pred == fp32_probs.argmax(axis=1))),
        max_abs_diff_vs_fp32=float(np.max(np.abs(probs - fp32_probs))),
        bridge_cosine_with_fp32=cosine,
        size_bytes=int(size_bytes),
    )


def floor_for_size(floor: AccuracyFloor, y_true: np.ndarray) -> AccuracyFloor:
    """The recipe's floor, widened where it is stricter than one held-out window can resolve.

    With n labelled held-out windows one window flipping moves agreement by 1/n; with s windows
    in the smallest class present it moves macro-F1 by up to about 1/s, and a one-vs-rest AUROC
    by up to 1/min(positives, negatives). A floor tighter than that demands that no window at
    all changes, which a tiny run (the smoke fit: 31 held-out windows) cannot show either way.
    On the default bundle's ~1,700 windows every term is below the recipe's floor: unchanged.
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    if n == 0:
        return floor
    counts = np.unique(y_true, return_counts=True)[1]
    smallest = int(counts.min())
    auroc_step = float(max(1.0 / min(c, n - c) for c in counts)) if len(counts) > 1 else 0.0
    return AccuracyFloor(
        min_agreement=min(floor.min_agreement, 1.0 - 1.0 / n),
        max_macro_f1_drop=max(floor.max_macro_f1_drop, 1.0 / smallest),
        max_auroc_drop=max(floor.max_auroc_drop, auroc_step),
    )


def floor_failures(m: PrecisionMetrics, fp32: PrecisionMetrics, floor: AccuracyFloor) -> list[str]:
    """Why ``m`` misses the accuracy floor relative to fp32; [] when it holds."""
    failures = []
    if m.agreement_with_fp32 < floor.min_agreement:
        failures.append(f"agreement {m.agreement_with_fp32:.4f} < {floor.min_agreement}")
    if fp32.macro_f1 - m.macro_f1 > floor.max_macro_f1_drop:
        failures.append(f"macro-F1 drop {fp32.macro_f1 - m.macro_f1:.4f} > {floor.max_macro_f1_drop}")
    if (
        fp32.macro_auroc is not None
        and m.macro_auroc is not None
        and fp32.macro_auroc - m.macro_auroc > floor.max_auroc_drop
    ):
        failures.append(f"macro AUROC drop {fp32.macro_auroc - m.macro_auroc:.4f} > {floor.max_auroc_drop}")
    return failures


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def plot_precisions(metrics: dict[str, PrecisionMetrics], path) -> None:
    """PNG: accuracy per precision (left) and model size (right), fp32 as the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    scores = {
        "macro-F1": [metrics[p].macro_f1 for p in names],
        "positive-label AUROC": [_nan(metrics[p].positive_auroc) for p in names],
        "macro AUROC": [_nan(metrics[p].macro_auroc) for p in names],
        "agreement with fp32": [metrics[p].agreement_with_fp32 for p in names],
        "bridge cosine vs fp32": [_nan(metrics[p].bridge_cosine_with_fp32) for p in names],
    }
    fig, (ax, ax_size) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(names)
    for i, p in enumerate(names):
        xs = np.arange(len(scores)) + (i - (len(names) - 1) / 2) * width
        ax.bar(xs, [v[i] for v in scores.values()], width, label=p)
    ax.set_xticks(np.arange(len(scores)), list(scores))
    ax.set_ylim(0, 1.05)
    ax.set_title(f"held-out windows: {metrics[names[0]].n_windows}")
    ax.legend(loc="lower right")
    ax_size.bar(names, [metrics[p].size_bytes / 1e6 for p in names], color="grey")
    ax_size.set_ylabel("ONNX size (MB)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
