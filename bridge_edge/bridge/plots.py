"""PNG figures of a fit run: training curves and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(curves: dict[str, dict], path: Path) -> None:
    """``curves``: {method: TrainResult.as_dict()}: train/val loss, optional ``val_head_kl``
    (drawn on a second axis), and the best epoch with the score that chose it."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items()):
        epochs = np.arange(1, len(c["train_loss"]) + 1)
        lines = ax.plot(epochs, c["train_loss"], "o-", ms=3, label="train loss (pair)")
        lines += ax.plot(epochs, c["val_loss"], "s-", ms=3, label="val loss")
        if c.get("val_head_kl"):
            kl_ax = ax.twinx()
            lines += kl_ax.plot(epochs, c["val_head_kl"], "^-", ms=3, color="tab:green", label="val head KL")
            kl_ax.set_ylabel("KL to old head (val)")
        if c.get("best_epoch"):
            by = c.get("best_epoch_by", "val_loss").replace("_", " ")
            lines.append(
                ax.axvline(
                    c["best_epoch"], color="gray", ls="--", lw=1, label=f"epoch {c['best_epoch']} (by {by})"
                )
            )
        ax.set(title=name, xlabel="epoch", ylabel="loss")
        ax.legend(handles=lines, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusions(results: dict[str, dict], path: Path) -> None:
    """``results``: {name: Metrics.as_dict()}; rows = truth labels scored, cols = head labels."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(4.4 * len(results), 3.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], results.items()):
        labels = m["confusion_labels"]
        cm = np.asarray(m["confusion"]) if m["confusion"] else np.zeros((len(labels), len(labels)), int)
        rows = [labels.index(n) for n in m["labels_scored"]]
        cm = cm[rows] if rows else cm[:0]
        ax.imshow(cm, cmap="Blues", aspect="auto")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=8)
        ax.set_yticks(range(len(rows)), m["labels_scored"], fontsize=8)
        ax.set(title=f"{name}\nmacro-F1 {m['macro_f1']:.2f}", xlabel="predicted (head)", ylabel="truth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SHOWN_AS = {"old_model_on_old_modality": "old model on ECG"}


SUBJECTS_MAX_WIDTH_IN = 24.0
SUBJECTS_NAMED = 70  # up to this many test subjects are named on the axis (about what 24 inches hold)


def plot_test_subjects(rows: list[dict], intervals: dict | None, path: Path, positive: str) -> None:
    """Per test subject: positive-class recall and accuracy on the other windows, one marker per
    model; marker area grows with the subject's window count. Titles carry the 95 % intervals."""
    plt = _plt()
    models = [k for k in rows[0] if isinstance(rows[0][k], dict)] if rows else []
    # a third of an inch a subject, up to SUBJECTS_MAX_WIDTH_IN: on a large corpus's test split (960
    # subjects at 80 subject-hours) the uncapped canvas alone was ~85 MB, and drawing it +198 MB RSS
    width = min(max(6.0, 0.32 * len(rows) + 2), SUBJECTS_MAX_WIDTH_IN)
    fig, axes = plt.subplots(2, 1, figsize=(width, 5.6), sharex=True)
    order = sorted(
        rows,
        key=lambda r: (r[models[0]][f"{positive}_recall"] is None, r[models[0]][f"{positive}_recall"] or 0),
    )
    x = np.arange(len(order))
    for ax, key, count in (
        (axes[0], f"{positive}_recall", f"{positive}_windows"),
        (axes[1], "other_accuracy", None),
    ):
        for i, name in enumerate(models):
            vals = np.array([np.nan if r[name][key] is None else r[name][key] for r in order])
            n = np.array([r[count] if count else r["windows"] - r[f"{positive}_windows"] for r in order])
            label = SHOWN_AS.get(name, name)
            ax.scatter(x + (i - (len(models) - 1) / 2) * 0.18, vals, s=8 + 1.5 * n, alpha=0.7, label=label)
        ax.set(ylim=(-0.05, 1.05), ylabel=key.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    if intervals:
        parts = [
            f"{SHOWN_AS.get(name, name)}: macro-F1 [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}]"
            for name, ci in intervals["models"].items()
            if ci["macro_f1"]
        ]
        axes[0].set_title(
            f"test subjects, at the argmax; 95 % subject-bootstrap intervals ({intervals['resamples']}):\n"
            + "; ".join(parts),
            fontsize=8,
        )
    axes[0].legend(fontsize=7, loc="lower right")
    if len(order) <= SUBJECTS_NAMED:
        axes[1].set_xticks(x, [r["subject"] for r in order], rotation=90, fontsize=7)
    else:  # names would overlap: the subjects as a distribution, in the same order
        axes[1].set_xlabel(f"{len(order)} test subjects, sorted by {positive} recall", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
