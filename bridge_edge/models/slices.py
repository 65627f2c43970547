"""Adapters cut into plain ``nn.Module`` pieces, for composing a deployable model without hooks.

``UpToBlock(adapter, k)``: prepared input -> stem -> blocks[0..k] -> pooled (B, D_k)
(the bridge input at position k). ``FromBlock(adapter, k)``: hidden input of block k ->
blocks[k..n) -> head (the old model continued from bridge output position k). Both register
the adapter's module as a child, so ``.to(device)``, ``state_dict`` and ONNX export see the
weights; they run only the blocks they name.
"""

from __future__ import annotations

from torch import nn

from bridge_edge.models.base import ModelAdapter


class UpToBlock(nn.Module):
    def __init__(self, adapter: ModelAdapter, k: int, pooled: bool = True) -> None:
        super().__init__()
        adapter._check_range(0, k + 1)
        self.adapter, self.k, self.pooled = adapter, k, pooled
        self.model = adapter.module

    def forward(self, x):
        h = self.adapter.run_blocks(self.adapter.stem(x), 0, self.k + 1)
        return self.adapter.pool(h) if self.pooled else h


class FromBlock(nn.Module):
    def __init__(self, adapter: ModelAdapter, k: int) -> None:
        super().__init__()
        adapter._check_range(k, adapter.n_blocks)
        self.adapter, self.k = adapter, k
        self.model = adapter.module

    def forward(self, h):
        return self.adapter.head(self.adapter.run_blocks(h, self.k, self.adapter.n_blocks))
