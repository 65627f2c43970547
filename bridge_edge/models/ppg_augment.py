"""PPG augmentations for contrastive pretraining, vectorised over the batch (torch).

Each view is a random crop of a (longer) source window, then amplitude scaling, baseline
wander, optionally a motion burst, additive noise and a time mask, then the per-window z-score
of preprocessing ppg-v1 again so views look like what the model sees at inference. None of
these change the beat intervals, so two views of one window agree on rhythm (regular or
irregular) and heart rate.
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
    # Motion bursts, as wrist PPG has them: band-limited noise over part of the view, up to several
    # times the pulse. Off by default; with it on, an encoder asked for the clean source window's
    # targets learns to read rhythm through motion instead of failing on every moving window.
    motion_prob: float = 0.0
    motion_amp: tuple[float, float] = (0.5, 6.0)  # burst std in units of the view's std
    motion_s: tuple[float, float] = (1.0, 8.0)
    motion_band_hz: tuple[float, float] = (0.2, 4.0)


def _uniform(lo_hi: tuple[float, float], n: int, gen: torch.Generator, device) -> torch.Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, 1, generator=gen, device=device)


def random_crop(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """(B, L_src) -> (B, length), each row from its own random offset (one gather, no loop)."""
    b, l_src = x.shape
    offset = torch.randint(0, l_src - length + 1, (b, 1), generator=gen, device=x.device)
    idx = offset + torch.arange(length, device=x.device)
    return torch.gather(x, 1, idx)


def _span_mask(b: int, length: int, span: torch.Tensor, gen: torch.Generator, device) -> torch.Tensor:
    """(B, length) bool: one contiguous span per row of ``span`` (B, 1) samples at a random start."""
    start = (torch.rand(b, 1, generator=gen, device=device) * (length - span)).long()
    pos = torch.arange(length, device=device)
    return (pos >= start) & (pos < start + span)


def motion_burst(v: torch.Tensor, fs: float, gen: torch.Generator, spec: AugmentSpec) -> torch.Tensor:
    """Add a band-limited noise burst to a random ``spec.motion_prob`` share of the rows."""
    b, length = v.shape
    dev = v.device
    white = torch.randn(v.shape, generator=gen, device=dev, dtype=v.dtype)
    freqs = torch.fft.rfftfreq(length, 1.0 / fs, device=dev)
    band = (freqs >= spec.motion_band_hz[0]) & (freqs <= spec.motion_band_hz[1])
    burst = torch.fft.irfft(torch.fft.rfft(white, dim=1) * band, n=length, dim=1)
    burst = burst / burst.std(dim=1, keepdim=True).clamp_min(spec.std_floor)
    span = (_uniform(spec.motion_s, b, gen, dev) * fs).long().clamp(1, length)
    on = torch.rand(b, 1, generator=gen, device=dev) < spec.motion_prob
    size = _uniform(spec.motion_amp, b, gen, dev) * v.std(dim=1, keepdim=True) * on
    return v + size * _span_mask(b, length, span, gen, dev) * burst


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
    if spec.motion_prob > 0:  # no extra random draws when off: existing runs stay reproducible
        v = motion_burst(v, fs, gen, spec)
    v = v + _uniform(spec.noise_std, b, gen, dev) * torch.randn(v.shape, generator=gen, device=dev)
    # time mask: one span per window, zero length allowed
    span = (torch.rand(b, 1, generator=gen, device=dev) * spec.mask_fraction * length).long()
    v = v.masked_fill(_span_mask(b, length, span, gen, dev), 0.0)
    mean = v.mean(dim=1, keepdim=True)
    std = v.std(dim=1, keepdim=True, unbiased=False).clamp_min(spec.std_floor)
    return (v - mean) / std
