"""The features stage's store written batch by batch equals the one collected in RAM."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_adapters import TinyNew, TinyOld  # noqa: E402
from tiny_adapters import paired_data as _data  # noqa: E402

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


@pytest.mark.parametrize(("n", "world"), [(20, 2), (20, 3), (20, 4), (3, 2), (0, 2)])
def test_shards_of_whole_batches_joined_are_the_one_process_store(tmp_path, n, world):
    """Every rank writes its share (features.shard_rows) and rank 0 joins them: the files are
    the one-process store's, byte for byte (the ranks run exactly its batches)."""
    from bridge_edge.bridge.features import join_feature_shards, shard_dir, shard_rows

    rows = [shard_rows(n, 8, r, world) for r in range(world)]
    assert rows[0][0] == 0 and rows[-1][1] == n  # contiguous, in order, covering every window
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:])) and all(s % 8 == 0 for s, _ in rows)
    old, new = TinyOld(), TinyNew()
    ecg, ppg = _data(max(n, 1))
    ecg, ppg = ecg[:n], ppg[:n]
    want = write_features(old, new, ecg, ppg, tmp_path / "one" / "features_pair", batch_size=8)
    out = tmp_path / "two" / "features_pair"
    for r, share in enumerate(rows):
        write_features(old, new, ecg, ppg, shard_dir(out, r), batch_size=8, rows=share)
    got = join_feature_shards(out, [shard_dir(out, r) for r in range(world)], seconds=1.0)
    for stem in sorted(p.name for p in (tmp_path / "one" / "features_pair").glob("*.npy")):
        assert (out / stem).read_bytes() == (tmp_path / "one" / "features_pair" / stem).read_bytes(), stem
    assert len(got.new_pooled) == len(want.new_pooled) and got.old_target.shape == want.old_target.shape
    assert not any(shard_dir(out, r).exists() for r in range(world))  # the shards are removed
