"""One pass over paired windows with both frozen models (docs/method.md: one pass instead of one per layer).

Per batch: the new model runs block by block and the *output* of every block is pooled along
its token/time axis on the fly; the old model runs block by block and the *input* of every
block is pooled the same way. The old model's last-block output is kept unpooled (flattened,
float16 to halve memory) as the bridge's training target, and its head gives soft outputs
(KD targets) and pseudo-labels (argmax) — no ground truth is touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from bridge_edge.models.base import ModelAdapter


@dataclass
class FeatureStore:
    new_pooled: list[np.ndarray]  # per new block k: (N, C_k) pooled output of block k
    old_pooled: list[np.ndarray]  # per old block k: (N, D_k) pooled input of block k
    old_target: np.ndarray | None  # (N, T*D) float16, old last-block output flattened
    old_probs: np.ndarray  # (N, K) old head window probabilities on the paired ECG
    seconds: float

    @property
    def pseudo_labels(self) -> np.ndarray:
        return self.old_probs.argmax(axis=1)


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


def save_feature_store(store: FeatureStore, path) -> None:
    arrays = {f"new_{k}": a for k, a in enumerate(store.new_pooled)}
    arrays |= {f"old_{k}": a for k, a in enumerate(store.old_pooled)}
    arrays["old_probs"] = store.old_probs
    arrays["seconds"] = np.float64(store.seconds)
    if store.old_target is not None:
        arrays["old_target"] = store.old_target
    np.savez(path, **arrays)


def load_feature_store(path) -> FeatureStore:
    with np.load(path) as z:
        n_new = sum(1 for k in z.files if k.startswith("new_"))
        n_old = sum(1 for k in z.files if k.startswith("old_") and k[4:].isdigit())
        return FeatureStore(
            new_pooled=[z[f"new_{k}"] for k in range(n_new)],
            old_pooled=[z[f"old_{k}"] for k in range(n_old)],
            old_target=z["old_target"] if "old_target" in z.files else None,
            old_probs=z["old_probs"],
            seconds=float(z["seconds"]),
        )
