"""The features stage's store written batch by batch equals the one collected in RAM."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_bridge_train import TinyNew, TinyOld, _data  # noqa: E402

from bridge_edge.bridge.features import collect_features, write_features  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("n", [20, 0])
def test_store_written_in_batches_equals_the_in_memory_store(tmp_path, n):
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data(max(n, 1))
    ecg, ppg = ecg[:n], ppg[:n]
    want = collect_features(old, new, ecg, ppg, batch_size=8)  # 20 = 8 + 8 + 4: a ragged last batch
    got = write_features(old, new, ecg, ppg, tmp_path / "features_pair", batch_size=8)
    assert len(got.new_pooled) == len(want.new_pooled) and len(got.old_pooled) == len(want.old_pooled)
    for a, b in zip(
        [*got.new_pooled, *got.old_pooled, got.old_target, got.old_probs],
        [*want.new_pooled, *want.old_pooled, want.old_target, want.old_probs],
    ):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    if n:
        assert isinstance(got.old_target, np.memmap)
    val = write_features(old, None, ecg, None, tmp_path / "targets_val", batch_size=8)
    assert val.new_pooled == [] and val.old_target.shape == want.old_target.shape


def test_read_only_memory_mapped_windows_reach_torch_without_a_warning(tmp_path):
    import warnings

    from bridge_edge.bridge.shards import load_mapped

    _, ppg = _data(4)
    np.save(tmp_path / "ppg.npy", ppg)
    mapped = load_mapped(tmp_path / "ppg.npy", "data")
    assert not mapped.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a non-writable array
        x = TinyNew().prepare(mapped)
    np.testing.assert_array_equal(x[:, 0].numpy(), ppg)
