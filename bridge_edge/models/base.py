"""The adapter interface: every foundation model seen as stem -> blocks[0..n) -> head.

BioX-Bridge needs to run a model *up to* a block (new modality, bridge input = output of block
k_in) and *from* a block (old modality, bridge output = input of block k_out). Models whose
forward applies blocks inline (openecg) are re-expressed by their adapter as this block list.

Conventions (METHOD §2.5, §12):
- ``hidden`` tensors between blocks have a declared ``layout``: "token_last" = (B, T, D)
  (transformers), "channel_first" = (B, D, T) (conv nets). An adapter that mixes both inside
  (openecg: conv blocks then transformer layers) converts internally and presents one layout.
- ``pool(h)`` is the mean over the token/time axis of that layout -> (B, D).
- ``run_blocks(h, start, stop)`` runs blocks[start:stop] (stop exclusive).
- Index k of the bridge input = *output* of block k  = run_blocks(stem(x), 0, k + 1).
- Index k of the bridge output = *input* of block k, continued by run_blocks(h, k, n_blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Layout = Literal["token_last", "channel_first"]


@dataclass(frozen=True)
class InputSpec:
    """What one model window is: rate, length, channels, and how it is normalised."""

    modality: str  # "ecg" | "ppg" | ...
    fs: float  # Hz the model expects
    window_s: float  # seconds per window
    channels: int = 1
    normalisation: str = ""  # human-readable, e.g. "rank-normalised (openecg)", "z-score per window"
    preprocess: dict = field(default_factory=dict)  # versioned preprocessing spec (signals.preprocess)

    @property
    def n_samples(self) -> int:
        return int(round(self.fs * self.window_s))


class ModelAdapter:
    """Base class; subclasses wrap one torch module. torch is imported by subclasses only."""

    name: str = "model"
    layout: Layout = "token_last"
    input_spec: InputSpec
    block_paths: tuple[str, ...] = ()  # e.g. ("upper_transformer.layers[0]", ...), in execution order
    labels: tuple[str, ...] = ()  # task labels of the head (old-modality model), else ()

    @property
    def n_blocks(self) -> int:
        return len(self.block_paths)

    # -- to implement -------------------------------------------------------------------------
    def prepare(self, x):  # (B, n_samples) float32 window at input_spec.fs -> model input tensor
        raise NotImplementedError

    def stem(self, x):  # model input -> hidden before block 0
        raise NotImplementedError

    def run_blocks(self, h, start: int, stop: int):
        raise NotImplementedError

    def head(self, h):  # hidden after the last block -> window-level class probabilities (B, K)
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def pool(self, h):
        return h.mean(dim=1) if self.layout == "token_last" else h.mean(dim=2)
