"""WFDB records with NaN runs (PPG dropout, lead-off) load split at the gaps, every gap counted."""

import numpy as np
import pytest

from bridge_edge.bridge.data import split_windows
from bridge_edge.signals.datasets import load_dataset
from bridge_edge.signals.datasets.gaps import split_at_gaps
from bridge_edge.signals.preprocess import preprocess_spec
from bridge_edge.signals.types import PairedRecording

FS = 125  # MIMIC's waveform rate


def _write_record(wfdb, root, name, seconds, ppg_gaps=(), ecg_gaps=()):
    n = int(seconds * FS)
    t = np.arange(n) / FS
    rng = np.random.default_rng(len(name))
    ecg = 0.8 * np.sin(2 * np.pi * 1.2 * t) + 0.01 * rng.normal(size=n)
    ppg = np.cos(2 * np.pi * 1.2 * t) + 0.01 * rng.normal(size=n)
    for a, b in ppg_gaps:
        ppg[int(a * FS) : int(b * FS)] = np.nan
    for a, b in ecg_gaps:
        ecg[int(a * FS) : int(b * FS)] = np.nan
    wfdb.wrsamp(
        name,
        fs=FS,
        units=["mV", "NU"],
        sig_name=["II", "PLETH"],
        p_signal=np.stack([ecg, ppg], axis=1),
        fmt=["16", "16"],
        write_dir=str(root),
    )
    return ecg, ppg


def test_a_record_with_a_ppg_dropout_loads_split_at_it_and_the_gap_is_counted(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    # rec_a: a 4-s PPG dropout at 30 s and a 1-s lead-off at 50 s; rec_b..rec_e: no gap
    _, ppg = _write_record(wfdb, tmp_path, "rec_a", 80, ppg_gaps=[(30, 34)], ecg_gaps=[(50, 51)])
    for name in ("rec_b", "rec_c", "rec_d", "rec_e"):
        _write_record(wfdb, tmp_path, name, 40)
    ds = load_dataset(str(tmp_path))  # a directory of records: one bad record aborts nothing
    assert sorted(ds.recordings) == ["rec_a", "rec_a~1", "rec_a~2", "rec_b", "rec_c", "rec_d", "rec_e"]
    pieces = [ds.recordings[k] for k in ("rec_a", "rec_a~1", "rec_a~2")]
    assert {p.subject_id for p in pieces} == {"rec_a"}
    assert [len(p.ppg) / FS for p in pieces] == [30.0, 16.0, 29.0]
    assert all(np.isfinite(p.ppg).all() and np.isfinite(p.ecg).all() for p in pieces)
    np.testing.assert_allclose(pieces[1].ppg[:10], ppg[34 * FS : 34 * FS + 10], atol=1e-3)
    summary = ds.gaps_summary()
    assert summary["n_gaps"] == 2 and summary["records"] == ["rec_a"]
    assert summary["lost_s"] == pytest.approx(5.0)
    assert summary["gaps"] == [
        {"record": "rec_a", "start_s": 30.0, "duration_s": 4.0, "channels": ["ppg"]},
        {"record": "rec_a", "start_s": 50.0, "duration_s": 1.0, "channels": ["ecg"]},
    ]
    # every piece of a subject is in that subject's split
    split_of = {k: name for name, keys in ds.splits.as_dict().items() for k in keys}
    assert len({split_of[k] for k in ("rec_a", "rec_a~1", "rec_a~2")}) == 1
    # and windows come from the pieces only, under the subject's name
    split = split_of["rec_a"]
    w = split_windows(
        ds, split, window_s=10.0, hop_s=5.0, fs_ecg=None, ppg_spec=preprocess_spec("ppg-v2", 125.0)
    )
    assert np.isfinite(w.ppg).all() and "rec_a" in set(w.subject.tolist())
    assert "rec_a~1" not in set(w.subject.tolist())


def test_short_finite_stretches_between_gaps_are_lost_and_counted():
    n = 20 * FS
    ppg = np.ones(n, np.float32)
    ppg[5 * FS : 6 * FS] = np.nan
    ppg[7 * FS : 8 * FS] = np.nan  # 1 s of finite PPG between two gaps: shorter than a piece
    ecg = np.zeros(n, np.float32)
    rec = PairedRecording("r", ecg, ppg, FS, FS, np.zeros(n, np.int8), np.array([10, 800, 1500]), ("sinus",))
    pieces, gaps = split_at_gaps(rec)
    assert [(g.start_s, g.duration_s) for g in gaps] == [(5.0, 3.0)]
    assert [len(p.ppg) for p in pieces] == [5 * FS, 12 * FS]
    assert sum(len(p.ppg) for p in pieces) + sum(g.duration_s for g in gaps) * FS == n  # nothing unaccounted
    assert list(pieces[1].r_peaks) == [1500 - 8 * FS] and pieces[1].meta["start_s"] == 8.0
    whole, none = split_at_gaps(pieces[0])
    assert whole == [pieces[0]] and none == []
    all_nan = PairedRecording(
        "z", ecg, np.full(n, np.nan, np.float32), FS, FS, rec.rhythm, rec.r_peaks[:0], ("sinus",)
    )
    assert split_at_gaps(all_nan)[0] == [] and split_at_gaps(all_nan)[1][0].duration_s == 20.0
