"""Run-directory arrays written batch by batch and read memory-mapped (docs/scale.md)."""

import json
import time

import numpy as np
import pytest

from bridge_edge.bridge.data import WindowSet, split_windows
from bridge_edge.bridge.inputs import ppg_preprocess_spec, write_split
from bridge_edge.bridge.memory import PeakMemory, read_status
from bridge_edge.bridge.recipe import load_recipe
from bridge_edge.bridge.rundir import (
    PAIR_COHORT_SPLIT,
    FeatureStore,
    RunDir,
    load_feature_store,
    save_feature_store,
)
from bridge_edge.bridge.shards import HEADER_BYTES, JoinedRows, NpyAppender, load_mapped
from bridge_edge.errors import DataError, DatasetNotFoundError, RunDirFormatError
from bridge_edge.signals.types import SPLIT_NAMES

LABELS = ("sinus", "afib")


def _windows(subject: str, n: int, seed: int) -> WindowSet:
    rng = np.random.default_rng(seed)
    return WindowSet(
        rng.normal(size=(n, 5)).astype(np.float32),
        rng.normal(size=(n, 3)).astype(np.float32),
        rng.integers(-1, 2, n).astype(np.int64),
        np.full(n, subject),
        np.arange(n) * 5.0,
        LABELS,
        rng.random(n).astype(np.float32),
    )


def test_appended_batches_load_as_one_memory_mapped_array(tmp_path):
    parts = [np.random.default_rng(k).normal(size=(k + 1, 4)) for k in range(4)]
    with NpyAppender(tmp_path / "a.npy", np.float32, (4,)) as out:
        for p in parts:
            out.append(p)
    loaded = load_mapped(tmp_path / "a.npy", "data")
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, np.concatenate(parts).astype(np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), loaded)  # a plain .npy to numpy
    assert (tmp_path / "a.npy").stat().st_size == HEADER_BYTES + loaded.nbytes
    with NpyAppender(tmp_path / "empty.npy", np.float32, (4,)):
        pass
    assert load_mapped(tmp_path / "empty.npy", "data").shape == (0, 4)
    with (
        NpyAppender(tmp_path / "b.npy", np.float32, (4,)) as out,
        pytest.raises(ValueError, match="expected"),
    ):
        out.append(np.zeros((2, 5)))


def test_split_written_recording_by_recording_equals_the_concatenated_split(tmp_path):
    rd = RunDir(tmp_path)
    parts = [_windows("s1", 3, 1), _windows("s0", 4, 2), _windows("s1", 2, 3), _windows("s2", 0, 4)]
    with rd.window_writer("pair", LABELS, 5, 3) as out:
        for w in parts:
            out.append(w)
    rd.write_windows_meta(LABELS, {}, {"pair": out.counts})
    got, want = rd.windows("pair"), WindowSet.concat(parts)
    assert isinstance(got.ppg, np.memmap) and isinstance(got.ecg, np.memmap)
    for f in ("ecg", "ppg", "label", "subject", "start_s", "sqi"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
        assert getattr(got, f).dtype.kind == getattr(want, f).dtype.kind
    assert got.labels == LABELS
    assert out.counts == {"windows": 9, "mixed": int((want.label < 0).sum())}
    other = _windows("s9", 2, 5)
    other.labels = ("x",)
    with rd.window_writer("val", LABELS, 5, 3) as out, pytest.raises(DataError, match="vocabular"):
        out.append(other)


def test_the_pair_split_reads_its_cohort_and_the_test_split_its_held_out_subjects_after_their_own(tmp_path):
    rd = RunDir(tmp_path)
    own = {"pair": _windows("s0", 3, 1), "test": _windows("s1", 2, 2)}
    extra = {PAIR_COHORT_SPLIT: _windows("coh000", 2, 3), "held_out": _windows("tst000", 4, 4)}
    for name, w in (own | extra).items():
        with rd.window_writer(name, LABELS, 5, 3) as out:
            out.append(w)
    rd.write_windows_meta(LABELS, {}, {})
    for split, joined in (("pair", PAIR_COHORT_SPLIT), ("test", "held_out")):
        got = rd.windows(split)
        assert got.subject.tolist() == own[split].subject.tolist() + extra[joined].subject.tolist()
        for f in ("ecg", "ppg"):  # read from both files, not joined in RAM (shards.JoinedRows)
            want = np.concatenate([getattr(own[split], f), getattr(extra[joined], f)])
            assert isinstance(getattr(got, f), JoinedRows)
            for idx in (slice(None), slice(1, 4), np.array([4, 0, 2]), -1):
                np.testing.assert_array_equal(getattr(got, f)[idx], want[idx])
        np.testing.assert_array_equal(got.sqi, np.concatenate([own[split].sqi, extra[joined].sqi]))
    assert len(rd.windows("pair")) == 5 and len(rd.windows("test")) == 6


def test_run_directories_with_npz_windows_and_feature_stores_still_load(tmp_path):
    rd = RunDir(tmp_path)
    rd.windows_dir.mkdir()
    w = _windows("s0", 4, 0)
    np.savez(
        rd.legacy_windows_file("test"),
        ecg=w.ecg,
        ppg=w.ppg,
        label=w.label,
        subject=w.subject,
        start_s=w.start_s,
    )
    rd.write_windows_meta(LABELS, {}, {})
    got = rd.windows("test")
    np.testing.assert_array_equal(got.ppg, w.ppg)
    assert np.isnan(got.sqi).all()  # written before the SQI was stored
    store = _store(6)
    np.savez(
        tmp_path / "features_pair.npz",
        new_0=store.new_pooled[0],
        old_0=store.old_pooled[0],
        old_probs=store.old_probs,
        old_target=store.old_target,
        seconds=np.float64(1.5),
    )
    legacy = load_feature_store(rd.features_pair)
    np.testing.assert_array_equal(legacy.old_target, store.old_target)
    assert legacy.seconds == 1.5
    with pytest.raises(RunDirFormatError, match="re-run the features stage") as err:
        load_feature_store(rd.targets_val)
    assert err.value.stage == "features"
    with pytest.raises(RunDirFormatError, match="re-run the data stage"):
        rd.windows("val")


def _store(n: int, target_width: int = 24) -> FeatureStore:
    rng = np.random.default_rng(n)
    return FeatureStore(
        [rng.normal(size=(n, 8)).astype(np.float32)],
        [rng.normal(size=(n, 6)).astype(np.float32)],
        rng.normal(size=(n, target_width)).astype(np.float16),
        rng.random((n, 3)).astype(np.float32),
        2.0,
    )


def test_feature_store_loads_memory_mapped_without_reading_the_whole_file(tmp_path):
    store = _store(512, target_width=64000)  # old_target: 512 x 64000 float16 = 62.5 MiB
    save_feature_store(store, tmp_path / "features_pair")
    before = read_status()
    loaded = load_feature_store(tmp_path / "features_pair")
    assert isinstance(loaded.old_target, np.memmap)
    rows = loaded.old_target[[3, 300]]  # what the bridge's training loop reads: a batch of rows
    np.testing.assert_array_equal(rows, store.old_target[[3, 300]])
    np.testing.assert_array_equal(loaded.old_probs, store.old_probs)
    if before:  # Linux: the process mapped a few pages, not the 62.5 MiB file
        grown = read_status()["RssFile"] - before["RssFile"]
        assert grown < 8 * 2**20, grown


def test_streamed_data_stage_writes_the_windows_the_in_memory_path_made(tmp_path):
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import write_dataset

    write_dataset(tmp_path / "data", 8, 0.5, 13)
    dataset = load_dataset(str(tmp_path / "data"))
    recipe = load_recipe("smoke")
    rd, old_fs, new_fs = RunDir(tmp_path / "run"), 250.0, 125.0
    spec, d = ppg_preprocess_spec(recipe, new_fs), recipe.data
    for split in SPLIT_NAMES:
        write_split(rd, split, dataset.iter_subjects(split), dataset.labels, recipe, old_fs, new_fs)
    rd.write_windows_meta(dataset.labels, spec.as_dict(), {})
    for split in SPLIT_NAMES:
        want = split_windows(
            dataset,
            split,
            window_s=d.window_s,
            hop_s=d.hop_s,
            fs_ecg=old_fs,
            ppg_spec=spec,
            purity=d.label_purity,
        )
        got = rd.windows(split)
        assert len(got) == len(want) > 0
        for f in ("ecg", "ppg", "label", "subject", "start_s", "sqi"):
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))


def test_simulated_recordings_are_read_on_access_not_kept(tmp_path):
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import write_dataset

    write_dataset(tmp_path / "data", 4, 0.2, 1)
    ds = load_dataset(str(tmp_path / "data"))
    key = next(iter(ds.recordings))
    first, again = ds.recordings[key], ds.recordings[key]
    assert first is not again  # read from its file each time: nothing held between accesses
    np.testing.assert_array_equal(first.ppg, again.ppg)
    assert len(ds.recordings) == 4
    index = json.loads((tmp_path / "data" / "dataset.json").read_text())
    (tmp_path / "data" / "subjects" / f"{index['subjects'][-1]}.npz").unlink()
    with pytest.raises(DatasetNotFoundError, match="dataset.json lists subject"):
        load_dataset(str(tmp_path / "data"))


def test_peak_memory_sees_an_allocation_inside_the_block():
    if not read_status():
        pytest.skip("no /proc/self/status on this system: peak memory is not measured here")
    with PeakMemory() as m:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.3)  # several sampling intervals
        del block
    assert m.result.peak_rss_bytes >= 64 * 2**20
    assert m.result.peak_anon_bytes >= 64 * 2**20
    with PeakMemory() as small:
        pass
    assert small.result.peak_anon_bytes < m.result.peak_anon_bytes
