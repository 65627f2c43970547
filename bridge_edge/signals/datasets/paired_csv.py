"""Loader for plain paired CSV files: one file per subject (a file, or a directory of them).

Accepted columns (header row required, names case-insensitive, comma-separated):

- ``ecg`` or ``ecg_mv``  ECG in mV (required)
- ``ppg``, ``pleth`` or ``bvp``  PPG in any unit (required)
- ``time_s`` or ``time``  sample time in seconds (optional; gives the sampling rate)
- ``label`` or ``rhythm``  per-row label name such as ``sinus`` / ``afib`` (optional; empty = unlabelled)

ECG and PPG share one row, hence one sampling rate: taken from ``time_s`` or from ``?fs=`` in
the spec (``data.csv?fs=250``). If both exist they must agree. Subject id = file name stem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError, DatasetNotFoundError, SampleRateError
from bridge_edge.signals.datasets.common import dataset_from_recordings, validate_recording
from bridge_edge.signals.simulator import LABELS as SIM_LABELS
from bridge_edge.signals.types import PairedDataset, PairedRecording

ECG_COLUMNS = ("ecg", "ecg_mv")
PPG_COLUMNS = ("ppg", "pleth", "bvp")
TIME_COLUMNS = ("time_s", "time")
LABEL_COLUMNS = ("label", "rhythm")


def load_csv_dataset(path: Path, fs: float | None = None, seed: int = 0) -> PairedDataset:
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DatasetNotFoundError(
            f"no paired CSV at {path}; expected a .csv file or a directory of them",
            path=str(path),
            expected="CSV with columns ecg, ppg[, time_s, label]",
        )
    tables = [_read(f) for f in files]
    names = sorted({str(x) for _, _, _, labels in tables for x in labels if str(x)})
    labels = tuple(SIM_LABELS) + tuple(n for n in names if n not in SIM_LABELS)
    recordings = [
        _recording(f, ecg, ppg, _sampling_rate(f, time, fs), label_names, labels)
        for f, (ecg, ppg, time, label_names) in zip(files, tables)
    ]
    return dataset_from_recordings(recordings, labels, seed, str(path))


def _column(table: np.ndarray, accepted: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in table.dtype.names}
    return next((lower[a] for a in accepted if a in lower), None)


def _read(path: Path):
    table = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8", autostrip=True)
    table = np.atleast_1d(table)
    if table.dtype.names is None:
        raise DataError(
            f"{path} has no header row; expected columns ecg, ppg", path=str(path), reason="no header"
        )
    ecg_col, ppg_col = _column(table, ECG_COLUMNS), _column(table, PPG_COLUMNS)
    if ecg_col is None or ppg_col is None:
        raise DataError(
            f"{path} has columns {list(table.dtype.names)}; expected one of {ECG_COLUMNS} and one of {PPG_COLUMNS}",
            path=str(path),
            reason="missing columns",
        )
    time_col, label_col = _column(table, TIME_COLUMNS), _column(table, LABEL_COLUMNS)
    ecg = table[ecg_col].astype(np.float64)  # empty cells read as NaN and are reported below
    ppg = table[ppg_col].astype(np.float64)
    time = table[time_col].astype(np.float64) if time_col else None
    label_names = table[label_col].astype(str) if label_col else np.array([], dtype=str)
    return ecg, ppg, time, label_names


def _sampling_rate(path: Path, time: np.ndarray | None, fs: float | None) -> float:
    if time is None:
        if fs is None:
            raise SampleRateError(
                f"{path}: no time_s column and no ?fs= given; expected one of them to set the sampling rate",
                expected_hz=None,
                got_hz=None,
                where=str(path),
            )
        return float(fs)
    steps = np.diff(time)
    if len(steps) == 0 or not np.all(np.isfinite(steps)) or np.median(steps) <= 0:
        raise SampleRateError(
            f"{path}: time_s is not increasing", expected_hz=fs, got_hz=None, where=str(path)
        )
    measured = 1.0 / float(np.median(steps))
    if np.max(np.abs(steps - np.median(steps))) > 0.01 / measured + 1e-9:
        raise SampleRateError(
            f"{path}: time_s steps vary from {steps.min():.6f} to {steps.max():.6f} s; expected a uniform grid",
            expected_hz=measured,
            got_hz=None,
            where=str(path),
        )
    if fs is not None and abs(measured - fs) > 0.01 * fs:
        raise SampleRateError(
            f"{path}: time_s gives {measured:.3f} Hz but the spec says fs={fs:g}; expected them to agree",
            expected_hz=float(fs),
            got_hz=measured,
            where=str(path),
        )
    return float(fs) if fs is not None else measured


def _recording(path, ecg, ppg, fs, label_names, labels) -> PairedRecording:
    if len(label_names):
        names, inverse = np.unique(label_names, return_inverse=True)
        code_of_name = np.array([labels.index(n) if n else -1 for n in names], dtype=np.int8)
        rhythm = code_of_name[inverse]
    else:
        rhythm = np.full(len(ecg), -1, np.int8)
    rec = PairedRecording(
        subject_id=path.stem,
        ecg=ecg.astype(np.float32),
        ppg=ppg.astype(np.float32),
        fs_ecg=fs,
        fs_ppg=fs,
        rhythm=rhythm.astype(np.int8),
        r_peaks=np.zeros(0, np.int64),
        labels=labels,
        meta={"source": "csv", "file": str(path)},
    )
    return validate_recording(rec, path)
