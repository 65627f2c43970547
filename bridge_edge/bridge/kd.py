"""Knowledge-distillation baseline (docs/method.md): the whole new-modality model is the student.

Student = a copy of the (pretrained) new-modality encoder, all blocks trainable, + a linear
head from its pooled last-block output to the old head's classes. It is trained on the old
model's soft window outputs over the same pair windows, with the same batch size and the same
bookkeeping as the bridge (trainable parameters, peak step memory, seconds per epoch); the best
epoch is the one with the lowest validation KD loss.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bridge_edge.bridge.balance import RateBalance
from bridge_edge.bridge.distributed import SINGLE, Dist
from bridge_edge.bridge.loop import PairData, TrainResult, fit_epochs, mean_loss, sharded_step
from bridge_edge.bridge.shards import RowReader, fill_in_passes
from bridge_edge.models.base import ModelAdapter


class KDStudent(nn.Module):
    """New-model encoder + linear head; ``forward`` takes prepared input, returns logits (B, K)."""

    def __init__(self, new: ModelAdapter, n_classes: int, d_last: int) -> None:
        super().__init__()
        self.adapter = new
        self.encoder = new.module  # registered, so parameters()/state_dict() include it
        self.head = nn.Linear(d_last, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.adapter
        return self.head(a.pool(a.run_blocks(a.stem(x), 0, a.n_blocks)))

    @torch.no_grad()
    def predict_proba(self, windows: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, K), ``batch_size`` windows a pass, written into one array."""
        self.eval()

        def run_pass(rows: slice) -> np.ndarray:
            return torch.softmax(self(self.adapter.prepare(windows[rows])), dim=1).float().cpu().numpy()

        empty = np.zeros((0, self.head.out_features), np.float32)
        return fill_in_passes(len(windows), batch_size, run_pass, empty)


def make_student(new: ModelAdapter, n_classes: int, probe: np.ndarray, seed: int = 0) -> KDStudent:
    student_adapter = copy.deepcopy(new)
    student_adapter.module.requires_grad_(True)
    with torch.no_grad():
        a = student_adapter
        d_last = a.pool(a.run_blocks(a.stem(a.prepare(probe)), 0, a.n_blocks)).shape[1]
    torch.manual_seed(seed)
    return KDStudent(student_adapter, n_classes, d_last).to(new.device)


def gather_versions(versions: list, version: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Row ``idx[j]`` of ``versions[version[j]]`` for every j: ``np.stack(versions)[version, idx]``
    without stacking the versions (each is read only at the rows the batch takes)."""
    dtype = np.result_type(*(v.dtype for v in versions))  # as np.stack would give
    out = np.empty((len(idx), *versions[0].shape[1:]), dtype)
    for v in np.unique(version):
        at = np.flatnonzero(version == v)
        out[at] = versions[v][idx[at]]
    return out


def kd_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    logp = F.log_softmax(logits, dim=1)
    if kind == "ce":
        return -(teacher_probs * logp).sum(dim=1).mean()
    return F.kl_div(logp, teacher_probs, reduction="batchmean")


def train_kd(
    student: KDStudent,
    pair: PairData,
    val: PairData,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 16,
    loss: str = "kl",
    seed: int = 0,
    desc: str = "kd",
    pair_variants: list[np.ndarray] = (),
    dist: Dist = SINGLE,
    sampling: RateBalance | None = None,
    ema_decay: float = 0.0,
) -> TrainResult:
    """Train in place; on return ``student`` holds the best-validation epoch's weights (their
    moving average with ``ema_decay`` > 0, as for the bridge: bridge.loop.fit_epochs).

    ``pair_variants``: other versions of ``pair.ppg`` (as for the bridge, bridge.train): each
    training step takes, per window, one version at random; validation uses the windows as recorded.

    ``dist``: under torchrun, each rank trains its share of every batch through DDP (as the bridge,
    bridge.loop.sharded_step). Batch norm then normalises each rank's share by its own statistics
    and dropout draws per rank, so a 2-process student is a different draw, not the same numbers.
    """
    device = next(student.parameters()).device
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    torch.manual_seed(seed)
    prep = student.adapter.prepare
    pair, val = pair.batched(), val.batched()  # read a batch at a time (docs/scale.md)
    versions = [pair.ppg, *(RowReader(v) for v in pair_variants)]
    pick = np.random.default_rng([seed, 5])

    trained = dist.wrap(student, find_unused_parameters=True)  # the encoder's own head is unused

    def loss_on(
        data: PairData, idx: np.ndarray, windows: np.ndarray | None = None, net: nn.Module = student
    ) -> torch.Tensor:
        x = data.ppg[idx] if windows is None else windows
        return kd_loss(net(prep(x)), torch.from_numpy(data.target[idx]).float().to(device), loss)

    def step(idx: np.ndarray) -> float:
        chosen = gather_versions(versions, pick.integers(0, len(versions), len(idx)), idx)  # whole batch
        return sharded_step(opt, len(idx), lambda p: loss_on(pair, idx[p], chosen[p], trained), dist)

    def validate() -> dict[str, float]:
        return {"val_loss": mean_loss(loss_on, val if len(val.ppg) else pair, batch_size)}

    return fit_epochs(
        student,
        step,
        validate,
        n=len(pair.ppg),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        optimizer=opt,
        resident=[student],
        device=device,
        desc=desc,
        sampling=sampling,  # the bridge's, for a fair baseline
        ema_decay=ema_decay,
    )
