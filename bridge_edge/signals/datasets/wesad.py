"""Loader for WESAD (Schmidt et al., 2018) in its distributed layout: ``ROOT/S<k>/S<k>.pkl``.

Each pickle is a dict: ``signal.chest.ECG`` (700 Hz, mV, shape (n, 1)), ``signal.wrist.BVP``
(64 Hz, Empatica E4 PPG, shape (m, 1)), ``label`` (700 Hz, study protocol condition), ``subject``.
The condition becomes the recording's label track: 1 baseline, 2 stress, 3 amusement,
4 meditation; 0 (transient) and 5-7 (not to be used, per the WESAD readme) become -1.

Pickles can run code when loaded. WESAD is only distributed as pickles, so they are read from
the user's own local copy, and through ``_NumpyOnlyUnpickler``, which refuses every global except
the few numpy functions that rebuild arrays: a tampered file fails to load instead of executing.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError, DatasetNotFoundError
from bridge_edge.signals.datasets.common import dataset_from_recordings, validate_recording
from bridge_edge.signals.types import PairedDataset, PairedRecording

FS_ECG = 700.0
FS_BVP = 64.0
LABELS = ("baseline", "stress", "amusement", "meditation")
_CONDITION_TO_LABEL = np.array([-1, 0, 1, 2, 3, -1, -1, -1], dtype=np.int8)  # WESAD code -> index

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles carry raw array bytes
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a WESAD file")
        return super().find_class(module, name)


def is_wesad(path: Path) -> bool:
    return path.is_dir() and any(path.glob("S*/S*.pkl"))


def load_wesad(root: Path, seed: int = 0) -> PairedDataset:
    files = sorted(p for p in root.glob("S*/S*.pkl") if p.stem == p.parent.name)
    if not files:
        raise DatasetNotFoundError(
            f"no WESAD subject files under {root}; expected {root}/S<k>/S<k>.pkl",
            path=str(root),
            expected="S<k>/S<k>.pkl",
        )
    return dataset_from_recordings([load_wesad_subject(p) for p in files], LABELS, seed, str(root))


def load_wesad_subject(path: Path) -> PairedRecording:
    try:
        with open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        ecg = np.asarray(data["signal"]["chest"]["ECG"], dtype=np.float64).reshape(-1)
        bvp = np.asarray(data["signal"]["wrist"]["BVP"], dtype=np.float64).reshape(-1)
        condition = np.asarray(data["label"]).reshape(-1).astype(np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError, ValueError) as err:
        raise DataError(
            f"{path} is not a WESAD subject file ({err}); expected signal.chest.ECG, signal.wrist.BVP, label",
            path=str(path),
            reason=str(err),
        ) from err
    if len(condition) != len(ecg):
        raise DataError(
            f"{path}: {len(condition)} labels for {len(ecg)} chest samples; expected both at {FS_ECG:g} Hz",
            path=str(path),
            reason="label length",
        )
    known = (condition >= 0) & (condition < len(_CONDITION_TO_LABEL))
    rhythm = np.where(known, _CONDITION_TO_LABEL[np.clip(condition, 0, 7)], -1).astype(np.int8)
    rec = PairedRecording(
        subject_id=path.stem,
        ecg=ecg.astype(np.float32),
        ppg=bvp.astype(np.float32),
        fs_ecg=FS_ECG,
        fs_ppg=FS_BVP,
        rhythm=rhythm,
        r_peaks=np.zeros(0, np.int64),
        labels=LABELS,
        meta={"source": "WESAD", "file": str(path), "label_kind": "study condition"},
    )
    return validate_recording(rec, path)
