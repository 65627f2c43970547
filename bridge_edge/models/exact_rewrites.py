"""Exact rewrites of conv pieces into cheaper ones with the same numbers (up to float rounding).

- ``NearestUpsampleConv1d``: ``conv(upsample_nearest(x, r))`` holds r phases: output sample
  ``r q + phi`` reads the input samples ``x[q + t]`` for a few offsets ``t``, each with the sum of
  the kernel taps that land on it. So the same numbers come from one convolution of ``x`` itself
  with one set of ``C_out`` output channels per distinct phase (phase kernels of at most
  ``ceil((k - 1) / r) + 1`` taps) and an interleave of the phases; the upsampled tensor is
  never built.
- ``ConvThenLinear``: a conv followed by a linear map over its channels is one conv with the
  linear map's output channels.

For openecg's head (x10 upsampling into a 5-tap 128-channel conv, GELU, a second such conv, then
a 128 -> 6 per-sample linear) the two take 2.11 GFLOP per window down to 0.75
(docs/benchmarks.md, "The head at the token rate"). Used when a model is exported
(``ModelAdapter.export_rewrites``); training and torch eager run the model as written. The new
kernels are non-persistent buffers: they export as initializers and never reach a state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def phase_kernels(weight: torch.Tensor, padding: int, factor: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For a stride-1 conv of ``weight`` (C_out, C_in, k) with symmetric ``padding`` read on x
    upsampled ``factor``-fold: (kernels (C_out * U, C_in, taps) of the U distinct phases, the
    distinct phase of each of the ``factor`` phases, left pad in input samples).

    Output channel ``o * U + u`` is output channel ``o`` at distinct phase ``u``. Phases whose taps
    all land on the same input offsets are one phase (x10 into 5 taps: 5 distinct of 10)."""
    c_out, c_in, k = weight.shape
    # tap j of phase phi reads x[q + (phi + j - padding) // factor]
    offsets = (torch.arange(factor)[:, None] + torch.arange(k)[None, :] - padding).div(
        factor, rounding_mode="floor"
    )
    distinct, phase_of = torch.unique(offsets, dim=0, return_inverse=True)
    first = int(offsets.min())
    kernels = weight.new_zeros(c_out, len(distinct), c_in, int(offsets.max()) - first + 1)
    for u, row in enumerate(distinct.tolist()):  # a loop over phases and taps, at build time only
        for j, t in enumerate(row):
            kernels[:, u, :, t - first] += weight[:, :, j]
    return kernels.reshape(c_out * len(distinct), c_in, -1), phase_of, -first


class NearestUpsampleConv1d(nn.Module):
    """``conv(F.interpolate(x, scale_factor=factor, mode="nearest"))`` for a stride-1, ungrouped,
    undilated ``nn.Conv1d`` with 'same' zero padding, computed at x's rate."""

    def __init__(self, conv: nn.Conv1d, factor: int) -> None:
        super().__init__()
        if (
            conv.stride != (1,)
            or conv.dilation != (1,)
            or conv.groups != 1
            or not isinstance(conv.padding, tuple)
        ):
            raise ValueError(f"{conv}: expected a stride-1, undilated, ungrouped Conv1d with numeric padding")
        if conv.padding_mode != "zeros" or 2 * conv.padding[0] != conv.kernel_size[0] - 1:
            raise ValueError(f"{conv}: expected 'same' zero padding, (kernel - 1) / 2 on each side")
        self.factor, self.c_out = int(factor), conv.out_channels
        kernels, phase_of, left = phase_kernels(conv.weight.detach(), conv.padding[0], self.factor)
        self.distinct = int(phase_of.max()) + 1
        self.left, self.right = left, kernels.shape[-1] - 1 - left
        self.register_buffer("weight", kernels, persistent=False)
        self.register_buffer("phase_of", phase_of, persistent=False)
        bias = conv.bias.detach() if conv.bias is not None else kernels.new_zeros(conv.out_channels)
        self.register_buffer("bias", bias.repeat_interleave(self.distinct), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, L * factor)."""
        # A zero of x is ``factor`` zeros of the upsampled signal: exactly the zeros its padding reads.
        phases = F.conv1d(F.pad(x, (self.left, self.right)), self.weight, self.bias)
        b, _, length = phases.shape
        phases = phases.reshape(b, self.c_out, self.distinct, length).index_select(2, self.phase_of)
        return phases.transpose(2, 3).reshape(b, self.c_out, -1)


class ConvThenLinear(nn.Module):
    """``linear(conv(x).transpose(1, 2)).transpose(1, 2)`` as one conv with ``linear``'s output
    channels: (B, C_in, L) -> (B, K, L)."""

    def __init__(self, conv: nn.Conv1d, linear: nn.Linear) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"{conv}: expected an ungrouped Conv1d with numeric zero padding")
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        w = conv.weight.detach()  # (C, C_in, k)
        a = linear.weight.detach()  # (K, C)
        self.register_buffer("weight", torch.einsum("nc,cik->nik", a, w), persistent=False)
        bias = a @ conv.bias.detach() if conv.bias is not None else a.new_zeros(a.shape[0])
        if linear.bias is not None:
            bias = bias + linear.bias.detach()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
