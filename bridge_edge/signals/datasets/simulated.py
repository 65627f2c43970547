"""Loader for ``bridge-edge simulate`` output: OUT/dataset.json + OUT/subjects/<id>.npz."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError, DatasetNotFoundError
from bridge_edge.signals.datasets.common import validate_recording
from bridge_edge.signals.types import SPLIT_NAMES, PairedDataset, PairedRecording, Splits

NPZ_KEYS = ("ecg", "ppg", "fs_ecg", "fs_ppg", "rhythm", "r_peaks", "meta")


def is_simulated(path: Path) -> bool:
    return (path / "dataset.json").is_file()


def load_simulated(path: Path) -> PairedDataset:
    index_path = path / "dataset.json"
    if not index_path.is_file():
        raise DatasetNotFoundError(
            f"{index_path} not found; expected a `bridge-edge simulate` output directory",
            path=str(index_path),
            expected="dataset.json + subjects/<id>.npz",
        )
    try:
        index = json.loads(index_path.read_text())
        labels = tuple(index["labels"])
        splits = Splits(**{name: tuple(index["splits"][name]) for name in SPLIT_NAMES})
        subjects = list(index["subjects"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{index_path} is malformed ({err}); expected keys version, labels, subjects, splits",
            path=str(index_path),
            reason=str(err),
        ) from err
    recordings = LazyRecordings({sid: path / "subjects" / f"{sid}.npz" for sid in subjects}, labels)
    return PairedDataset(
        labels=labels,
        splits=splits,
        recordings=recordings,
        version=str(index.get("version", "1")),
        source=str(path),
    )


class LazyRecordings(Mapping):
    """Subject id -> recording, read from its .npz on each access and not kept: iterating a split
    holds one recording in RAM, whatever the dataset's size (docs/scale.md). A missing file is
    reported when the dataset is opened, as before; a malformed one when it is read."""

    def __init__(self, files: dict[str, Path], labels: tuple[str, ...]) -> None:
        self._files, self._labels = files, labels
        for sid, npz_path in files.items():
            if not npz_path.is_file():
                raise DatasetNotFoundError(
                    f"{npz_path} not found; dataset.json lists subject {sid!r}",
                    path=str(npz_path),
                    expected=f"subjects/{sid}.npz with keys {', '.join(NPZ_KEYS)}",
                )

    def __getitem__(self, sid: str) -> PairedRecording:
        return _load_subject(self._files[sid], sid, self._labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _load_subject(npz_path: Path, subject_id: str, labels: tuple[str, ...]) -> PairedRecording:
    if not npz_path.is_file():
        raise DatasetNotFoundError(
            f"{npz_path} not found; dataset.json lists subject {subject_id!r}",
            path=str(npz_path),
            expected=f"subjects/{subject_id}.npz with keys {', '.join(NPZ_KEYS)}",
        )
    with np.load(npz_path, allow_pickle=False) as z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            raise DataError(
                f"{npz_path} lacks {missing}; expected keys {', '.join(NPZ_KEYS)}",
                path=str(npz_path),
                reason=f"missing {missing}",
            )
        rec = PairedRecording(
            subject_id=subject_id,
            ecg=z["ecg"].astype(np.float32),
            ppg=z["ppg"].astype(np.float32),
            fs_ecg=float(z["fs_ecg"]),
            fs_ppg=float(z["fs_ppg"]),
            rhythm=z["rhythm"].astype(np.int8),
            r_peaks=z["r_peaks"].astype(np.int64),
            labels=labels,
            meta=json.loads(str(z["meta"])),
        )
    return validate_recording(rec, npz_path)
