"""A linear probe as the old model's task head (docs/method.md, "Linear probe as the old head").

Encoders such as HuBERT-ECG have no head of their own; BioX-Bridge first trains ``h`` =
``nn.Linear(D, K)`` on the mean-pooled last-block output of the frozen old model, with labelled
old-modality windows, and keeps it frozen afterwards. ``ProbedAdapter`` is any adapter with
such a probe as its head: same blocks, same input, ``head`` = softmax(probe(pool(h))) over the
probe's labels.

``train_probe`` fits the probe on features computed once (the old model is frozen, so one pass
suffices): Adam, cross-entropy optionally weighted by inverse class counts (the paper's WESAD
probe), epoch chosen by the lowest validation loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from bridge_edge.errors import DataError
from bridge_edge.models.base import ModelAdapter


class ProbedAdapter(ModelAdapter):
    """``inner``'s blocks with a trained linear probe as head (``labels`` = the probe's)."""

    def __init__(self, inner: ModelAdapter, probe: nn.Linear, labels: tuple[str, ...]) -> None:
        if probe.out_features != len(labels):
            raise DataError(
                f"probe has {probe.out_features} outputs but {len(labels)} labels {list(labels)}",
                path=inner.name,
                reason="probe outputs != labels",
            )
        self.inner, self.probe, self.labels = inner, probe.to(inner.device), tuple(labels)
        self.name, self.kind, self.layout = f"{inner.name}+probe", inner.kind, inner.layout
        self.input_spec, self.block_paths, self.module = inner.input_spec, inner.block_paths, inner.module

    def prepare(self, x):
        return self.inner.prepare(x)

    def stem(self, x):
        return self.inner.stem(x)

    def run_blocks(self, h, start: int, stop: int):
        return self.inner.run_blocks(h, start, stop)

    def pool(self, h):
        return self.inner.pool(h)

    def head(self, h):
        return torch.softmax(self.probe(self.pool(h)), dim=-1)

    def to(self, device) -> ProbedAdapter:
        self.inner.to(device)
        self.probe.to(device)
        return self

    def freeze(self) -> ProbedAdapter:
        self.inner.freeze()
        self.probe.eval().requires_grad_(False)
        return self

    def parameter_count(self, trainable_only: bool = False) -> int:
        probe = sum(p.numel() for p in self.probe.parameters() if p.requires_grad or not trainable_only)
        return self.inner.parameter_count(trainable_only) + probe

    def license_text(self) -> str | None:
        return self.inner.license_text()

    def describe(self) -> dict:
        return super().describe() | {"probe": {"in": self.probe.in_features, "labels": list(self.labels)}}


@torch.no_grad()
def last_block_features(adapter: ModelAdapter, windows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Mean-pooled output of the last block (docs/method.md's probe input), (N, D) float32."""
    parts = [
        adapter.pool(
            adapter.run_blocks(
                adapter.stem(adapter.prepare(windows[i : i + batch_size])), 0, adapter.n_blocks
            )
        )
        .float()
        .cpu()
        .numpy()
        for i in range(0, len(windows), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@dataclass
class ProbeResult:
    labels: list[str]
    class_counts: list[int]  # labelled training windows per label
    class_weights: list[float]
    best_epoch: int  # 1-based; chosen by the lowest validation loss
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def train_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    labels: tuple[str, ...],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    class_weighted: bool,
    seed: int = 0,
) -> tuple[nn.Linear, ProbeResult]:
    """Fit ``nn.Linear(D, len(labels))`` on pooled features; ``y`` indexes ``labels`` (-1: skipped)."""
    keep, keep_val = train_y >= 0, val_y >= 0
    x, y = torch.from_numpy(train_x[keep]).float(), torch.from_numpy(train_y[keep]).long()
    vx, vy = torch.from_numpy(val_x[keep_val]).float(), torch.from_numpy(val_y[keep_val]).long()
    counts = np.bincount(y.numpy(), minlength=len(labels))
    if (counts > 0).sum() < 2 or len(vy) == 0:
        raise DataError(
            f"the probe needs labelled windows of at least two classes in the train split and some in "
            f"val; got train counts {dict(zip(labels, counts.tolist()))} and {len(vy)} val windows",
            reason="too few labelled old-modality windows",
        )
    # inverse-count weights (a class absent from train gets none); mean weight 1 over the windows
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0) if class_weighted else (counts > 0) * 1.0
    weights = weights * counts.sum() / max((weights * counts).sum(), 1e-12)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    torch.manual_seed(seed)
    probe = nn.Linear(x.shape[1], len(labels))
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    result = ProbeResult(list(labels), counts.tolist(), weights.tolist(), best_epoch=0)
    best_state, best_loss = None, float("inf")
    for epoch in range(1, epochs + 1):
        probe.train()
        order, total = rng.permutation(len(y)), 0.0
        for start in range(0, len(y), batch_size):
            idx = torch.from_numpy(order[start : start + batch_size])
            loss = loss_fn(probe(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        probe.eval()
        with torch.no_grad():
            logits = probe(vx)
            val_loss = float(loss_fn(logits, vy))
        result.train_loss.append(total / len(y))
        result.val_loss.append(val_loss)
        result.val_accuracy.append(float((logits.argmax(dim=1) == vy).float().mean()))
        if val_loss < best_loss:
            best_loss, result.best_epoch = val_loss, epoch
            best_state = {k: v.clone() for k, v in probe.state_dict().items()}
    probe.load_state_dict(best_state)
    return probe.eval().requires_grad_(False), result
