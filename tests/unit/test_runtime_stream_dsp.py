"""Streaming preprocessing equals the offline ppg-v1 preprocessing for any chunking."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_edge.runtime.stream_dsp import StreamingPreprocessor
from bridge_edge.runtime.windowing import GapSpan, WindowCutter
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, normalise_windows

SPEC = PreprocessSpec()
RATES = [25.0, 64.0, 100.0, 125.0, 130.0, 250.0, 500.0]


def signal(n: int, fs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    return (np.sin(2 * np.pi * 1.2 * t) + 0.3 * rng.standard_normal(n) + 5.0).astype(np.float32)


def stream(x: np.ndarray, fs: float, cuts: list[int]) -> np.ndarray:
    sp = StreamingPreprocessor(SPEC, fs)
    return np.concatenate([sp.process(part).values for part in np.split(x, sorted(cuts))])


@settings(max_examples=60, deadline=None)
@given(
    fs=st.sampled_from(RATES),
    n=st.integers(min_value=1, max_value=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=40),
    seed=st.integers(0, 2**16),
)
def test_streaming_equals_offline_for_any_chunk_sizes(fs, n, cuts, seed):
    x = signal(n, fs, seed)
    offline = filter_and_resample(x, fs, SPEC)
    online = stream(x, fs, [min(c, n) for c in cuts])
    assert online.shape == offline.shape
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    fs=st.sampled_from(RATES),
    chunk=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_streamed_windows_equal_offline_windows(fs, chunk, seed):
    """Cut + z-score on the stream gives the offline windows of the whole recording."""
    n = int(fs * 30)
    x = signal(n, fs, seed)
    length, hop = 250, 125
    y = filter_and_resample(x, fs, SPEC)
    starts = np.arange(0, len(y) - length + 1, hop)
    offline = normalise_windows(np.stack([y[s : s + length] for s in starts]), SPEC)

    sp, cutter = StreamingPreprocessor(SPEC, fs), WindowCutter(length, hop)
    windows, pos, k = [], 0, 0
    while pos < n:
        size = chunk[k % len(chunk)]
        block = sp.process(x[pos : pos + size])
        windows += cutter.push(block.values, block.source_index, block.first_index)
        pos, k = pos + size, k + 1
    online = normalise_windows(np.stack([w.values for w in windows]), SPEC)
    assert [w.index for w in windows] == list(range(len(starts)))
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-5)


def test_gap_fill_keeps_the_time_axis_and_marks_windows():
    fs = 125.0
    sp, cutter = StreamingPreprocessor(SPEC, fs), WindowCutter(250, 125)
    x = signal(2000, fs, 1)
    windows = []
    b = sp.process(x[:600])
    windows += cutter.push(b.values, b.source_index, b.first_index)
    g = sp.fill_gap(40)
    cutter.mark_gap(GapSpan(g.first_index, g.first_index + len(g.values) + 1, 40))
    windows += cutter.push(g.values, g.source_index, g.first_index)
    b = sp.process(x[600:])
    windows += cutter.push(b.values, b.source_index, b.first_index)
    assert sp.n_in == 2040
    flagged = [w.index for w in windows if w.gap]
    # filled samples 600..640 overlap windows 3 (375..625), 4 (500..750), 5 (625..875)
    assert flagged == [3, 4, 5]
    assert all(w.missing_samples == 40 for w in windows if w.gap)


def test_source_index_is_the_sample_that_completed_each_output():
    fs = 500.0
    sp = StreamingPreprocessor(SPEC, fs)
    b1 = sp.process(np.zeros(10))
    b2 = sp.process(np.zeros(10))
    # output k sits at input position 4k: outputs 0..2 need inputs up to 8, output 3 needs 12
    np.testing.assert_array_equal(b1.source_index, [0, 4, 8])
    np.testing.assert_array_equal(b2.source_index, [12, 16])
