"""The adapter interface: every foundation model seen as stem -> blocks[0..n) -> head.

BioX-Bridge needs to run a model *up to* a block (new modality, bridge input = output of block
k_in) and *from* a block (old modality, bridge output = input of block k_out). Models whose
forward applies blocks inline (openecg) are re-expressed by their adapter as this block list.

Conventions (docs/method.md):
- ``hidden`` tensors between blocks have a declared ``layout``: "token_last" = (B, T, D)
  (transformers), "channel_first" = (B, D, T) (conv nets). An adapter that mixes both inside
  (openecg: conv blocks then transformer layers) converts internally and presents one layout.
- ``pool(h)`` is the mean over the token/time axis of that layout -> (B, D).
- ``run_blocks(h, start, stop)`` runs blocks[start:stop] (stop exclusive).
- Index k of the bridge input = *output* of block k  = run_blocks(stem(x), 0, k + 1).
- Index k of the bridge output = *input* of block k, continued by run_blocks(h, k, n_blocks).
- ``head(h)`` maps the hidden state after the last block to window-level class probabilities
  (B, K) for a task model (``labels`` non-empty); for an encoder without a task head
  (``labels == ()``) it returns the pooled embedding (B, D).

This module imports no torch; adapters (subclasses) do, inside their own modules.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bridge_edge.errors import DataError, ModelError, NonFiniteError

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
        return round(self.fs * self.window_s)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["n_samples"] = self.n_samples
        return d


class ModelAdapter:
    """Base class; subclasses wrap one torch module (``self.module``) and set the class fields."""

    name: str = "model"
    kind: str = "generic"  # registry key that builds this adapter
    layout: Layout = "token_last"
    input_spec: InputSpec
    block_paths: tuple[str, ...] = ()  # e.g. ("upper_transformer.layers[0]", ...), in execution order
    labels: tuple[str, ...] = ()  # task labels of the head (old-modality model), else ()
    module: Any = None  # the wrapped torch.nn.Module

    @property
    def n_blocks(self) -> int:
        return len(self.block_paths)

    # -- to implement -------------------------------------------------------------------------
    def prepare(self, x):  # (B, n_samples) float window at input_spec.fs -> model input tensor
        raise NotImplementedError

    def stem(self, x):  # model input -> hidden before block 0
        raise NotImplementedError

    def head(self, h):  # hidden after the last block -> (B, K) probabilities, or (B, D) embedding
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def run_blocks(self, h, start: int, stop: int):
        """Default: each block is a module taking and returning one hidden tensor."""
        self._check_range(start, stop)
        for k in range(start, stop):
            h = self.block(k)(h)
        return h

    def export_rewrites(self):
        """A context in which the module computes the same numbers in a form cheaper to deploy;
        ``export.onnx_export`` exports inside it, its parity check runs outside. Default: none."""
        return contextlib.nullcontext()

    def pool(self, h):
        return h.mean(dim=1) if self.layout == "token_last" else h.mean(dim=2)

    def block(self, k: int):
        """The module block ``k`` names (resolved from ``block_paths``, no eval)."""
        from bridge_edge.models.addressing import resolve_path

        return resolve_path(self.module, self.block_paths[k])

    def features(self, x, k: int):
        """Output of block k for a prepared input (bridge input position k)."""
        return self.run_blocks(self.stem(x), 0, k + 1)

    def run_blocks_on_span(self, coeff, basis, start: int, stop: int):
        """``run_blocks(h, start, stop)`` for a bridged ``h`` given as ``basis @ coeff`` (channel-first
        (B, D, T), from ``basis`` (D, P) and ``coeff`` (B, P, T)). Adapters that can run their
        first block on the span without building ``h`` (models.frozen_layers) override this."""
        h = basis @ coeff
        return self.run_blocks(h.transpose(1, 2) if self.layout == "token_last" else h, start, stop)

    def forward_from(self, h, k: int):
        """Continue from the *input* of block k to the head (bridge output position k)."""
        return self.head(self.run_blocks(h, k, self.n_blocks))

    def forward(self, x):
        """Prepared input -> head output, through the block list."""
        return self.forward_from(self.stem(x), 0)

    @property
    def device(self):
        import torch

        try:
            return next(self.module.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def to(self, device) -> ModelAdapter:
        self.module.to(device)
        return self

    def freeze(self) -> ModelAdapter:
        """Eval mode and no parameter gradients (frozen foundation model, docs/method.md)."""
        self.module.eval()
        self.module.requires_grad_(False)
        return self

    def parameter_count(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad or not trainable_only)

    def license_text(self) -> str | None:
        """Licence notice a bundle carrying these weights must include (None: project's own)."""
        return None

    def describe(self) -> dict:
        """Plain-data summary for reports and bundle manifests."""
        return {
            "name": self.name,
            "kind": self.kind,
            "layout": self.layout,
            "input": self.input_spec.as_dict(),
            "block_paths": list(self.block_paths),
            "labels": list(self.labels),
            "parameters": self.parameter_count(),
        }

    # -- helpers for subclasses ---------------------------------------------------------------
    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.n_blocks:
            raise ModelError(
                f"{self.name}: block range [{start}, {stop}) is outside [0, {self.n_blocks}]",
                model=self.name,
                reason="block range",
            )

    def _as_batch(self, x):
        """Windows (B, n) or (n,) as a float32 numpy array after checking length and finiteness."""
        import numpy as np

        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        arr = np.asarray(x, dtype=np.float32)
        if not arr.flags.writeable:  # rows of a read-only memory-mapped run directory (docs/scale.md)
            arr = arr.copy()  # torch.from_numpy wants a buffer it may write
        if arr.ndim == 1:
            arr = arr[None, :]
        n = self.input_spec.n_samples
        if arr.ndim != 2 or arr.shape[1] != n:
            raise DataError(
                f"{self.name}: expected windows of shape (B, {n}) ({self.input_spec.window_s} s at "
                f"{self.input_spec.fs} Hz), got {tuple(arr.shape)}",
                path=self.name,
                reason="window shape",
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            raise NonFiniteError(
                f"{self.name}: {int(bad.sum())} non-finite samples in the input windows; expected finite values",
                where=f"{self.name} input",
                count=int(bad.sum()),
                first_index=int(np.flatnonzero(bad.ravel())[0]),
            )
        return arr
