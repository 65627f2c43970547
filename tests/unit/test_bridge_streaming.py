"""Training stages read their windows batch by batch (docs/scale.md, "What still grows")."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bridge_edge.bridge.memory import read_status
from bridge_edge.bridge.recipe import parse_recipe
from bridge_edge.bridge.rundir import RunDir
from bridge_edge.bridge.shards import RowReader, release_pages

SMOKE = Path(__file__).resolve().parents[2] / "recipes" / "smoke.toml"


def test_row_reader_gives_the_rows_as_writable_copies(tmp_path):
    a = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    reader = RowReader(np.load(tmp_path / "a.npy", mmap_mode="r"))
    idx = np.array([3, 3, 49, 0])
    assert len(reader) == 50 and reader.shape == (50, 7) and reader.dtype == np.float32
    for rows, expected in ((reader[idx], a[idx]), (reader[10:20], a[10:20]), (reader[5], a[5])):
        assert np.array_equal(rows, expected) and rows.flags.writeable
    assert RowReader(reader).array is reader.array  # wrapping twice reads the array once
    assert release_pages(np.zeros(3)) is False  # not memory-mapped: nothing to give back


@pytest.mark.skipif(not read_status(), reason="no /proc/self/status on this system")
def test_reading_a_mapped_file_through_row_reader_keeps_it_out_of_the_resident_set(tmp_path):
    rows, width = 4096, 4096  # 64 MiB of float32
    np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float32, (rows, width))[:] = 1.0
    whole = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = read_status()["RssFile"]
    total = sum(float(whole[i : i + 256].sum()) for i in range(0, rows, 256))  # a plain memmap
    grown = read_status()["RssFile"] - before
    assert release_pages(whole)
    released = read_status()["RssFile"] - before
    reader, start = RowReader(whole), read_status()["RssFile"]
    peak = 0
    for i in range(0, rows, 256):
        assert float(reader[i : i + 256].sum()) == 256 * width
        peak = max(peak, read_status()["RssFile"] - start)
    assert total == rows * width
    assert grown > 48 * 2**20  # the plain pass left most of the file resident
    assert released < 8 * 2**20 and peak < 16 * 2**20  # given back; the reader holds one read


@pytest.mark.skipif(not read_status(), reason="no /proc/self/status on this system")
def test_shuffled_batches_of_narrow_rows_are_given_back_as_often_as_they_fault_in(tmp_path):
    """A PPG window (1,250 float32, 5 kB) read at random faults in the page-cache folio around
    it (here up to ~1 MB a row): releasing only after 4 MiB of rows' own bytes let an epoch over
    a 64 MB split keep ~55 MB resident between releases."""
    rows, width = 12_800, 1250  # 64 MB of float32
    np.lib.format.open_memmap(tmp_path / "ppg.npy", "w+", np.float32, (rows, width))[:] = 1.0
    reader = RowReader(np.load(tmp_path / "ppg.npy", mmap_mode="r"))
    rng, start, peak = np.random.default_rng(0), read_status()["RssFile"], 0
    for _ in range(600):
        batch = reader[np.sort(rng.choice(rows, 16, replace=False))]
        assert batch.shape == (16, width)
        peak = max(peak, read_status()["RssFile"] - start)
    assert peak < 16 * 2**20


def test_gather_versions_is_stack_then_index():
    pytest.importorskip("torch")
    from bridge_edge.bridge.kd import gather_versions

    rng = np.random.default_rng(1)
    versions = [rng.normal(size=(20, 6)).astype(np.float32) for _ in range(3)]
    idx, version = rng.integers(0, 20, 40), rng.integers(0, 3, 40)  # repeats, as sampling draws
    got = gather_versions([RowReader(v) for v in versions], version, idx)
    expected = np.stack(versions)[version, idx]
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def _run(tmp_path, variants: int, preprocess: str):
    text = SMOKE.read_text().replace("sensor_variants = 1", f"sensor_variants = {variants}")
    text = text.replace('preprocess = "ppg-v2"', f'preprocess = "{preprocess}"')
    recipe = parse_recipe(text)
    assert recipe.bridge.sensor_variants == variants and recipe.data.preprocess == preprocess
    new = SimpleNamespace(input_spec=SimpleNamespace(fs=125.0))
    return SimpleNamespace(recipe=recipe, dir=RunDir(tmp_path), models=lambda: (None, new))


@pytest.mark.parametrize("preprocess", ["ppg-v2", "ppg-v3"])
def test_sensor_variants_in_chunks_and_truncated_are_the_whole_split_ones(tmp_path, monkeypatch, preprocess):
    import bridge_edge.bridge.bridging as bridging
    from bridge_edge.bridge.inputs import ppg_preprocess_spec
    from bridge_edge.signals.preprocess import normalise_windows
    from bridge_edge.signals.sensor import resensor_windows

    run = _run(tmp_path, 2, preprocess)
    t = np.arange(1250) / 125.0
    phase = np.random.default_rng(2).uniform(0, 1, (23, 1))
    ppg = np.sin(2 * np.pi * (1.2 * t + phase)).astype(np.float32) ** 3  # pulse-like, 23 windows
    np.save(tmp_path / "ppg.npy", ppg)
    mapped = np.load(tmp_path / "ppg.npy", mmap_mode="r")
    # what the stages computed before: every version of the whole split at once, in RAM
    rng = np.random.default_rng([run.recipe.seed, 47])
    spec = ppg_preprocess_spec(run.recipe, 125.0)
    whole = [normalise_windows(resensor_windows(ppg, spec.fs_out, rng), spec) for _ in range(2)]
    monkeypatch.setattr(bridging, "VARIANT_CHUNK", 5)  # several chunks and a ragged last one
    for n in (0, 16):
        got = bridging._sensor_variants(run, mapped, n)
        assert len(got) == 2
        for g, w in zip(got, whole):
            assert isinstance(g, np.memmap) and np.array_equal(g, w[: n or len(ppg)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppg.npy"]  # nothing left behind
