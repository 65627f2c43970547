"""Block paths resolve without eval; errors name what is available; probe shapes come from a batch."""

import pytest
import torch
from torch import nn

from bridge_edge.errors import LayerPathError
from bridge_edge.models.addressing import parse_path, probe_shapes, resolve_path

torch.set_num_threads(1)


class Tree(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))


def test_parse_path_tokens():
    tokens = parse_path("upper_transformer.layers[2]")
    assert [str(t) for t in tokens] == ["upper_transformer", "layers", "[2]"]
    assert [str(t) for t in parse_path("a[0][-1].b")] == ["a", "[0]", "[-1]", "b"]


@pytest.mark.parametrize("bad", ["", "a..b", "a.", "a[x]", "a()", "os.system('x')", "a[1", "1a"])
def test_parse_path_rejects_non_paths(bad):
    with pytest.raises(LayerPathError):
        parse_path(bad)


def test_resolve_path_finds_modules():
    tree = Tree()
    assert resolve_path(tree, "encoder.layers[1]") is tree.encoder.layers[1]
    assert resolve_path(tree, "encoder.layers[-1]") is tree.encoder.layers[2]
    assert resolve_path(tree, "head[1]") is tree.head[1]


def test_resolve_error_lists_available_children():
    tree = Tree()
    with pytest.raises(LayerPathError) as info:
        resolve_path(tree, "encoder.blocks[0]")
    assert info.value.available == ["layers"]
    assert "layers" in str(info.value)
    with pytest.raises(LayerPathError) as info:
        resolve_path(tree, "encoder.layers[7]")
    assert info.value.available == ["[0..2]"]


def test_resolve_refuses_dunder_attributes():
    with pytest.raises(LayerPathError):
        resolve_path(Tree(), "__class__")


def test_probe_shapes_follow_the_blocks():
    from bridge_edge.models.papagei import PapageiAdapter, PapageiConfig

    cfg = PapageiConfig(base_filters=8, kernel_size=3, n_block=6, n_classes=8, window_s=2.0)
    adapter = PapageiAdapter(cfg).freeze()
    x = adapter.prepare(torch.randn(3, 250).numpy())
    shapes = probe_shapes(adapter, x)
    # stride 2 at odd blocks, channels double at block 4
    assert shapes == [(3, 8, 250), (3, 8, 125), (3, 8, 125), (3, 8, 63), (3, 16, 63), (3, 16, 32)]
