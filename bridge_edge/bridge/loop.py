"""The training loop the bridge and KD share (docs/method.md, "Training").

Random batches (a permutation, or draws by ``bridge.balance`` weights), one step a batch
(``sharded_step``: this rank's share of a global batch through DDP), an optional moving average
of the weights, the best epoch on validation, and the cost a report compares: trainable
parameters, the peak of one measured step, seconds an epoch and the median batch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from bridge_edge.bridge.balance import RateBalance
from bridge_edge.bridge.cost import count_trainable, measure_step_memory
from bridge_edge.bridge.distributed import SINGLE, Dist
from bridge_edge.bridge.recipe import CHOICES
from bridge_edge.bridge.shards import RowReader
from bridge_edge.runtime.native_memory import release_free_memory


@dataclass
class TrainResult:
    trainable_params: int
    peak_memory_bytes: int
    memory_method: str
    seconds_per_epoch: float
    best_epoch: int
    epochs: int
    batch_size: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_head_kl: list[float] = field(default_factory=list)  # bridge only; KD's val_loss is this already
    best_epoch_by: str = "val_loss"
    sampling: dict = field(default_factory=dict)  # how training windows were drawn (bridge.balance)
    ema_decay: float = 0.0  # > 0: validated, picked and returned weights are this moving average
    # median wall time of one batch (its step and moving-average update), the memory-measured
    # step left out: a rate that a busy minute of the machine moves less than an epoch's mean
    median_batch_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PairData:
    ppg: np.ndarray  # (N, L) model-ready new-modality windows
    target: np.ndarray  # (N, ...) cached old-model targets (bridge: flattened last-block output; KD: probs)
    old_probs: np.ndarray | None = None  # (N, K) the old head's window probabilities (bridge head KL)

    def batched(self) -> PairData:
        """The same rows, read batch by batch (``shards.RowReader``: a memory-mapped split's pages
        are given back as the epoch goes, not kept resident)."""
        probs = None if self.old_probs is None else RowReader(self.old_probs)
        return PairData(RowReader(self.ppg), RowReader(self.target), probs)


def batch_indices(
    n: int, batch_size: int, gen: np.random.Generator | None = None, weights: np.ndarray | None = None
) -> list[np.ndarray]:
    """Index batches: shuffled by ``gen`` (training) or in order (evaluation). With ``weights``
    (training only), an epoch is ``n`` draws with replacement, each window in proportion to its weight."""
    if gen is None:
        order = np.arange(n)
    elif weights is None:
        order = gen.permutation(n)
    else:
        order = gen.choice(n, size=n, replace=True, p=weights / weights.sum())
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def sharded_step(
    opt: torch.optim.Optimizer, n: int, loss_at: Callable[[np.ndarray], torch.Tensor], dist: Dist = SINGLE
) -> float:
    """One gradient step on a global batch of ``n`` windows, this rank computing its share.

    ``loss_at(positions)``: the mean loss over those positions of the batch. The backward loss is
    weighted by the share (n_r N / n, bridge.distributed), so DDP's gradient average is the
    gradient of the whole batch's mean; returns that mean, summed over ranks. One process: the
    whole batch, weight 1: a plain step."""
    positions, weight = dist.share(n)
    loss = loss_at(positions)
    opt.zero_grad(set_to_none=True)
    (loss * (weight * dist.world_size)).backward()
    opt.step()
    return dist.total(float(loss.detach()) * weight)


def mean_loss(loss_on: Callable, data: PairData, batch_size: int) -> float:
    """Sample-weighted mean of ``loss_on(data, batch)`` over all batches of ``data``."""
    total = sum(loss_on(data, i).item() * len(i) for i in batch_indices(len(data.ppg), batch_size))
    return float(total / max(1, len(data.ppg)))


BEST_EPOCH_CRITERIA = CHOICES[("bridge", "best_epoch_by")]


def fit_epochs(
    model: torch.nn.Module,
    step: Callable[[np.ndarray], float],
    validate: Callable[[], dict[str, float]],
    *,
    n: int,
    epochs: int,
    batch_size: int,
    seed: int,
    optimizer: torch.optim.Optimizer,
    resident: list[torch.nn.Module],
    device: torch.device,
    desc: str,
    best_epoch_by: str = "val_loss",
    sampling: RateBalance | None = None,
    ema_decay: float = 0.0,
) -> TrainResult:
    """The loop the bridge and KD share: random batches, one measured step, best epoch on validation.

    ``validate`` returns {TrainResult list field: value}, e.g. {"val_loss": ...}; the epoch with
    the lowest ``best_epoch_by`` wins. ``model`` holds the trainable parameters; on return it
    carries the best epoch's weights. ``sampling``: draw each epoch's windows by these weights
    (bridge.balance) instead of a permutation. ``ema_decay`` > 0: an exponential moving average
    of the weights (and buffers) follows every step; each epoch validates the average, and the
    average of the best epoch is what ``model`` carries on return (docs/method.md, "Training").
    """
    gen = np.random.default_rng(seed)
    weights = None if sampling is None else sampling.weights[:n]
    averaged = _moving_average(model, ema_decay)
    if averaged is not None:  # the average is resident during training too
        resident = [*resident, averaged.module]
    result = TrainResult(
        count_trainable([model]),
        0,
        "",
        0.0,
        0,
        epochs,
        batch_size,
        best_epoch_by=best_epoch_by,
        sampling={} if sampling is None else sampling.summary(),
        ema_decay=ema_decay,
    )
    best, best_state, seconds, batch_seconds = np.inf, copy.deepcopy(model.state_dict()), [], []
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        losses: list[float] = []
        batches = tqdm(
            batch_indices(n, batch_size, gen, weights),
            desc=f"{desc} epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
        )
        for b, idx in enumerate(batches):
            t_batch = time.perf_counter()
            measured = epoch == 0 and b == 1  # a steady-state step: optimizer state exists by now
            if measured:
                mem = measure_step_memory(
                    lambda i=idx, out=losses: out.append(step(i)), resident, optimizer, device
                )
                result.peak_memory_bytes, result.memory_method = mem.peak_bytes, mem.method
            else:
                losses.append(step(idx))
            if averaged is not None:
                averaged.update_parameters(model)
            if not measured:
                batch_seconds.append(time.perf_counter() - t_batch)
        seconds.append(time.perf_counter() - t0)
        result.train_loss.append(float(np.mean(losses)))
        raw = None
        if averaged is not None:  # validate the average in place of the raw weights
            raw = copy.deepcopy(model.state_dict())
            model.load_state_dict(averaged.module.state_dict())
        model.eval()
        # The epoch's steps leave their buffers free in glibc's heap; validation's larger passes
        # would otherwise be laid out around them, and the stage's peak crept up epoch by epoch
        # (docs/scale.md).
        release_free_memory()
        with torch.no_grad():
            for name, value in validate().items():
                getattr(result, name).append(value)
        score = getattr(result, best_epoch_by)[-1]
        if score < best:
            best, result.best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        if raw is not None:
            model.load_state_dict(raw)
    model.load_state_dict(best_state)
    model.eval()
    result.seconds_per_epoch = float(np.mean(seconds)) if seconds else 0.0
    result.median_batch_seconds = float(np.median(batch_seconds)) if batch_seconds else 0.0
    return result


def _moving_average(model: torch.nn.Module, decay: float):
    """torch's exponential moving average of ``model`` (parameters and buffers), or None for 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
