"""Generic adapter: a user's module from an import path + recipe table; registry picks backends."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bridge_edge.errors import CheckpointError, ConfigError, LayerPathError
from bridge_edge.models.registry import build_adapter

torch.set_num_threads(1)


class TinyNet(nn.Module):
    """Conv stem to tokens, a few residual MLP blocks, a linear head."""

    def __init__(self, width: int = 8, depth: int = 3, classes: int = 2):
        super().__init__()
        self.embed = nn.Conv1d(1, width, kernel_size=5, stride=5)
        self.to_tokens = Transpose()
        self.blocks = nn.ModuleList(Residual(width) for _ in range(depth))
        self.pool = MeanTokens()
        self.classifier = nn.Sequential(nn.Linear(width, classes), nn.Softmax(dim=-1))

    def forward(self, x):
        h = self.to_tokens(self.embed(x))
        for b in self.blocks:
            h = b(h)[0]
        return self.classifier(self.pool(h))


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class MeanTokens(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return (x + torch.tanh(self.fc(x)),)  # tuple output, like HuggingFace layers


def table(**extra):
    return {
        "kind": "generic",
        "import": f"{__name__}:TinyNet",
        "kwargs": {"width": 8, "depth": 3},
        "block_paths": ["blocks[0]", "blocks[1]", "blocks[2]"],
        "stem_paths": ["embed", "to_tokens"],
        "head_paths": ["pool", "classifier"],
        "labels": ["a", "b"],
        "layout": "token_last",
        "input_shape": "channels",
        "input": {"modality": "ppg", "fs": 50.0, "window_s": 2.0},
        **extra,
    }


def test_generic_adapter_matches_module_forward(tmp_path):
    torch.manual_seed(0)
    reference = TinyNet(width=8, depth=3).eval()
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(ckpt))
    adapter = build_adapter(table(checkpoint=str(ckpt))).freeze()
    x = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    xt = adapter.prepare(x)
    assert xt.shape == (4, 1, 100)
    with torch.no_grad():
        assert torch.allclose(adapter.forward(xt), reference(xt), atol=1e-6)
        h1 = adapter.features(xt, 1)
        assert h1.shape == (4, 20, 8)
        assert torch.allclose(adapter.forward_from(h1, 2), reference(xt), atol=1e-6)
    assert adapter.labels == ("a", "b") and adapter.n_blocks == 3


def test_generic_bad_block_path_fails_at_build():
    with pytest.raises(LayerPathError, match="blocks"):
        build_adapter(table(block_paths=["layers[0]"]))


def test_generic_checkpoint_mismatch_is_reported(tmp_path):
    ckpt = tmp_path / "other.safetensors"
    save_file({"embed.weight": torch.zeros(8, 1, 5)}, str(ckpt))
    with pytest.raises(CheckpointError) as info:
        build_adapter(table(checkpoint=str(ckpt)))
    assert "embed.bias" in info.value.missing_keys


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "nope"},
        {"kind": "papagei", "size": "huge"},
        table(**{"import": "no_colon"}),
        table(layout="sideways"),
    ],
)
def test_registry_rejects_bad_tables(bad):
    with pytest.raises(ConfigError):
        build_adapter(bad)


def test_registry_builds_papagei_with_overrides():
    adapter = build_adapter({"kind": "papagei", "size": "small", "n_block": 4, "window_s": 4.0})
    assert adapter.n_blocks == 4 and adapter.input_spec.n_samples == 500
