"""Results of batched passes gathered into one array (docs/scale.md, "Peak memory per stage")."""

import numpy as np
import pytest

from bridge_edge.bridge.shards import fill_in_passes


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
