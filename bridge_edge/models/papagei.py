"""PaPaGei ResNet1D (the default new-modality PPG encoder), with PaPaGei-S state-dict names.

Layout (docs/method.md, ``ResNet1DMoE``): stem = ``first_block_conv`` (same-padded conv) +
``first_block_bn`` + ReLU; ``basicblock_list[i]`` = pre-activation basic blocks
(BN-ReLU-Dropout-Conv, twice; block 0 skips the first pre-activation), stride 2 at odd blocks,
channels doubling every ``increasefilter_gap`` blocks; the shortcut is a same-padded max-pool
plus zero channel padding. ``final_bn``/``dense`` and the two mixture-of-experts heads exist so a
real ``papagei_s.pt`` loads strictly; the adapter's head uses only ``final_bn`` + ReLU + mean.

``PAPAGEI_S`` is the published size (≈5.79 M parameters, 60 s at 125 Hz); ``PAPAGEI_SMALL`` is
the default that the project pretrains itself (10 s at 125 Hz, a few ten thousand parameters,
wider kernel so a block sees several beats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bridge_edge.models.base import InputSpec, ModelAdapter
from bridge_edge.models.checkpoints import load_state_strict, read_state_file, strip_prefix


@dataclass(frozen=True)
class PapageiConfig:
    in_channels: int = 1
    base_filters: int = 32
    kernel_size: int = 3
    stride: int = 2
    groups: int = 1
    n_block: int = 18
    n_classes: int = 512
    n_experts: int = 3
    downsample_gap: int = 2
    increasefilter_gap: int = 4
    fs: float = 125.0
    window_s: float = 60.0

    def as_dict(self) -> dict:
        return asdict(self)

    def block_channels(self) -> list[tuple[int, int]]:
        """(in, out) channels of every basic block."""
        out = []
        for i in range(self.n_block):
            c_in = (
                self.base_filters if i == 0 else self.base_filters * 2 ** ((i - 1) // self.increasefilter_gap)
            )
            doubles = i != 0 and i % self.increasefilter_gap == 0
            out.append((c_in, 2 * c_in if doubles else c_in))
        return out


PAPAGEI_S = PapageiConfig()
PAPAGEI_SMALL = PapageiConfig(base_filters=16, kernel_size=7, n_block=8, n_classes=64, window_s=10.0)
CONFIGS = {"papagei_s": PAPAGEI_S, "small": PAPAGEI_SMALL}


def _same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """TensorFlow-style 'same' zero padding: output length = ceil(L / stride)."""
    length = x.shape[-1]
    out_len = (length + stride - 1) // stride
    total = max(0, (out_len - 1) * stride + kernel_size - length)
    return F.pad(x, (total // 2, total - total // 2))


class ConvSame(nn.Module):
    """Conv1d with same padding; the inner ``conv`` keeps PaPaGei's ``*.conv.weight`` names."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_same_pad(x, self.kernel_size, self.stride))


class BasicBlock(nn.Module):
    """Pre-activation residual block; downsampling blocks stride the first conv and max-pool the shortcut."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, groups: int, first: bool
    ) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.first = c_in, c_out, stride, first
        self.bn1 = nn.BatchNorm1d(c_in)
        self.do1 = nn.Dropout(0.5)
        self.conv1 = ConvSame(c_in, c_out, kernel_size, stride, groups)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.do2 = nn.Dropout(0.5)
        self.conv2 = ConvSame(c_out, c_out, kernel_size, 1, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.first else self.do1(F.relu(self.bn1(x)))
        out = self.conv1(out)
        out = self.conv2(self.do2(F.relu(self.bn2(out))))
        identity = x
        if self.stride > 1:
            # MaxPool1d(kernel=stride) after 'same' padding for a stride-1 window, as PaPaGei does.
            identity = F.max_pool1d(_same_pad(identity, self.stride, 1), self.stride)
        if self.c_out != self.c_in:
            extra = self.c_out - self.c_in
            identity = F.pad(identity, (0, 0, extra // 2, extra - extra // 2))
        return out + identity


def _expert(width: int, dropout: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(width, width // 2), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(0.3))
    layers.append(nn.Linear(width // 2, 1))
    return nn.Sequential(*layers)


class ResNet1DMoE(nn.Module):
    """PaPaGei-S encoder; parameter names match the published checkpoint."""

    def __init__(self, config: PapageiConfig = PAPAGEI_S) -> None:
        super().__init__()
        self.config = config
        c = config
        self.first_block_conv = ConvSame(c.in_channels, c.base_filters, c.kernel_size, 1)
        self.first_block_bn = nn.BatchNorm1d(c.base_filters)
        self.basicblock_list = nn.ModuleList(
            BasicBlock(
                c_in,
                c_out,
                c.kernel_size,
                c.stride if i % c.downsample_gap == 1 else 1,
                c.groups,
                first=i == 0,
            )
            for i, (c_in, c_out) in enumerate(c.block_channels())
        )
        width = c.block_channels()[-1][1]
        self.final_bn = nn.BatchNorm1d(width)
        self.dense = nn.Linear(width, c.n_classes)
        # Unused by bridge-edge; present so published checkpoints load strictly.
        self.expert_layers_1 = nn.ModuleList(_expert(width, dropout=False) for _ in range(c.n_experts))
        self.gating_network_1 = nn.Sequential(nn.Linear(width, c.n_experts), nn.Softmax(dim=1))
        self.expert_layers_2 = nn.ModuleList(_expert(width, dropout=True) for _ in range(c.n_experts))
        self.gating_network_2 = nn.Sequential(nn.Linear(width, c.n_experts), nn.Softmax(dim=1))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.first_block_bn(self.first_block_conv(x)))

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden after the last block -> pooled embedding (B, width)."""
        return F.relu(self.final_bn(h)).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.basicblock_list:
            h = block(h)
        return self.embed(h)


def load_papagei_checkpoint(path: str | Path, config: PapageiConfig = PAPAGEI_S) -> ResNet1DMoE:
    """Build the model for ``config`` and load a PaPaGei checkpoint strictly (``module.`` stripped)."""
    state = read_state_file(path)
    if (
        isinstance(state, dict)
        and "model_state_dict" in state
        and isinstance(state["model_state_dict"], dict)
    ):
        state = state["model_state_dict"]
    model = ResNet1DMoE(config)
    load_state_strict(model, strip_prefix(state, "module."), str(path))
    return model.eval()


class PapageiAdapter(ModelAdapter):
    """PPG windows (B, n_samples), already preprocessed (signals.preprocess) -> channel-first blocks."""

    kind = "papagei"
    layout = "channel_first"

    def __init__(
        self,
        config: PapageiConfig = PAPAGEI_SMALL,
        checkpoint: str | Path | None = None,
        preprocess: dict | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config
        if checkpoint is not None and Path(checkpoint).suffix != ".safetensors":
            self.module = load_papagei_checkpoint(checkpoint, config)
        else:
            self.module = ResNet1DMoE(config)
            if checkpoint is not None:
                state = read_state_file(checkpoint)
                load_state_strict(self.module, strip_prefix(state, "module."), str(checkpoint))
        self.module.to(device)
        self.name = (
            "papagei-s" if config == PAPAGEI_S else f"papagei-b{config.base_filters}-n{config.n_block}"
        )
        self.block_paths = tuple(f"basicblock_list[{i}]" for i in range(config.n_block))
        self.input_spec = InputSpec(
            modality="ppg",
            fs=config.fs,
            window_s=config.window_s,
            channels=config.in_channels,
            normalisation="z-score per window (signals.preprocess ppg-v1)",
            preprocess=dict(preprocess or {}),
        )

    def prepare(self, x) -> torch.Tensor:
        return torch.from_numpy(self._as_batch(x)).unsqueeze(1).to(self.device)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.stem(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.module.embed(h)

    def describe(self) -> dict:
        return {**super().describe(), "config": self.config.as_dict()}
