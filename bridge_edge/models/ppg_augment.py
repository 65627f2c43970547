"""PPG augmentations for contrastive pretraining, vectorised over the batch (torch).

Each view is a random crop of a (longer) source window, then amplitude scaling, baseline
wander, additive noise and a time mask, then the per-window z-score of preprocessing ppg-v1
again so views look like what the model sees at inference. None of these change the beat
intervals, so two views of one window agree on rhythm (regular or irregular) and heart rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSpec:
    scale: tuple[float, float] = (0.6, 1.4)
    noise_std: tuple[float, float] = (0.0, 0.25)  # in units of the window's std
    wander_amp: tuple[float, float] = (0.0, 0.5)
    wander_hz: tuple[float, float] = (0.05, 0.4)
    mask_fraction: float = 0.03  # longest masked span (fraction of the window): shorter than a beat, so
    # a mask never looks like a dropped beat (which would teach invariance to irregularity)
    std_floor: float = 1e-6


def _uniform(lo_hi: tuple[float, float], n: int, gen: torch.Generator, device) -> torch.Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, 1, generator=gen, device=device)


def random_crop(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """(B, L_src) -> (B, length), each row from its own random offset (one gather, no loop)."""
    b, l_src = x.shape
    offset = torch.randint(0, l_src - length + 1, (b, 1), generator=gen, device=x.device)
    idx = offset + torch.arange(length, device=x.device)
    return torch.gather(x, 1, idx)


def augment(
    x: torch.Tensor, length: int, fs: float, gen: torch.Generator, spec: AugmentSpec | None = None
) -> torch.Tensor:
    """One random view (B, length) of source windows (B, L_src >= length)."""
    spec = spec or AugmentSpec()
    b = x.shape[0]
    dev = x.device
    v = random_crop(x, length, gen)
    t = torch.arange(length, device=dev, dtype=v.dtype) / fs
    v = v * _uniform(spec.scale, b, gen, dev)
    phase = 2 * torch.pi * torch.rand(b, 1, generator=gen, device=dev)
    hz = _uniform(spec.wander_hz, b, gen, dev)
    v = v + _uniform(spec.wander_amp, b, gen, dev) * torch.sin(2 * torch.pi * hz * t + phase)
    v = v + _uniform(spec.noise_std, b, gen, dev) * torch.randn(v.shape, generator=gen, device=dev)
    # time mask: one span per window, zero length allowed
    span = (torch.rand(b, 1, generator=gen, device=dev) * spec.mask_fraction * length).long()
    start = (torch.rand(b, 1, generator=gen, device=dev) * (length - span)).long()
    pos = torch.arange(length, device=dev)
    masked = (pos >= start) & (pos < start + span)
    v = v.masked_fill(masked, 0.0)
    mean = v.mean(dim=1, keepdim=True)
    std = v.std(dim=1, keepdim=True, unbiased=False).clamp_min(spec.std_floor)
    return (v - mean) / std
