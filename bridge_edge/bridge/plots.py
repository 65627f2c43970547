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
    """``curves``: {method: {"train_loss": [...], "val_loss": [...], "best_epoch": int}}."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items()):
        epochs = np.arange(1, len(c["train_loss"]) + 1)
        ax.plot(epochs, c["train_loss"], "o-", label="train (pair)")
        ax.plot(epochs, c["val_loss"], "s-", label="validation")
        if c.get("best_epoch"):
            ax.axvline(c["best_epoch"], color="gray", ls="--", lw=1, label=f"best epoch {c['best_epoch']}")
        ax.set(title=name, xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=8)
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
