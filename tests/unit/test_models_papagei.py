"""PaPaGei ResNet1D: published layout and size, strict safe checkpoint loading, small default."""

import pickle

import numpy as np
import pytest
import torch

from bridge_edge.errors import CheckpointError
from bridge_edge.models.checkpoints import load_adapter_weights, save_adapter_weights
from bridge_edge.models.papagei import (
    PAPAGEI_S,
    PAPAGEI_SMALL,
    PapageiAdapter,
    PapageiConfig,
    ResNet1DMoE,
    load_papagei_checkpoint,
)

torch.set_num_threads(1)
TINY = PapageiConfig(base_filters=8, kernel_size=3, n_block=5, n_classes=16, window_s=2.0)


def test_papagei_s_size_and_names():
    model = ResNet1DMoE(PAPAGEI_S)
    total = sum(p.numel() for p in model.parameters())
    blocks = sum(p.numel() for p in model.basicblock_list.parameters())
    assert abs(total - 5.79e6) < 0.01e6
    assert abs(blocks - 4.73e6) < 0.01e6
    keys = model.state_dict().keys()
    for name in (
        "first_block_conv.conv.weight",
        "basicblock_list.17.conv2.conv.weight",
        "basicblock_list.0.bn1.running_var",
        "final_bn.weight",
        "dense.weight",
        "expert_layers_1.2.2.weight",
        "expert_layers_2.0.3.bias",
        "gating_network_2.0.weight",
    ):
        assert name in keys


def test_papagei_s_block_geometry_matches_method_table():
    block_io = PAPAGEI_S.block_channels()
    assert block_io[4] == (32, 64) and block_io[16] == (256, 512) and block_io[17] == (512, 512)
    adapter = PapageiAdapter(PAPAGEI_S).freeze()
    with torch.no_grad():
        h = adapter.stem(adapter.prepare(np.zeros((1, 7500), np.float32)))
        assert h.shape == (1, 32, 7500)
        h4 = adapter.run_blocks(h, 0, 4)  # input of block 4
        assert h4.shape == (1, 32, 1875)
        out = adapter.run_blocks(h4, 4, 18)
    assert out.shape == (1, 512, 15)
    assert adapter.head(out).shape == (1, 512)


def test_small_default_is_small():
    adapter = PapageiAdapter()
    assert adapter.input_spec.n_samples == 1250 and adapter.layout == "channel_first"
    assert adapter.parameter_count() < 300_000
    assert adapter.block_paths == tuple(f"basicblock_list[{i}]" for i in range(PAPAGEI_SMALL.n_block))


def test_checkpoint_strict_load_strips_module_prefix(tmp_path):
    torch.manual_seed(0)
    source = ResNet1DMoE(TINY).eval()
    path = tmp_path / "papagei.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    loaded = load_papagei_checkpoint(path, TINY)
    x = torch.randn(2, 1, 250)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_checkpoint_key_diff_is_readable(tmp_path):
    state = ResNet1DMoE(TINY).state_dict()
    state.pop("dense.weight")
    state["head.extra"] = torch.zeros(1)
    state["final_bn.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_papagei_checkpoint(path, TINY)
    err = info.value
    assert err.missing_keys == ["dense.weight"]
    assert err.unexpected_keys == ["head.extra"]
    assert "final_bn.weight" in err.mismatched[0]
    assert "missing 1: dense.weight" in str(err)


class Payload:  # a pickled class: must never be unpickled
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_papagei_checkpoint(path, TINY)


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(1)
    a = PapageiAdapter(TINY).freeze()
    path = save_adapter_weights(a, tmp_path / "enc.safetensors", metadata={"epochs": 3})
    b = PapageiAdapter(TINY)
    meta = load_adapter_weights(b, path)
    assert meta["epochs"] == 3 and meta["adapter"]["kind"] == "papagei"
    b.freeze()
    x = a.prepare(np.random.default_rng(0).standard_normal((2, 250)))
    with torch.no_grad():
        assert torch.equal(a.forward(x), b.forward(x))
    c = PapageiAdapter(TINY, checkpoint=path)  # the registry path: checkpoint in the constructor
    assert torch.equal(c.module.dense.weight, a.module.dense.weight)


def test_up_to_block_slice_gives_the_pooled_bridge_input():
    from bridge_edge.models.slices import UpToBlock

    a = PapageiAdapter(TINY).freeze()
    x = a.prepare(np.random.default_rng(2).standard_normal((3, 250)))
    with torch.no_grad():
        pooled = UpToBlock(a, 3)(x)
        assert pooled.shape == (3, TINY.block_channels()[3][1])
        assert torch.allclose(pooled, a.pool(a.features(x, 3)))
