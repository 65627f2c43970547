"""Results of batched passes gathered into one array, and splits read across their parts
without joining them in RAM (docs/scale.md, "Peak memory per stage")."""

import numpy as np
import pytest

from bridge_edge.bridge.memory import read_status
from bridge_edge.bridge.shards import JoinedRows, RowReader, fill_in_passes, first_rows, release_pages


def _parts(tmp_path, sizes=(4, 0, 5, 2), width=3):
    rng = np.random.default_rng(7)
    parts = []
    for j, n in enumerate(sizes):
        np.save(tmp_path / f"p{j}.npy", rng.normal(size=(n, width)).astype(np.float32))
        parts.append(np.load(tmp_path / f"p{j}.npy", mmap_mode="r"))
    return parts


@pytest.mark.parametrize("n_rows", [0, 1, 7, 8, 9, 23])
def test_fill_in_passes_is_the_concatenation_of_the_passes_ragged_last_one_included(n_rows):
    source = np.arange(n_rows * 3, dtype=np.int16).reshape(n_rows, 3)
    seen = []

    def run_pass(rows):
        seen.append((rows.start, rows.stop))
        return source[rows] * 2

    empty = np.zeros((0, 3), np.int16)
    got = fill_in_passes(n_rows, 8, run_pass, empty)
    want = np.concatenate([source[i : i + 8] * 2 for i in range(0, n_rows, 8)]) if n_rows else empty
    assert got.dtype == np.int16 and got.shape == want.shape and np.array_equal(got, want)
    assert seen == [(i, min(i + 8, n_rows)) for i in range(0, n_rows, 8)]
    assert got is empty or n_rows


def test_fill_in_passes_keeps_a_tensors_dtype_and_values_bit_for_bit():
    torch = pytest.importorskip("torch")
    x = torch.randn(21, 5, dtype=torch.float64)
    got = fill_in_passes(len(x), 4, lambda rows: torch.softmax(x[rows], dim=1), None)
    want = torch.cat([torch.softmax(x[i : i + 4], dim=1) for i in range(0, len(x), 4)])
    assert got.dtype == torch.float64 and torch.equal(got, want)


def test_joined_rows_index_as_the_concatenation_does(tmp_path):
    parts = _parts(tmp_path)
    joined, whole = JoinedRows(parts), np.concatenate(parts)
    assert len(joined) == 11 and joined.shape == (11, 3) and joined.ndim == 2 and joined.dtype == np.float32
    picks = [
        0, 3, 4, 10, -1, -11, np.int64(5),
        slice(None), slice(2, 9), slice(3, 3), slice(None, None, -2), slice(9, 1, -3), slice(-4, None),
        [10, 0, 4, 4, 3], np.array([], np.int64), [], np.arange(11) % 3 == 0, np.array([-1, -5]),
        (slice(1, 6), 2), (4, slice(0, 2)), (np.array([8, 1]), -1), (),
    ]  # fmt: skip
    for idx in picks:
        got, want = joined[idx], whole[idx]
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want), idx
        assert not isinstance(got, np.memmap)  # a copy, never a view of a file
    assert np.array_equal(np.asarray(joined), whole) and joined.astype(np.float64).dtype == np.float64
    assert np.array_equal(RowReader(joined)[[2, 9]], whole[[2, 9]])


def test_joined_rows_out_of_range_rows_raise_index_error_as_numpy_does(tmp_path):
    joined = JoinedRows(_parts(tmp_path))
    for bad in (11, -12, [0, 11], np.array([-12]), np.ones(10, bool), [1.5]):
        with pytest.raises(IndexError):
            joined[bad]
    with pytest.raises(ValueError, match="one row shape"):
        JoinedRows([np.zeros((2, 3)), np.zeros((2, 4))])


def test_first_rows_of_joined_rows_stay_mapped(tmp_path):
    parts = _parts(tmp_path)
    whole = np.concatenate(parts)
    for n in (0, 3, 4, 6, 11, 50):
        head = first_rows(JoinedRows(parts), n)
        assert isinstance(head, JoinedRows)
        assert not any(h.flags.owndata for h in head.parts)  # views of the parts, no copy
        assert np.array_equal(head[:], whole[:n])
    assert np.array_equal(first_rows(whole, 6), whole[:6])


@pytest.mark.skipif(not read_status(), reason="no /proc/self/status on this system")
def test_release_pages_gives_back_every_part_of_joined_rows(tmp_path):
    rows, width = 2048, 4096  # two files of 32 MiB of float32
    for name in ("a", "b"):
        np.lib.format.open_memmap(tmp_path / f"{name}.npy", "w+", np.float32, (rows, width))[:] = 1.0
    joined = JoinedRows([np.load(tmp_path / f"{n}.npy", mmap_mode="r") for n in ("a", "b")])
    before = read_status()["RssFile"]
    assert float(joined[:].sum()) == 2 * rows * width
    assert read_status()["RssFile"] - before > 48 * 2**20  # both files were read
    assert release_pages(joined)
    assert read_status()["RssFile"] - before < 8 * 2**20


def test_timing_scores_in_chunks_are_the_whole_split_ones(monkeypatch):
    import bridge_edge.bridge.evaluate as evaluate
    from bridge_edge.signals.rr_timing import rr_af_scores

    fs, t = 125.0, np.arange(1250) / 125.0
    rng = np.random.default_rng(3)
    rate = rng.uniform(0.8, 2.0, (37, 1))
    ppg = (np.sin(2 * np.pi * (rate * t + rng.uniform(0, 1, (37, 1)))) ** 3).astype(np.float32)
    ppg += rng.normal(0, 0.2, ppg.shape).astype(np.float32)
    monkeypatch.setattr(evaluate, "TIMING_CHUNK", 8)  # several chunks and a ragged last one
    got, want = evaluate.timing_scores(ppg, fs), rr_af_scores(ppg, fs)
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
    assert np.isfinite(want).any()
    joined = JoinedRows([ppg[:10], ppg[10:]])
    assert np.array_equal(evaluate.timing_scores(joined, fs), want, equal_nan=True)
