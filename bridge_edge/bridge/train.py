"""Bridge training (docs/method.md).

Frozen models (eval, no parameter gradients); clean old-model last-block outputs are cached
once per pair window (FeatureStore.old_target). The frozen new model is deterministic in eval
mode, so its pooled block-k_in output is also computed once per window (and per sensor version
of the window, when augmented), before the first epoch. Each step then runs only: bridge -> old layout -> old blocks
[k_out..end] -> loss mean(1 - cos(vec(bridged), vec(clean))) — the same numbers as running the
new model inside every step, without its time or memory. Adam (defaults) on the bridge only.

The best epoch is chosen on the *validation* subjects' pairs (label-free; test never seen), by
``best_epoch_by``: ``"val_loss"`` (the training loss, as docs/method.md trains) or ``"val_head_kl"``
(KL from the old head's output on the paired ECG to the bridged head's output on the PPG: the
same signal the KD baseline picks its epoch on). Both are recorded every epoch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bridge_edge.bridge.balance import RateBalance
from bridge_edge.bridge.compose import old_head_in_passes
from bridge_edge.bridge.cost import count_trainable, measure_step_memory
from bridge_edge.bridge.distributed import SINGLE, Dist
from bridge_edge.bridge.prototype import PrototypeBridge, bridge_from_spec, hidden_dims, to_layout
from bridge_edge.bridge.recipe import CHOICES
from bridge_edge.bridge.shards import RowReader, fill_in_passes
from bridge_edge.models.base import ModelAdapter
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


def new_block_output(new: ModelAdapter, x: np.ndarray | torch.Tensor, k_in: int) -> torch.Tensor:
    """Output of new-model block k_in in the model's layout, no grad."""
    with torch.no_grad():
        return new.run_blocks(new.stem(new.prepare(x)), 0, k_in + 1)


def bridge_inputs(
    new: ModelAdapter,
    windows: np.ndarray,
    k_in: int,
    batch_size: int = 64,
    bridge: PrototypeBridge | None = None,
) -> torch.Tensor:
    """Block-k_in outputs of the frozen new model for all windows, in batches, as ``bridge`` reads
    them (None: pooled, (N, d_in): d_in floats a window, the smoke model's 16: 64 bytes; a token
    bridge: (N, d_in, T_in)), the only per-window result kept."""
    new.freeze()
    read = new.pool if bridge is None else (lambda h: bridge.read(new, h))

    def run_pass(rows: slice) -> torch.Tensor:
        return read(new_block_output(new, windows[rows], k_in))

    return fill_in_passes(len(windows), batch_size, run_pass, torch.empty(0))


def bridged_last_hidden(
    old: ModelAdapter, bridge: PrototypeBridge, z: torch.Tensor, k_out: int
) -> torch.Tensor:
    # as factors: the old model's first block after the bridge may run on them (models.frozen_layers)
    coeff, basis = bridge(z, span=True)
    return old.run_blocks_on_span(coeff, basis, k_out, old.n_blocks)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(pred.reshape(pred.shape[0], -1), target.float(), dim=1)).mean()


def head_kl_loss(reference: torch.Tensor, probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean KL(reference || probs) over windows; both (N, K) class probabilities."""
    ref = reference.float()
    return (ref * ((ref + eps).log() - (probs.float() + eps).log())).sum(dim=1).mean()


def head_kl(reference: torch.Tensor, probs: torch.Tensor, eps: float = 1e-8) -> float:
    return float(head_kl_loss(reference, probs, eps))


def make_bridge(
    new: ModelAdapter,
    old: ModelAdapter,
    k_in: int,
    k_out: int,
    rank: int,
    prototypes: int,
    probe: tuple[np.ndarray, np.ndarray],
    init: str = "rand",
    seed: int = 0,
    reads: str = "pooled",
) -> PrototypeBridge:
    """Build a bridge whose shapes are discovered by a probe batch (never hard-coded); ``reads``:
    the recipe's ``[bridge] input``, the new model's pooled output or its tokens."""
    ppg_probe, ecg_probe = probe
    torch.manual_seed(seed)
    with torch.no_grad():
        d_in, t_in = hidden_dims(new_block_output(new, ppg_probe, k_in), new.layout)
        h_out = old.run_blocks(old.stem(old.prepare(ecg_probe)), 0, k_out)
    d_out, n_tokens = hidden_dims(h_out, old.layout)
    shape = {"d_in": d_in, "d_out": d_out, "n_tokens": n_tokens, "rank": rank, "prototypes": prototypes}
    bridge = bridge_from_spec(shape | {"input": reads, "t_in": t_in})
    if init == "randreal":
        tokens = h_out if old.layout == "token_last" else h_out.transpose(1, 2)
        bridge.init_prototypes_from(tokens.reshape(-1, d_out), seed=seed)
    return bridge.to(old.device)


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


def train_bridge(
    old: ModelAdapter,
    new: ModelAdapter,
    bridge: PrototypeBridge,
    k_in: int,
    k_out: int,
    pair: PairData,
    val: PairData,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 16,
    seed: int = 0,
    desc: str = "bridge",
    best_epoch_by: str = "val_loss",
    val_old_probs: np.ndarray | None = None,
    pair_variants: list[np.ndarray] = (),
    dist: Dist = SINGLE,
    sampling: RateBalance | None = None,
    ema_decay: float = 0.0,
    head_kl_weight: float = 0.0,
) -> TrainResult:
    """Train in place; on return ``bridge`` holds the best-validation epoch's weights (their
    moving average with ``ema_decay`` > 0: ``fit_epochs``).

    The loss is the cosine loss on the old model's last hidden state (METHOD), plus, with
    ``head_kl_weight`` > 0, that weight x KL(old head on the paired ECG || old head on the bridged
    PPG); the pair and validation data then carry ``old_probs``.

    ``pair_variants``: other versions of ``pair.ppg`` (same shape, same targets, e.g. the windows
    through other sensors); each training step takes, per window, one version at random.
    Validation always uses the windows as recorded.

    ``val_old_probs`` (N_val, K): the old head's window probabilities on the validation pairs'
    ECG; with them every epoch also records ``val_head_kl``, which ``best_epoch_by`` may select on.

    ``dist``: under torchrun, every rank draws the same batches and sensor versions and trains
    its share of each batch through DDP (``sharded_step``); validation runs whole on every rank.

    ``sampling``: pair windows drawn by weight each epoch (bridge.balance), else a permutation.
    """
    if best_epoch_by not in BEST_EPOCH_CRITERIA:
        raise ValueError(f"best_epoch_by must be one of {BEST_EPOCH_CRITERIA}, got {best_epoch_by!r}")
    if best_epoch_by == "val_head_kl" and (val_old_probs is None or not len(val.ppg)):
        raise ValueError("best_epoch_by='val_head_kl' needs validation windows and their val_old_probs")
    if head_kl_weight and (pair.old_probs is None or (len(val.ppg) and val.old_probs is None)):
        raise ValueError("head_kl_weight > 0 needs the pair and validation old_probs")
    device = old.device
    old.freeze()
    new.freeze()
    opt = torch.optim.Adam(bridge.parameters(), lr=lr)
    torch.manual_seed(seed)

    # The frozen new model's outputs as the bridge reads them, computed once per window and version
    # (keyed by the PairData they belong to): (versions, N, d_in), d_in floats a window, or
    # (versions, N, d_in, T_in) for a token bridge (docs/scale.md). The windows and targets are
    # read a batch at a time.
    pair, val = pair.batched(), val.batched()
    pair_variants = [RowReader(v) for v in pair_variants]
    inputs = {
        id(pair): torch.stack(
            [bridge_inputs(new, p, k_in, bridge=bridge) for p in [pair.ppg, *pair_variants]]
        ),
        id(val): bridge_inputs(new, val.ppg, k_in, bridge=bridge)[None],
    }
    pick = np.random.default_rng([seed, 5])

    trained = dist.wrap(bridge)

    def loss_on(
        data: PairData,
        idx: np.ndarray,
        version: np.ndarray | int = 0,
        net: torch.nn.Module = bridge,
        kl_weight: float = 0.0,
    ) -> torch.Tensor:
        z = inputs[id(data)][torch.as_tensor(version), torch.from_numpy(idx)]
        hidden = bridged_last_hidden(old, net, z, k_out)
        loss = cosine_loss(hidden, torch.from_numpy(data.target[idx]).to(device))
        if kl_weight:
            teacher = torch.from_numpy(np.array(data.old_probs[idx])).to(device)
            loss = loss + kl_weight * head_kl_loss(teacher, old.head(hidden))
        return loss

    def step(idx: np.ndarray) -> float:
        version = pick.integers(0, 1 + len(pair_variants), len(idx))  # drawn for the whole batch
        train_loss = lambda p: loss_on(pair, idx[p], version[p], trained, head_kl_weight)  # noqa: E731
        return sharded_step(opt, len(idx), train_loss, dist)

    def validate() -> dict[str, float]:  # no validation subjects: the pair loss, as in KD
        scores = {"val_loss": mean_loss(loss_on, val if len(val.ppg) else pair, batch_size)}
        if val_old_probs is not None and len(val.ppg):
            z = inputs[id(val)][0]
            head_of = lambda rows: old_head_in_passes(old, to_layout(bridge(z[rows]), old.layout), k_out)  # noqa: E731
            probs = fill_in_passes(len(z), 64, head_of, None)
            teacher = torch.from_numpy(np.array(val_old_probs))  # a copy: the store is mapped read-only
            scores["val_head_kl"] = head_kl(teacher.to(device), probs)
        return scores

    # Resident during a bridge step: the bridge and the old blocks the step runs. The new model's
    # outputs and the old model's targets are cached, so neither model's other blocks run here.
    resident = [bridge] + [old.block(k) for k in range(k_out, old.n_blocks)]
    return fit_epochs(
        bridge,
        step,
        validate,
        n=len(pair.ppg),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        optimizer=opt,
        resident=resident,
        device=device,
        desc=desc,
        best_epoch_by=best_epoch_by,
        sampling=sampling,
        ema_decay=ema_decay,
    )
