"""load_dataset reads each format from files in its exact on-disk layout, with typed errors."""

import json
import os
import pickle

import numpy as np
import pytest

from bridge_edge.errors import DataError, DatasetNotFoundError, NonFiniteError, SampleRateError
from bridge_edge.signals.datasets import load_dataset
from bridge_edge.signals.simulator import write_dataset


def _write_wesad_subject(root, name, seconds=12, bvp_hz=64, protocol=2, ecg=None):
    """A small file with the key structure of a real WESAD S<k>.pkl."""
    n, m = int(700 * seconds), int(bvp_hz * seconds)
    rng = np.random.default_rng(0)
    label = np.repeat(np.array([0, 1, 2, 6], dtype=np.int32), n // 4)
    data = {
        "signal": {
            "chest": {
                "ACC": rng.normal(size=(n, 3)),
                "ECG": (rng.normal(size=(n, 1)) if ecg is None else ecg),
                "EMG": rng.normal(size=(n, 1)),
                "EDA": rng.normal(size=(n, 1)),
                "Temp": rng.normal(size=(n, 1)).astype(np.float32),
                "Resp": rng.normal(size=(n, 1)),
            },
            "wrist": {
                "ACC": rng.normal(size=(32 * seconds, 3)),
                "BVP": rng.normal(size=(m, 1)),
                "EDA": rng.normal(size=(4 * seconds, 1)),
                "TEMP": rng.normal(size=(4 * seconds, 1)),
            },
        },
        "label": label,
        "subject": name,
    }
    (root / name).mkdir(parents=True)
    with open(root / name / f"{name}.pkl", "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return data


def test_wesad_layout_loads_with_labels_by_condition(tmp_path):
    for i, name in enumerate(["S2", "S3", "S4", "S5"]):
        data = _write_wesad_subject(tmp_path, name, protocol=2 if i % 2 else pickle.HIGHEST_PROTOCOL)
    ds = load_dataset(str(tmp_path))
    assert sorted(ds.recordings) == ["S2", "S3", "S4", "S5"]
    assert ds.labels == ("baseline", "stress", "amusement", "meditation")
    rec = ds.recordings["S5"]
    assert rec.fs_ecg == 700.0 and rec.fs_ppg == 64.0
    np.testing.assert_allclose(rec.ecg, data["signal"]["chest"]["ECG"][:, 0].astype(np.float32))
    np.testing.assert_allclose(rec.ppg, data["signal"]["wrist"]["BVP"][:, 0].astype(np.float32))
    q = len(rec.rhythm) // 4
    assert list(rec.rhythm[[0, q, 2 * q, 3 * q]]) == [-1, 0, 1, -1]  # 0 and 6 are not usable
    parts = [set(getattr(ds.splits, s)) for s in ("train", "val", "pair", "test")]
    assert set.union(*parts) == set(ds.recordings) and sum(map(len, parts)) == 4


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_wesad_pickle_with_foreign_globals_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "S9").mkdir()
    with open(tmp_path / "S9" / "S9.pkl", "wb") as f:
        pickle.dump({"signal": _Exploit(marker)}, f)
    with pytest.raises(DataError, match="not allowed"):
        load_dataset(f"wesad:{tmp_path}")
    assert not marker.exists()


def test_wesad_wrong_bvp_rate_is_a_sample_rate_error(tmp_path):
    _write_wesad_subject(tmp_path, "S2", bvp_hz=128)
    with pytest.raises(SampleRateError, match="PPG covers 24.0 s at 64 Hz"):
        load_dataset(str(tmp_path))


def test_wesad_nan_is_a_non_finite_error(tmp_path):
    ecg = np.zeros((700 * 12, 1))
    ecg[100] = np.nan
    _write_wesad_subject(tmp_path, "S2", ecg=ecg)
    with pytest.raises(NonFiniteError) as err:
        load_dataset(str(tmp_path))
    assert err.value.count == 1 and err.value.first_index == 100


def _write_csv(path, n=2500, fs=250.0, time=True, labels=True, nan_at=None):
    t = np.arange(n) / fs
    ecg, ppg = np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)
    if nan_at is not None:
        ecg[nan_at] = np.nan
    cols = (["time_s"] if time else []) + ["ecg", "ppg"] + (["label"] if labels else [])
    lab = np.where(t < t[-1] / 2, "sinus", "afib")
    lab[:10] = ""
    rows = [
        ",".join(
            ([f"{t[i]:.6f}"] if time else [])
            + [f"{ecg[i]:.6f}", f"{ppg[i]:.6f}"]
            + ([lab[i]] if labels else [])
        )
        for i in range(n)
    ]
    path.write_text(",".join(cols) + "\n" + "\n".join(rows) + "\n")


def test_paired_csv_with_time_and_labels(tmp_path):
    _write_csv(tmp_path / "alice.csv")
    _write_csv(tmp_path / "bob.csv")
    ds = load_dataset(str(tmp_path))
    rec = ds.recordings["alice"]
    assert rec.fs_ecg == pytest.approx(250.0) and rec.fs_ppg == rec.fs_ecg and len(rec.ecg) == 2500
    assert ds.labels[:2] == ("sinus", "afib")
    assert rec.rhythm[0] == -1 and rec.rhythm[100] == 0 and rec.rhythm[-1] == 1


def test_paired_csv_rate_from_spec_and_errors(tmp_path):
    _write_csv(tmp_path / "a.csv", time=False, labels=False)
    rec = load_dataset(f"{tmp_path / 'a.csv'}?fs=250").recordings["a"]
    assert rec.fs_ecg == 250.0 and (rec.rhythm == -1).all()
    with pytest.raises(SampleRateError, match="no time_s column and no"):
        load_dataset(str(tmp_path / "a.csv"))
    _write_csv(tmp_path / "b.csv")
    with pytest.raises(SampleRateError, match="time_s gives 250.000 Hz but the spec says fs=500"):
        load_dataset(f"{tmp_path / 'b.csv'}?fs=500")
    _write_csv(tmp_path / "c.csv", nan_at=7)
    with pytest.raises(NonFiniteError, match="c.csv ECG"):
        load_dataset(str(tmp_path / "c.csv"))
    (tmp_path / "d.csv").write_text("time_s,voltage\n0,1\n0.004,2\n")
    with pytest.raises(DataError, match="expected one of"):
        load_dataset(str(tmp_path / "d.csv"))


def test_wfdb_record_with_rhythm_annotations(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    fs, n = 250, 5000
    t = np.arange(n) / fs
    sig = np.stack([0.5 * np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)], axis=1)
    wfdb.wrsamp(
        "rec1",
        fs=fs,
        units=["mV", "NU"],
        sig_name=["ECG II", "PLETH"],
        p_signal=sig,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "rec1",
        "atr",
        sample=np.array([0, 2000, 3500]),
        symbol=["+", "+", "+"],
        aux_note=["(N", "(AFIB", "(VT"],
        write_dir=str(tmp_path),
    )
    ds = load_dataset(str(tmp_path / "rec1.hea"))
    rec = ds.recordings["rec1"]
    assert rec.fs_ecg == 250.0 and rec.fs_ppg == 250.0
    np.testing.assert_allclose(rec.ecg, sig[:, 0], atol=1e-3)
    assert rec.rhythm[1999] == 0 and rec.rhythm[2000] == 1 and rec.rhythm[3500] == -1
    assert load_dataset(str(tmp_path)).recordings.keys() == ds.recordings.keys()


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))
    write_dataset(tmp_path / "sim", subjects=2, minutes=0.2, seed=1)
    (tmp_path / "sim" / "subjects" / "sim001.npz").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(str(tmp_path / "sim"))
    assert err.value.path.endswith("sim001.npz") and "sim001.npz not found" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="not a dataset this project reads"):
        load_dataset(str(tmp_path / "empty"))


def test_simulated_npz_with_wrong_rate_is_rejected(tmp_path):
    write_dataset(tmp_path, subjects=1, minutes=0.2, seed=1)
    path = tmp_path / "subjects" / "sim000.npz"
    with np.load(path) as z:
        data = dict(z)
    data["fs_ppg"] = np.float64(2 * float(data["fs_ppg"]))  # twice the rate the samples were drawn at
    np.savez(path, **data)
    dataset = load_dataset(str(tmp_path))  # simulated recordings are read (and checked) on access
    with pytest.raises(SampleRateError, match="expected the same duration"):
        dataset.recordings["sim000"]
    assert json.loads((tmp_path / "dataset.json").read_text())["subjects"] == ["sim000"]


def _write_mimic_segment(wfdb, folder, name, seconds, channels, fs=125):
    """A MIMIC-style segment: channel k is a sine at k + 1 Hz, whatever the order of ``channels``."""
    t = np.arange(round(seconds * fs)) / fs
    freq = {"II": 1.0, "PLETH": 2.0, "ABP": 3.0, "V": 4.0}
    sig = np.stack([np.sin(2 * np.pi * freq[c] * t) for c in channels], axis=1)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(channels),
        sig_name=list(channels),
        p_signal=sig,
        fmt=["16"] * len(channels),
        adc_gain=[1000.0] * len(channels),
        baseline=[0] * len(channels),
        write_dir=str(folder),
    )
    return len(t)


def _write_mimic_tree(wfdb, root, fs=125):
    """root/p00/p000020: a variable-layout multi-segment record (II + PLETH; a 4-s ``~`` gap;
    a 6-s segment without PLETH; PLETH + II in the other order) and a single-segment record of
    the same patient; root/p00/p000033: a record without PLETH and one with both."""
    patient = root / "p00" / "p000020"
    patient.mkdir(parents=True)
    n1 = _write_mimic_segment(wfdb, patient, "3000003_0001", 20, ["II", "PLETH"])
    n2 = _write_mimic_segment(wfdb, patient, "3000003_0002", 6, ["II", "V"])
    n3 = _write_mimic_segment(wfdb, patient, "3000003_0003", 20, ["PLETH", "ABP", "II"])
    layout = "".join(f"~ 0 1000/mV 16 0 0 0 0 {c}\n" for c in ("II", "PLETH", "ABP", "V"))
    (patient / "3000003_layout.hea").write_text(f"3000003_layout 4 {fs} 0\n{layout}")
    gap = 4 * fs
    (patient / "3000003.hea").write_text(
        f"3000003/5 4 {fs} {n1 + gap + n2 + n3}\n3000003_layout 0\n3000003_0001 {n1}\n~ {gap}\n"
        f"3000003_0002 {n2}\n3000003_0003 {n3}\n"
    )
    _write_mimic_segment(wfdb, patient, "3000004", 16, ["II", "PLETH"])
    other = root / "p00" / "p000033"
    other.mkdir(parents=True)
    _write_mimic_segment(wfdb, other, "3100001", 12, ["II", "ABP"])
    _write_mimic_segment(wfdb, other, "3100002", 16, ["PLETH", "II"])
    return {"gap_s": 4.0, "no_pleth_s": 6.0, "first_s": 20.0}


def test_mimic_style_tree_loads_multi_segment_records_by_patient_with_gaps_counted(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    from bridge_edge.signals.datasets.wfdb_record import find_records

    shape = _write_mimic_tree(wfdb, tmp_path)
    # segments and layouts are parts of their master record, not records of their own
    assert [r.relative_to(tmp_path).as_posix() for r in find_records(tmp_path)] == [
        "p00/p000020/3000003",
        "p00/p000020/3000004",
        "p00/p000033/3100001",
        "p00/p000033/3100002",
    ]
    ds = load_dataset(str(tmp_path))
    assert set(ds.recordings) == {
        "p00/p000020/3000003",
        "p00/p000020/3000003~1",
        "p00/p000020/3000004",
        "p00/p000033/3100002",
    }
    # a patient's records are one subject, so they share a split
    by_subject = {}
    for split in ("train", "val", "pair", "test"):
        for key in getattr(ds.splits, split):
            by_subject.setdefault(ds.recordings[key].subject_id, set()).add(split)
    assert by_subject.keys() == {"p000020", "p000033"} and all(len(s) == 1 for s in by_subject.values())
    # channels are read by name: the last segment stores PLETH first, II last
    first, last = ds.recordings["p00/p000020/3000003"], ds.recordings["p00/p000020/3000003~1"]
    t = np.arange(len(last.ecg)) / 125
    np.testing.assert_allclose(last.ecg, np.sin(2 * np.pi * 1.0 * t), atol=2e-3)
    np.testing.assert_allclose(last.ppg, np.sin(2 * np.pi * 2.0 * t), atol=2e-3)
    assert len(first.ecg) == 20 * 125 and last.meta["start_s"] == pytest.approx(30.0)
    # every lost span is counted: the ~ segment and the segment without PLETH (one run of NaN
    # PPG), and the record without PLETH, named by its place in the tree
    gaps = {(g.record, g.start_s, g.duration_s, g.channels) for g in ds.gaps}
    assert gaps == {
        ("p00/p000020/3000003", shape["first_s"], shape["gap_s"] + shape["no_pleth_s"], ("ecg", "ppg")),
        ("p00/p000033/3100001", 0.0, 12.0, ("ppg",)),
    }
    assert ds.gaps_summary()["lost_s"] == pytest.approx(22.0)


def test_mimic_style_record_alone_and_resampled_to_the_models_rates(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    from bridge_edge.bridge.data import recording_windows
    from bridge_edge.signals.preprocess import preprocess_spec

    _write_mimic_tree(wfdb, tmp_path)
    patient = tmp_path / "p00" / "p000020"
    ds = load_dataset(str(patient / "3000003.hea"))  # the master alone: its own name and subject
    assert set(ds.recordings) == {"3000003", "3000003~1"}
    windows = recording_windows(
        ds.recordings["3000003"],
        window_s=10.0,
        hop_s=5.0,
        fs_ecg=500.0,
        ppg_spec=preprocess_spec("ppg-v2", 125.0),
    )
    # 125 Hz in the record; 500 Hz ECG and 125 Hz PPG windows out, 10 s each
    assert len(windows.ecg) >= 2 and windows.ecg.shape[1:] == (5000,) and windows.ppg.shape[1:] == (1250,)
    with pytest.raises(DataError, match="PPG channel"):  # given alone, a record without PLETH is an error
        load_dataset(str(tmp_path / "p00" / "p000033" / "3100001.hea"))


def test_wfdb_records_are_read_when_iterated_one_record_at_a_time(tmp_path, monkeypatch):
    """The load scans every record once (pieces, gaps) and keeps no samples; iterating a split
    reads each of its records once more, holding one record (docs/scale.md)."""
    wfdb = pytest.importorskip("wfdb")
    from bridge_edge.signals.datasets.wfdb_record import RecordPieces, RecordSource

    _write_mimic_tree(wfdb, tmp_path)
    reads = []
    load = RecordSource.load
    monkeypatch.setattr(RecordSource, "load", lambda self: reads.append(self.key) or load(self))
    ds = load_dataset(str(tmp_path))
    assert isinstance(ds.recordings, RecordPieces)
    assert sorted(reads) == [
        "p00/p000020/3000003",
        "p00/p000020/3000004",
        "p00/p000033/3100001",
        "p00/p000033/3100002",
    ]
    reads.clear()
    split = next(
        s for s in ("train", "val", "pair", "test") if "p00/p000020/3000003~1" in getattr(ds.splits, s)
    )
    pieces = list(ds.iter_subjects(split))
    assert reads == sorted({k.split("~")[0] for k in getattr(ds.splits, split)})  # each record once, in order
    first = next(p for p in pieces if p.meta["piece"] == "p00/p000020/3000003")
    assert len(first.ecg) == 20 * 125 and np.isfinite(first.ppg).all()
