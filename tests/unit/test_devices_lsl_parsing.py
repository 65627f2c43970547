"""lsl:// pieces that need no liblsl: gap splitting, the prediction sample, a missing pylsl."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bridge_edge.devices.lsl import Segment, split_at_gaps
from bridge_edge.errors import DependencyMissingError, SourceURLError
from bridge_edge.runtime.lsl_out import prediction_sample
from bridge_edge.runtime.outputs import LatencyMs, Prediction, StreamRef

FS = 125.0


def test_gaps_are_cut_and_counted_from_timestamps():
    ts = np.r_[np.arange(10), np.arange(40, 50), np.arange(50, 55)] / FS
    assert split_at_gaps(ts, None, FS, 0.1) == [Segment(0, 10, 0), Segment(10, 25, 30)]


def test_a_gap_before_the_chunk_counts_from_the_previous_timestamp():
    ts = np.arange(100, 110) / FS
    assert split_at_gaps(ts, 49 / FS, FS, 0.1) == [Segment(0, 10, 50)]
    assert split_at_gaps(ts, 99 / FS, FS, 0.1) == [Segment(0, 10, 0)]


def test_a_stall_shorter_than_the_default_tolerance_is_not_loss():
    ts = np.r_[np.arange(50), np.arange(50, 100) + 0.6 * FS] / FS  # pushed 0.6 s late
    assert [s.gap_before for s in split_at_gaps(ts, None, FS, 1.0)] == [0]
    assert [s.gap_before for s in split_at_gaps(ts, None, FS, 0.1)] == [0, 75]


def test_push_jitter_below_the_tolerance_is_not_loss():
    rng = np.random.default_rng(0)
    ts = np.arange(500) / FS + rng.uniform(-0.03, 0.03, 500)  # +-30 ms stamping jitter
    ts.sort()
    assert [s.gap_before for s in split_at_gaps(ts, None, FS, 0.1)] == [0]
    assert split_at_gaps(np.array([]), 1.0, FS, 0.1) == []


def _prediction(label, probs):
    return Prediction(
        StreamRef(0, "s"), 3, 0.0, 10.0, label, probs, label, probs, 0.9, 60.0,
        LatencyMs(1, 1, 1), 0, False, None if probs else "low_sqi", "ort", "int8", "b", "1",
    )  # fmt: skip


def test_prediction_sample_is_probabilities_then_label_index():
    labels = ["sinus", "afib", "other"]
    sample = prediction_sample(_prediction("afib", {"other": 0.1, "sinus": 0.2, "afib": 0.7}), labels)
    np.testing.assert_allclose(sample, [0.2, 0.7, 0.1, 1.0], rtol=1e-6)
    gated = prediction_sample(_prediction(None, None), labels)
    assert np.isnan(gated[:3]).all() and gated[3] == -1 and gated.dtype == np.float32


def test_without_pylsl_the_error_names_the_extra(monkeypatch):
    from bridge_edge.devices.base import open_source

    monkeypatch.setitem(sys.modules, "pylsl", None)
    with pytest.raises(DependencyMissingError, match=r"bridge-edge\[lsl\]"):
        open_source("lsl://EEG")


@pytest.mark.parametrize(
    "url, message",
    [
        ("lsl://?type=EEG", "missing stream name"),
        ("lsl://x?rate=3", "unknown option"),
        ("lsl://x?timeout=-1", "> 0"),
    ],
)
def test_bad_lsl_urls_restate_the_grammar(url, message, monkeypatch):
    from bridge_edge.devices.base import open_source

    with pytest.raises(SourceURLError, match=message) as err:
        open_source(url)
    assert "lsl://<stream name>" in str(err.value)
