"""HuBERT-ECG adapter: block list equals HubertModel, safe strict loading, optional dependency."""

import pickle
import sys

import numpy as np
import pytest
import torch

from bridge_edge.errors import CheckpointError, DependencyMissingError

torch.set_num_threads(1)


def tiny():
    from bridge_edge.models.hubert_ecg import HubertEcgSize

    return HubertEcgSize(
        hidden=32,
        layers=2,
        heads=4,
        ffn=64,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        pos_conv_kernel=16,
        pos_conv_groups=4,
    )


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    from bridge_edge.models.hubert_ecg import HubertEcgAdapter

    with pytest.raises(DependencyMissingError) as info:
        HubertEcgAdapter(tiny())
    assert info.value.install_hint == "pip install bridge-edge[hubert]"


def test_sizes_follow_the_method_table():
    from bridge_edge.models.hubert_ecg import SIZES

    assert (SIZES["small"].hidden, SIZES["small"].layers, SIZES["small"].ffn) == (512, 8, 2048)
    assert (SIZES["base"].hidden, SIZES["large"].hidden, SIZES["large"].layers) == (768, 960, 16)


@pytest.fixture()
def adapter():
    pytest.importorskip("transformers", reason="transformers (extra 'hubert') is not installed")
    from bridge_edge.models.hubert_ecg import HubertEcgAdapter

    torch.manual_seed(0)
    return HubertEcgAdapter(tiny(), fs=100.0, window_s=2.0).freeze()


def test_blocks_equal_hubert_forward(adapter):
    x = adapter.prepare(np.random.default_rng(0).standard_normal((2, 200)))
    with torch.no_grad():
        ours = adapter.run_blocks(adapter.stem(x), 0, adapter.n_blocks)
        theirs = adapter.module(x).last_hidden_state
    assert ours.shape == theirs.shape == (2, 19, 32)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert adapter.block_paths == ("encoder.layers[0]", "encoder.layers[1]")


def test_original_format_with_old_weight_norm_names_loads(adapter, tmp_path):
    from bridge_edge.models.hubert_ecg import HubertEcgAdapter

    state = {}
    for k, v in adapter.module.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        state[k] = v
    assert any(k.endswith("weight_g") for k in state)
    state["final_proj.0.weight"] = torch.zeros(4, 32)  # pretraining head: dropped, reported
    path = tmp_path / "hubert.pt"
    torch.save({"model_state_dict": state, "model_config": {"hidden_size": 32}}, path)
    loaded = HubertEcgAdapter(tiny(), checkpoint=path, window_s=2.0).freeze()
    assert loaded.dropped_keys == ["final_proj.0.weight"]
    x = adapter.prepare(np.random.default_rng(1).standard_normal((1, 200)))
    with torch.no_grad():
        assert torch.allclose(loaded.forward(x), adapter.forward(x), atol=1e-6)


def test_missing_key_and_pickled_config_are_refused(adapter, tmp_path):
    from bridge_edge.models.hubert_ecg import HubertEcgAdapter

    state = dict(adapter.module.state_dict())
    state.pop("encoder.layer_norm.weight")
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        HubertEcgAdapter(tiny(), checkpoint=path, window_s=2.0)
    assert info.value.missing_keys == ["encoder.layer_norm.weight"]

    pickled = tmp_path / "pickled.pt"
    with open(pickled, "wb") as f:
        pickle.dump({"model_config": ConfigClass(), "model_state_dict": {}}, f, protocol=2)
    with pytest.raises(CheckpointError, match="safetensors"):
        HubertEcgAdapter(tiny(), checkpoint=pickled, window_s=2.0)


class ConfigClass:  # stands in for the pickled HuBERTECGConfig class
    hidden_size = 32


def test_small_size_has_the_published_parameter_count():
    pytest.importorskip("transformers", reason="transformers (extra 'hubert') is not installed")
    from bridge_edge.models.hubert_ecg import HubertEcgAdapter

    adapter = HubertEcgAdapter("small")
    assert abs(adapter.parameter_count() - 30.2e6) < 0.05e6
    with torch.no_grad():
        h = adapter.stem(adapter.prepare(np.zeros((1, 6000), np.float32)))
    assert h.shape == (1, 93, 512)  # 60 s at 100 Hz -> 93 tokens (docs/method.md)


def _two_rhythms(n, rng):
    """Windows of 2 s at 100 Hz: class 0 a slow pulse train, class 1 a fast irregular one."""
    y = np.arange(n) % 2
    t = np.arange(200) / 100.0
    rate = np.where(y == 0, 1.0, 2.5)[:, None] * (1 + 0.3 * y[:, None] * rng.standard_normal((n, 1)))
    x = np.sin(2 * np.pi * rate * t) ** 15 + 0.05 * rng.standard_normal((n, 200))
    return x.astype(np.float32), y


def test_a_linear_probe_gives_hubert_a_task_head_that_composes(adapter):
    """docs/method.md: the old model of the paper's WESAD setup (HuBERT-ECG) has no head; a probe on
    its pooled last block, trained with labels, becomes one and travels inside the composed model."""
    from bridge_edge.bridge.compose import compose
    from bridge_edge.bridge.train import make_bridge
    from bridge_edge.models.papagei import CONFIGS, PapageiAdapter
    from bridge_edge.models.probe import ProbedAdapter, last_block_features, train_probe

    assert adapter.labels == () and adapter.head(torch.zeros(1, 3, 32)).shape == (1, 32)  # embedding
    rng = np.random.default_rng(0)
    (x, y), (vx, vy) = _two_rhythms(64, rng), _two_rhythms(32, rng)
    y[:4] = -1  # mixed windows are skipped
    features = last_block_features(adapter, x, batch_size=16)
    assert features.shape == (64, 32)
    probe, result = train_probe(
        features, y, last_block_features(adapter, vx), vy, ("slow", "fast"),
        epochs=40, lr=1e-2, batch_size=16, class_weighted=True,
    )  # fmt: skip
    assert result.class_counts == [30, 30] and 1 <= result.best_epoch <= 40
    assert result.val_loss[result.best_epoch - 1] == min(result.val_loss)
    assert result.val_accuracy[result.best_epoch - 1] >= 0.75  # chance 0.5: a frozen random encoder sees rate
    old = ProbedAdapter(adapter, probe, ("slow", "fast")).freeze()
    with torch.no_grad():
        probs = old.forward(old.prepare(vx[:5]))
    assert probs.shape == (5, 2) and torch.allclose(probs.sum(dim=1), torch.ones(5))
    assert old.parameter_count() == adapter.parameter_count() + 32 * 2 + 2
    new = PapageiAdapter(CONFIGS["small"], device="cpu").freeze()
    ppg = np.random.default_rng(1).standard_normal((4, new.input_spec.n_samples)).astype(np.float32)
    bridge = make_bridge(new, old, 1, 1, rank=2, prototypes=4, probe=(ppg, vx[:4]), seed=0)
    model = compose(new, old, bridge, 1, 1)
    assert {"old_probe.weight", "old_probe.bias"} <= set(model.state_dict())  # exported with the model
    assert model.predict_proba(ppg).shape == (4, 2)


def test_a_probe_needs_two_labelled_classes():
    from bridge_edge.errors import DataError
    from bridge_edge.models.probe import train_probe

    x = np.zeros((6, 4), np.float32)
    with pytest.raises(DataError, match="at least two classes"):
        train_probe(
            x,
            np.zeros(6, int),
            x,
            np.zeros(6, int),
            ("a", "b"),
            epochs=1,
            lr=1e-3,
            batch_size=2,
            class_weighted=True,
        )
