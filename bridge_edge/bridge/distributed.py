"""One process of a ``torchrun`` fit: the process group, this rank's share of a batch, DDP (docs/scale.md).

``torchrun --nproc_per_node N -m bridge_edge fit ...`` starts N copies of ``fit``; each reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment (``Dist.from_env``) and joins a
process group: gloo on CPU, NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). Without
``WORLD_SIZE`` (or with 1) nothing is initialised and every call here is the identity, so a
plain ``bridge-edge fit`` runs exactly as before.

The training stages (pretrain, bridge, KD) run on every rank: every rank draws the same global
batch from the same seeded generator, computes the loss on its share (``Dist.share``: positions
``rank, rank + N, ...`` of the batch, like ``DistributedSampler``'s interleaving), and DDP
averages the gradients. Each rank's loss is weighted by its share of the batch (``n_r N / B``),
so the averaged gradient is the gradient of the global batch mean, as one process computes it.
The features stage shares the windows instead: each rank writes the store of its whole
batches, and rank 0 joins them (bridge.features). Every other stage, and every other write to
the run directory, is rank 0's; the others wait at a barrier (``fit``).

torch is imported inside the functions that need it: ``bridge_edge.bridge.fit`` imports this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from bridge_edge.errors import ConfigError

# Rank 0 runs the data and selection stages while the other ranks wait at a barrier;
# on a large corpus that takes far longer than torch's default 30-minute collective timeout.
BARRIER_TIMEOUT = timedelta(hours=12)
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _env_int(env: dict, key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {key}={raw!r} is not an integer; expected what torchrun sets",
            key=key,
            value=raw,
            expected="integer",
        ) from None


def env_rank(env: dict | None = None) -> int:
    """This process's rank as torchrun set it (0 outside torchrun); no torch import."""
    return _env_int(dict(os.environ if env is None else env), "RANK", 0)


@dataclass(frozen=True)
class Dist:
    """Where this process stands in a torchrun job; ``Dist()`` is the single-process fit."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""  # "" single process, else "gloo" or "nccl"

    @classmethod
    def from_env(cls, device: str, env: dict | None = None) -> Dist:
        """Read torchrun's variables; checks them, initialises nothing (``start`` does)."""
        env = dict(os.environ if env is None else env)
        world = _env_int(env, "WORLD_SIZE", 1)
        rank, local = _env_int(env, "RANK", 0), _env_int(env, "LOCAL_RANK", 0)
        if world < 1 or not 0 <= rank < world or not 0 <= local <= rank:
            raise ConfigError(
                f"torchrun environment RANK={rank} LOCAL_RANK={local} WORLD_SIZE={world} is inconsistent; "
                "expected 0 <= LOCAL_RANK <= RANK < WORLD_SIZE",
                key="WORLD_SIZE",
                value={"RANK": rank, "LOCAL_RANK": local, "WORLD_SIZE": world},
                expected="0 <= LOCAL_RANK <= RANK < WORLD_SIZE",
            )
        if world == 1:
            return cls()
        return cls(rank, world, local, "nccl" if device.startswith("cuda") else "gloo")

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """The torch device of this rank: ``cuda:LOCAL_RANK`` under NCCL, else ``device``."""
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else device

    def start(self) -> None:
        """Join the process group (torchrun's ``env://`` rendezvous); a no-op for one process."""
        if not self.active:
            return
        import torch
        import torch.distributed as td

        if self.backend == "nccl":
            torch.cuda.set_device(self.local_rank)
        if not td.is_initialized():
            td.init_process_group(
                self.backend, rank=self.rank, world_size=self.world_size, timeout=BARRIER_TIMEOUT
            )

    def stop(self) -> None:
        if self.active:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def share(self, n: int) -> tuple[np.ndarray, float]:
        """(positions in a global batch of ``n`` this rank computes, their weight n_r / n).

        Interleaved like ``DistributedSampler``: positions rank, rank + N, ... . A rank whose share
        is empty (n < world size) computes the whole batch with weight 0, so every rank still runs
        a backward pass over every parameter (DDP needs that) and batch norm sees > 1 sample."""
        mine = np.arange(self.rank, n, self.world_size)
        if not len(mine):
            return np.arange(n), 0.0
        return mine, len(mine) / n

    def total(self, value: float) -> float:
        """The sum of ``value`` over ranks (a float, e.g. a loss weighted by its share)."""
        if not self.active:
            return float(value)
        import torch
        import torch.distributed as td

        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        td.all_reduce(t)
        return float(t.item())

    def total_tensor(self, t):
        """Sum of a tensor over ranks, without gradient (e.g. a count of known targets)."""
        if not self.active:
            return t
        import torch.distributed as td

        out = t.detach().clone()
        td.all_reduce(out)
        return out

    def wrap(self, module, find_unused_parameters: bool = False):
        """``module`` in DistributedDataParallel (gradients averaged over ranks); itself for one process.

        Train through the returned wrapper; keep and save ``module`` (its state dict has no prefix)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)

    def average_gradients(self, params) -> None:
        """Average ``.grad`` over ranks in one flat all-reduce (what DDP does, without its overlap),
        for a loop that calls its modules' parts directly rather than through ``forward``."""
        if not self.active:
            return
        import torch
        import torch.distributed as td

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        td.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def _comm_device(self) -> str:
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"


SINGLE = Dist()
