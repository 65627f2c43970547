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

import numpy as np
import torch
import torch.nn.functional as F

from bridge_edge.bridge.balance import RateBalance
from bridge_edge.bridge.compose import old_head_in_passes
from bridge_edge.bridge.distributed import SINGLE, Dist
from bridge_edge.bridge.loop import (
    BEST_EPOCH_CRITERIA,
    PairData,
    TrainResult,
    fit_epochs,
    mean_loss,
    sharded_step,
)
from bridge_edge.bridge.prototype import PrototypeBridge, bridge_from_spec, hidden_dims, to_layout
from bridge_edge.bridge.shards import RowReader, fill_in_passes
from bridge_edge.models.base import ModelAdapter


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
    local_rank: int = 0,
) -> PrototypeBridge:
    """Build a bridge whose shapes are discovered by a probe batch (never hard-coded); ``reads``:
    the recipe's ``[bridge] input``, the new model's pooled output or its tokens; ``local_rank``:
    the token term's rank (0: ``rank``)."""
    ppg_probe, ecg_probe = probe
    torch.manual_seed(seed)
    with torch.no_grad():
        d_in, t_in = hidden_dims(new_block_output(new, ppg_probe, k_in), new.layout)
        h_out = old.run_blocks(old.stem(old.prepare(ecg_probe)), 0, k_out)
    d_out, n_tokens = hidden_dims(h_out, old.layout)
    shape = {"d_in": d_in, "d_out": d_out, "n_tokens": n_tokens, "rank": rank, "prototypes": prototypes}
    bridge = bridge_from_spec(shape | {"input": reads, "t_in": t_in, "local_rank": local_rank})
    if init == "randreal":
        tokens = h_out if old.layout == "token_last" else h_out.transpose(1, 2)
        bridge.init_prototypes_from(tokens.reshape(-1, d_out), seed=seed)
    return bridge.to(old.device)


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
