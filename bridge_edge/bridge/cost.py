"""Training cost bookkeeping shared by the bridge and the KD baseline (measured the same way).

Peak memory of one training step (after a warm-up step, so optimizer state exists):
- CUDA: ``torch.cuda.max_memory_allocated`` around the step (everything on the GPU counts).
- CPU: resident bytes of every tensor the method keeps (parameters and buffers of the models it
  runs, optimizer state) plus the peak of bytes allocated during the step, read from the torch
  profiler's allocation events. (``tracemalloc`` does not see torch's CPU allocator, so it
  would report ~0 for both methods.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MemoryMeasure:
    peak_bytes: int
    method: str  # "cuda.max_memory_allocated" | "cpu.profiler+resident"


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def resident_bytes(modules: Iterable[torch.nn.Module], optimizer: torch.optim.Optimizer) -> int:
    tensors = []
    for m in modules:
        tensors += list(m.parameters()) + list(m.buffers())
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor) and v.numel() > 1]
    return tensor_bytes(tensors)


def measure_step_memory(
    step: Callable[[], None],
    modules: list[torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> MemoryMeasure:
    """Run ``step`` once and return its peak memory (see module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return MemoryMeasure(int(torch.cuda.max_memory_allocated(device)), "cuda.max_memory_allocated")
    from torch.profiler import ProfilerActivity, profile

    base = resident_bytes(modules, optimizer)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(prof.profiler.function_events, key=lambda e: e.time_range.start)
    live = np.cumsum([e.self_cpu_memory_usage for e in events]) if events else np.zeros(1)
    return MemoryMeasure(int(base + max(0, live.max())), "cpu.profiler+resident")


def count_trainable(modules: Iterable[torch.nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)
