"""The openecg adapter's block list reproduces the packaged codec_v6 forward exactly."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
openecg = pytest.importorskip("openecg")

from bridge_edge.models.openecg_adapter import OpenEcgAdapter


def ecg_like(n_windows: int, irregular: bool, seed: int) -> np.ndarray:
    """Gaussian P-QRS-T beats at 500 Hz with noise; irregular = AF-like intervals, no P wave."""
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500.0
    out = []
    for _ in range(n_windows):
        rr = rng.uniform(0.4, 1.1, 30) if irregular else np.full(30, rng.uniform(0.7, 1.0))
        beats = np.cumsum(rr) - rng.uniform(0, 0.5)
        x = 0.05 * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * 0.3 * t)
        for b in beats[beats < 10.5]:
            if not irregular:
                x += 0.15 * np.exp(-(((t - b + 0.16) / 0.025) ** 2))
            x += 1.0 * np.exp(-(((t - b) / 0.01) ** 2)) - 0.2 * np.exp(-(((t - b - 0.03) / 0.01) ** 2))
            x += 0.3 * np.exp(-(((t - b - 0.3) / 0.05) ** 2))
        out.append(x)
    return np.stack(out)


@pytest.fixture(scope="module")
def adapter():
    return OpenEcgAdapter().freeze()


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_blocks_and_head_equal_package_forward(adapter):
    x = ecg_like(3, irregular=False, seed=0)
    xt = adapter.prepare(x)
    package_model = openecg.load_codec()  # the package's own loader and forward
    with torch.no_grad():
        ours = adapter.head(adapter.run_blocks(adapter.stem(xt), 0, adapter.n_blocks))
        _, _, rhythm = package_model(xt, torch.zeros(3, dtype=torch.long))
        theirs = torch.softmax(rhythm, dim=-1).mean(dim=1)
    assert ours.shape == (3, 6)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours.sum(dim=1), torch.ones(3), atol=1e-5)


def test_prepare_uses_package_rank_normalisation(adapter):
    x = ecg_like(2, irregular=True, seed=1)
    xt = adapter.prepare(x).numpy()
    assert np.allclose(xt[1], openecg.rank_normalize(x[1]), atol=1e-7)
    assert xt.min() == pytest.approx(-1.0) and xt.max() == pytest.approx(1.0)


def test_split_at_every_block_is_the_same_computation(adapter):
    xt = adapter.prepare(ecg_like(2, irregular=True, seed=2))
    with torch.no_grad():
        h0 = adapter.stem(xt)
        full = adapter.run_blocks(h0, 0, adapter.n_blocks)
        for k in range(adapter.n_blocks + 1):
            split = adapter.run_blocks(adapter.run_blocks(h0, 0, k), k, adapter.n_blocks)
            assert torch.allclose(split, full, atol=1e-5), k
    assert full.shape == (2, 500, 128)  # one layout, token_last
    assert adapter.pool(full).shape == (2, 128)


def test_labels_blocks_and_license(adapter):
    assert adapter.labels == ("sinus", "avb", "paced", "afib", "bbb", "ventricular")
    assert adapter.block_paths[0] == "lower_convs[0]"
    assert adapter.block_paths[-1] == "upper_transformer.layers[3]"
    assert adapter.input_spec.n_samples == 5000
    assert "Apache License" in adapter.license_text()


def test_rhythm_head_separates_regular_from_irregular(adapter):
    """Sanity of the real weights: AF-like beats get more afib probability than sinus-like."""
    with torch.no_grad():
        p_sinus = adapter.forward(adapter.prepare(ecg_like(4, irregular=False, seed=3)))
        p_af = adapter.forward(adapter.prepare(ecg_like(4, irregular=True, seed=4)))
    afib = adapter.labels.index("afib")
    assert p_af[:, afib].mean() > p_sinus[:, afib].mean()


def test_prepare_rejects_wrong_length(adapter):
    from bridge_edge.errors import DataError

    with pytest.raises(DataError):
        adapter.prepare(np.zeros((1, 2500)))


def test_from_block_slice_continues_the_old_model(adapter):
    from bridge_edge.models.slices import FromBlock

    xt = adapter.prepare(ecg_like(2, irregular=False, seed=5))
    tail = FromBlock(adapter, 5)
    assert sum(p.numel() for p in tail.parameters()) == adapter.parameter_count()
    with torch.no_grad():
        h5 = adapter.run_blocks(adapter.stem(xt), 0, 5)  # input of block 5
        assert torch.allclose(tail(h5), adapter.forward(xt), atol=1e-6)


def test_export_rewrite_is_the_same_head_and_leaves_no_trace(adapter):
    """export_rewrites computes the head at the token rate: the same probabilities, and the
    module (its state dict) is as before once the context ends."""
    h = adapter.run_blocks(
        adapter.stem(adapter.prepare(ecg_like(3, irregular=True, seed=4))), 0, adapter.n_blocks
    )
    keys = set(adapter.module.state_dict())
    with torch.no_grad():
        as_written = adapter.head(h)
        with adapter.export_rewrites():
            assert hasattr(adapter.module, "bridge_edge_export_rewrites")
            rewritten = adapter.head(h)
    assert torch.allclose(rewritten, as_written, atol=1e-6)
    assert (
        not hasattr(adapter.module, "bridge_edge_export_rewrites")
        and set(adapter.module.state_dict()) == keys
    )
    with pytest.raises(RuntimeError), adapter.export_rewrites():
        raise RuntimeError("export failed")
    assert not hasattr(adapter.module, "bridge_edge_export_rewrites")
