"""Self-supervised pretraining of the default PPG encoder on unlabelled PPG (SimCLR / NT-Xent).

No label reaches this module's training path: ``pretrain_ppg_encoder`` takes windows only.
Two augmented views (``ppg_augment``) of each window are pulled together and pushed away from
the other windows of the batch; the projection head is thrown away afterwards. Source windows
may be longer than the model window, so the two views are different crops and the encoder
learns what a window has *throughout* (rate, regularity, pulse shape), not where beats sit.

``rhythm_probe`` is the sanity check used by tests and reports: logistic regression on the
time-pooled block features of held-out windows — labels appear only there.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bridge_edge.errors import DataError
from bridge_edge.models.base import ModelAdapter
from bridge_edge.models.ppg_augment import AugmentSpec, augment
from bridge_edge.signals.ppg_targets import DEFAULT_TARGETS, signal_targets


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross entropy over 2B views; positives are (i, i + B)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def unlabelled_ppg_windows(recordings, spec, window_s: float = 12.0, hop_s: float = 4.0) -> np.ndarray:
    """Preprocessed PPG windows (N, window_s * spec.fs_out) from recordings' PPG only.

    Each recording's PPG goes through ``signals.preprocess`` (causal filter + resample over the
    whole recording, then per-window z-score). Only ``rec.ppg`` and ``rec.fs_ppg`` are read
    (a PairedRecording or a ``signals.dev_recordings.RealPPG``).
    Windows a little longer than the model window give the two views room for random crops.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    from bridge_edge.signals.preprocess import filter_and_resample, normalise_windows

    width, hop = round(window_s * spec.fs_out), round(hop_s * spec.fs_out)
    out = []
    for rec in recordings:
        y = filter_and_resample(rec.ppg, rec.fs_ppg, spec)
        if len(y) >= width:
            out.append(normalise_windows(sliding_window_view(y, width)[::hop], spec))
    if not out:
        raise DataError(f"no recording holds a {window_s} s PPG window", path="pretrain", reason="too short")
    return np.concatenate(out)


def _standardise(targets: np.ndarray) -> np.ndarray:
    valid = np.isfinite(targets)
    mean = np.nanmean(np.where(valid, targets, np.nan), axis=0)
    std = np.nanstd(np.where(valid, targets, np.nan), axis=0)
    return np.where(valid, (targets - mean) / np.maximum(std, 1e-6), np.nan).astype(np.float32)


def _embed(adapter: ModelAdapter, views: torch.Tensor) -> torch.Tensor:
    h = adapter.run_blocks(adapter.stem(views.unsqueeze(1)), 0, adapter.n_blocks)
    return adapter.head(h)


def pretrain_ppg_encoder(
    windows: np.ndarray,
    adapter: ModelAdapter,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    temperature: float = 0.2,
    augment_spec: AugmentSpec | None = None,
    aux_weight: float = 0.0,
    contrastive_weight: float = 1.0,
    aux_min_sqi: float = 0.0,
    target_names: tuple[str, ...] = DEFAULT_TARGETS,
    target_windows: np.ndarray | None = None,
    dist=None,
) -> dict:
    """Train ``adapter.module`` in place on preprocessed PPG windows (N, L >= n_samples).

    Loss = ``contrastive_weight`` x NT-Xent + ``aux_weight`` x masked MSE of a linear head
    predicting the standardised ``signal_targets`` (``target_names``) of each source window
    (a weight of 0 turns that term off). ``target_windows`` (same shape): where the targets are
    read from, when ``windows`` are altered versions of them (e.g. seen through another sensor);
    default ``windows``.
    ``dist``: a ``bridge_edge.bridge.distributed.Dist`` under torchrun: every rank draws the same
    batch and views, runs its share of them, and gradients are averaged over ranks (the masked MSE
    exactly as one process; NT-Xent over each rank's share only).
    The adapter must take (B, 1, L) input (PaPaGei layout). Returns the history:
    ``{"loss": [per epoch], "seconds_per_epoch": [...], "n_windows", "view_samples", ...}``.
    The module is left in eval mode.
    """
    x = windows if hasattr(windows, "shape") else np.asarray(windows, dtype=np.float32)
    length = adapter.input_spec.n_samples
    if len(x.shape) != 2 or x.shape[1] < length or len(x) < 2:
        raise DataError(
            f"pretraining needs >= 2 windows of at least {length} samples, got shape {x.shape}",
            path="pretrain",
            reason="window shape",
        )
    clean = x if target_windows is None else target_windows
    if tuple(clean.shape) != tuple(x.shape):
        raise DataError(
            f"target windows {clean.shape} must match the windows {x.shape}", path="pretrain", reason="shape"
        )
    if not (_all_finite(x) and _all_finite(clean)):
        raise DataError(
            "pretraining windows contain non-finite samples", path="pretrain", reason="non-finite"
        )
    augment_spec = augment_spec or AugmentSpec()
    device = adapter.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)

    def rows_of(rows) -> torch.Tensor:
        """The windows at ``rows`` (in that order) on the device: only a batch is ever read."""
        idx = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else rows
        return torch.from_numpy(np.asarray(x[idx], dtype=np.float32)).to(device)

    module = adapter.module
    module.eval()
    with torch.no_grad():
        width = _embed(adapter, rows_of(slice(0, 2))[:, :length]).shape[1]
    module.requires_grad_(True)
    module.train()
    # SimCLR projection head: trained alongside, thrown away afterwards.
    projector = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, 64)).to(device)
    # Auxiliary head for the signal-derived targets: trained alongside, thrown away afterwards.
    raw_targets = _targets(clean, adapter.input_spec.fs, target_names, aux_min_sqi)
    target_names = tuple(target_names)
    target_values = torch.from_numpy(_standardise(raw_targets)).to(device)
    aux_head = nn.Linear(width, len(target_names)).to(device)
    params = list(module.parameters()) + list(projector.parameters()) + list(aux_head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)

    batch = min(batch_size, len(x))
    n_batches = max(1, len(x) // batch)  # drop the ragged tail: a batch of 1 has no negatives
    history: dict = {
        "loss": [],
        "seconds_per_epoch": [],
        "n_windows": len(x),
        "view_samples": length,
        "epochs": epochs,
        "batch_size": batch,
        "lr": lr,
        "temperature": temperature,
        "aux_weight": aux_weight,
        "contrastive_weight": contrastive_weight,
        "aux_min_sqi": aux_min_sqi,
        "motion_prob": augment_spec.motion_prob,
        "aux_targets": list(target_names),
        "aux_targets_valid_fraction": float(torch.isfinite(target_values).all(dim=1).float().mean()),
        "seed": seed,
        "world_size": 1 if dist is None else dist.world_size,
    }
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs * n_batches, desc="pretrain ppg", unit="batch", file=sys.stderr)
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(x), generator=gen, device=device)
        total = 0.0
        for i in range(n_batches):
            rows = order[i * batch : (i + 1) * batch]
            views = augment(rows_of(rows).repeat(2, 1), length, adapter.input_spec.fs, gen, augment_spec)
            wanted = target_values[rows].repeat(2, 1)
            if dist is not None:  # this rank's share of the batch, both views of each window
                mine = dist.share(len(rows))[0]
                share = torch.from_numpy(np.concatenate([mine, mine + len(rows)])).to(device)
                views, wanted = views[share], wanted[share]
            embedding = _embed(adapter, views)  # both views in one batch
            loss = torch.zeros((), device=device)
            if contrastive_weight:  # weight 0 (the default recipe): no projector work at all
                z1, z2 = projector(embedding).chunk(2)
                loss = contrastive_weight * nt_xent(z1, z2, temperature)
            if aux_weight:
                known = torch.isfinite(wanted)
                error = (aux_head(embedding) - torch.nan_to_num(wanted)) ** 2
                n_known = known.sum() if dist is None else dist.total_tensor(known.sum()) / dist.world_size
                loss = loss + aux_weight * (error * known).sum() / n_known.clamp_min(1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if dist is not None:
                dist.average_gradients(params)
            opt.step()
            total += loss.item() if dist is None else dist.total(loss.item()) / dist.world_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        history["loss"].append(total / n_batches)
        history["seconds_per_epoch"].append(time.perf_counter() - t0)
    if bar is not None:
        bar.close()
    module.eval()
    return history


TARGET_CHUNK = 1024  # windows whose targets and SQI are computed at a time (a bounded buffer)


def _chunks(windows):
    for start in range(0, len(windows), TARGET_CHUNK):
        yield np.asarray(windows[start : start + TARGET_CHUNK], dtype=np.float32)


def _all_finite(windows) -> bool:
    return all(np.isfinite(chunk).all() for chunk in _chunks(windows))


def _targets(windows, fs: float, names, aux_min_sqi: float) -> np.ndarray:
    """``signal_targets`` of every window, NaN where the window's SQI is under ``aux_min_sqi``:
    targets from motion-corrupted windows are wrong (missed or extra beats), so they are learnt
    from clean windows only (the contrastive views of every window are still used). Computed
    ``TARGET_CHUNK`` windows at a time; each window's targets are its own."""
    from bridge_edge.signals.quality import ppg_sqi

    parts = []
    for chunk in _chunks(windows):
        targets = signal_targets(chunk, fs, names)  # checks the names
        if aux_min_sqi > 0:
            targets[ppg_sqi(chunk, fs) < aux_min_sqi] = np.nan
        parts.append(targets)
    return np.concatenate(parts)


def pooled_block_features(
    adapter: ModelAdapter, windows: np.ndarray, batch_size: int = 64
) -> list[np.ndarray]:
    """Time-pooled output of every block for windows of the model length: list of (N, C_k)."""
    feats: list[list[np.ndarray]] = [[] for _ in range(adapter.n_blocks)]
    adapter.module.eval()
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            h = adapter.stem(adapter.prepare(windows[i : i + batch_size]))
            for k in range(adapter.n_blocks):
                h = adapter.run_blocks(h, k, k + 1)
                feats[k].append(adapter.pool(h).cpu().numpy())
    return [np.concatenate(f) for f in feats]


def rhythm_probe(
    adapter: ModelAdapter,
    train_windows: np.ndarray,
    train_positive: np.ndarray,
    test_windows: np.ndarray,
    test_positive: np.ndarray,
) -> list[float]:
    """Held-out AUROC per block of a logistic regression on pooled features (evaluation only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = pooled_block_features(adapter, train_windows)
    test = pooled_block_features(adapter, test_windows)
    aucs = []
    for f_train, f_test in zip(train, test):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(f_train, train_positive)
        aucs.append(float(roc_auc_score(test_positive, clf.predict_proba(f_test)[:, 1])))
    return aucs
