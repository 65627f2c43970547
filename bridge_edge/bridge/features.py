"""One pass over paired windows with both frozen models (docs/method.md: one pass instead of one per layer).

Per batch: the new model runs block by block and the *output* of every block is pooled along
its token/time axis on the fly; the old model runs block by block and the *input* of every
block is pooled the same way. The old model's last-block output is kept unpooled (flattened,
float16 to halve memory) as the bridge's training target, and its head gives soft outputs
(KD targets) and pseudo-labels (argmax) — no ground truth is touched.

``collect_features`` keeps the store in RAM; ``write_features`` (the fit's features stage)
appends each batch to the store's .npy files, so the stage holds one batch, whatever the
number of windows (docs/scale.md).

Under torchrun the stage is sharded (``write_features(..., dist=)``): each rank writes the store of
its contiguous share of the windows, cut at whole batches, so every rank runs exactly the
batches one process would; rank 0 then joins the shards in rank order. The joined store is the
one-process store, byte for byte, for any number of ranks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bridge_edge.bridge.distributed import SINGLE, Dist
from bridge_edge.bridge.rundir import (
    FeatureStore,
    feature_store_files,
    load_feature_store,
    write_feature_store_meta,
)
from bridge_edge.bridge.shards import NpyAppender, RowReader
from bridge_edge.bridge.stages import Run
from bridge_edge.errors import ConfigError
from bridge_edge.models.base import ModelAdapter

__all__ = ["FeatureStore", "collect_features", "stage_features", "write_features"]

JOIN_ROWS = 256  # rows copied at a time when rank 0 joins the shards


@torch.no_grad()
def _batches(
    old: ModelAdapter,
    new: ModelAdapter | None,
    ecg,
    ppg,
    batch_size: int,
    keep_target: bool,
    desc: str,
    rows: tuple[int, int] | None = None,
) -> Iterator[FeatureStore]:
    """Each batch's features, as a store of that batch's windows (seconds 0); ``rows``: only
    windows [start, stop), in batches from ``start``."""
    old.freeze()
    if new is not None:
        new.freeze()
    ecg, ppg = RowReader(ecg), (None if ppg is None else RowReader(ppg))  # mapped pages given back
    start, stop = rows or (0, len(ecg))
    for i in tqdm(range(start, stop, batch_size), desc=desc, unit="batch", leave=False):
        j = min(i + batch_size, stop)
        new_pooled = []
        if new is not None:
            h = new.stem(new.prepare(np.array(ppg[i:j])))
            for k in range(new.n_blocks):
                h = new.run_blocks(h, k, k + 1)
                new_pooled.append(new.pool(h).float().cpu().numpy())
        old_pooled = []
        h = old.stem(old.prepare(np.array(ecg[i:j])))
        for k in range(old.n_blocks):
            old_pooled.append(old.pool(h).float().cpu().numpy())
            h = old.run_blocks(h, k, k + 1)
        target = h.reshape(h.shape[0], -1).to(torch.float16).cpu().numpy() if keep_target else None
        yield FeatureStore(new_pooled, old_pooled, target, old.head(h).float().cpu().numpy(), 0.0)


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
    """Pooled features of every block of both models, old targets and old head outputs, in RAM.

    ``new``/``ppg`` may be None to collect only old-model targets (validation split).
    """
    start = time.perf_counter()
    batches = list(_batches(old, new, ecg, ppg, batch_size, keep_target, desc))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

    n_new = new.n_blocks if new is not None else 0
    return FeatureStore(
        new_pooled=[cat([b.new_pooled[k] for b in batches]) for k in range(n_new)],
        old_pooled=[cat([b.old_pooled[k] for b in batches]) for k in range(old.n_blocks)],
        old_target=cat([b.old_target for b in batches]) if keep_target else None,
        old_probs=cat([b.old_probs for b in batches]),
        seconds=time.perf_counter() - start,
    )


def write_features(
    old: ModelAdapter,
    new: ModelAdapter | None,
    ecg: np.ndarray,
    ppg: np.ndarray | None,
    out: Path,
    *,
    batch_size: int = 16,
    keep_target: bool = True,
    desc: str = "features",
    rows: tuple[int, int] | None = None,
    dist: Dist = SINGLE,
) -> FeatureStore | None:
    """``collect_features``, each batch appended to ``out/<array>.npy`` as it is computed;
    returns the written store, memory-mapped. The files equal ``save_feature_store`` of
    ``collect_features``'s result. ``rows``: only windows [start, stop) (one rank's shard).

    ``dist`` (torchrun; called on every rank): each rank writes the store of its share
    (``shard_rows``) beside ``out``, and rank 0 joins them into ``out`` once all are written
    and returns it; the other ranks return None."""
    start = time.perf_counter()
    if dist.active:
        share = shard_rows(len(ecg), batch_size, dist.rank, dist.world_size)
        mine = shard_dir(out, dist.rank)
        desc = f"{desc} (rank {dist.rank}: windows {share[0]}-{share[1]})"
        write_features(
            old, new, ecg, ppg, mine, batch_size=batch_size, keep_target=keep_target, desc=desc, rows=share
        )
        dist.barrier()  # every shard is on disk
        if not dist.is_main:
            return None
        shards = [shard_dir(out, r) for r in range(dist.world_size)]
        return join_feature_shards(out, shards, time.perf_counter() - start)
    if out.exists():
        shutil.rmtree(out)
    out.with_suffix(".npz").unlink(missing_ok=True)  # the store as older run directories kept it
    out.mkdir(parents=True)
    files: dict[str, NpyAppender] = {}
    n_new = new.n_blocks if new is not None else 0
    try:
        for batch in _batches(old, new, ecg, ppg, batch_size, keep_target, desc, rows):
            for stem, rows in feature_store_files(batch).items():
                if stem not in files:
                    files[stem] = NpyAppender(out / f"{stem}.npy", rows.dtype, rows.shape[1:])
                files[stem].append(rows)
    finally:
        for f in files.values():
            f.close()
    if not files:  # no windows: the empty arrays collect_features gives
        empty = FeatureStore(
            [np.zeros(0, np.float32)] * n_new,
            [np.zeros(0, np.float32)] * old.n_blocks,
            np.zeros(0, np.float32) if keep_target else None,
            np.zeros(0, np.float32),
            0.0,
        )
        for stem, rows in feature_store_files(empty).items():
            np.save(out / f"{stem}.npy", rows)
    write_feature_store_meta(out, n_new, old.n_blocks, keep_target, time.perf_counter() - start)
    return load_feature_store(out)


def shard_rows(n: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous windows [start, stop) of ``n``, cut at whole batches (the
    batches one process runs), as evenly as whole batches allow; empty when there are fewer
    batches than ranks."""
    batches = -(-n // batch_size)
    first, last = rank * batches // world_size, (rank + 1) * batches // world_size
    return min(first * batch_size, n), min(last * batch_size, n)


def shard_dir(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.rank{rank}")


def join_feature_shards(out: Path, shards: list[Path], seconds: float) -> FeatureStore:
    """The stores in ``shards`` joined in order into ``out`` (JOIN_ROWS rows at a time, read
    memory-mapped); the shards are removed. Returns the joined store, memory-mapped."""
    parts = [load_feature_store(s) for s in shards]
    written = [p for p in parts if len(p.old_probs)]
    if out.exists():
        shutil.rmtree(out)
    out.with_suffix(".npz").unlink(missing_ok=True)
    if not written:  # no windows at all: the first shard is the empty store write_features writes
        shutil.copytree(shards[0], out)
    else:
        out.mkdir(parents=True)
        for stem, like in feature_store_files(written[0]).items():
            with NpyAppender(out / f"{stem}.npy", like.dtype, like.shape[1:]) as f:
                for part in written:
                    rows = RowReader(feature_store_files(part)[stem])
                    for i in range(0, len(rows), JOIN_ROWS):
                        f.append(rows[i : i + JOIN_ROWS])
    first = parts[0]
    write_feature_store_meta(
        out, len(first.new_pooled), len(first.old_pooled), first.old_target is not None, seconds
    )
    for s in shards:
        shutil.rmtree(s)
    return load_feature_store(out)


def stage_features(run: Run) -> None:
    """The fit's features stage: the pair split through both frozen models, and the old model's
    targets on the validation split, each written batch by batch into the run directory (under
    torchrun, every rank its share)."""
    old, new = run.models()
    if not old.labels:
        raise ConfigError(
            f"old model {old.name} has no task head (it returns embeddings, not class probabilities); "
            "expected one: set [probe] enabled = true to train a linear probe on labelled old-modality windows",
            key="probe.enabled",
            value=False,
            expected=True,
        )
    bs, dist = run.recipe.bridge.batch_size, run.dist
    pair, val = run.windows("pair"), run.windows("val")
    write_features(
        old, new, pair.ecg, pair.ppg, run.dir.features_pair, batch_size=bs, desc="features pair", dist=dist
    )
    write_features(
        old, None, val.ecg, None, run.dir.targets_val, batch_size=bs, desc="targets val", dist=dist
    )
