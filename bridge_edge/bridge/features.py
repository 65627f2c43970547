"""One pass over paired windows with both frozen models (docs/method.md: one pass instead of one per layer).

Per batch: the new model runs block by block and the *output* of every block is pooled along
its token/time axis on the fly; the old model runs block by block and the *input* of every
block is pooled the same way. The old model's last-block output is kept unpooled (flattened,
float16 to halve memory) as the bridge's training target, and its head gives soft outputs
(KD targets) and pseudo-labels (argmax) — no ground truth is touched.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from bridge_edge.bridge.rundir import FeatureStore
from bridge_edge.models.base import ModelAdapter

__all__ = ["FeatureStore", "collect_features"]


@torch.no_grad()
def collect_features(
    old: ModelAdapter,
    new: ModelAdapter | None,
    ecg: np.ndarray,
    ppg: np.ndarray | None,
    *,
    batch_size: int = 16,
    keep_target: bool = True,
    desc: str = "features",
) -> FeatureStore:
    """Pooled features of every block of both models, old targets and old head outputs.

    ``new``/``ppg`` may be None to collect only old-model targets (validation split).
    """
    start = time.perf_counter()
    old.freeze()
    if new is not None:
        new.freeze()
    new_parts: list[list[np.ndarray]] = [[] for _ in range(new.n_blocks if new is not None else 0)]
    old_parts: list[list[np.ndarray]] = [[] for _ in range(old.n_blocks)]
    targets, probs = [], []
    for i in tqdm(range(0, len(ecg), batch_size), desc=desc, unit="batch", leave=False):
        if new is not None:
            h = new.stem(new.prepare(ppg[i : i + batch_size]))
            for k in range(new.n_blocks):
                h = new.run_blocks(h, k, k + 1)
                new_parts[k].append(new.pool(h).float().cpu().numpy())
        h = old.stem(old.prepare(ecg[i : i + batch_size]))
        for k in range(old.n_blocks):
            old_parts[k].append(old.pool(h).float().cpu().numpy())
            h = old.run_blocks(h, k, k + 1)
        if keep_target:
            targets.append(h.reshape(h.shape[0], -1).to(torch.float16).cpu().numpy())
        probs.append(old.head(h).float().cpu().numpy())

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

    return FeatureStore(
        new_pooled=[cat(p) for p in new_parts],
        old_pooled=[cat(p) for p in old_parts],
        old_target=cat(targets) if keep_target else None,
        old_probs=cat(probs),
        seconds=time.perf_counter() - start,
    )
