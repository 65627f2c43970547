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
