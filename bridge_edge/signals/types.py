"""In-memory structure every paired dataset loader produces (simulator, WESAD, CSV, WFDB).

It mirrors the on-disk format of ``bridge-edge simulate`` (docs/simulator.md): one
``PairedRecording`` per subject plus a ``PairedDataset`` with labels and subject-disjoint
splits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLIT_NAMES = ("train", "val", "pair", "test")


@dataclass(frozen=True)
class PairedRecording:
    """Simultaneous ECG and PPG of one subject, with per-ECG-sample rhythm labels."""

    subject_id: str
    ecg: np.ndarray  # float32, mV, shape (n_ecg,)
    ppg: np.ndarray  # float32, arbitrary units, shape (n_ppg,)
    fs_ecg: float
    fs_ppg: float
    rhythm: np.ndarray  # int8 per ECG sample, index into `labels`; -1 = unlabelled
    r_peaks: np.ndarray  # int64 ECG sample indices (empty if unknown)
    labels: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.ecg) / self.fs_ecg

    def rhythm_at_ppg_rate(self) -> np.ndarray:
        """Rhythm labels mapped to PPG sample indices by index (nearest), never by FFT."""
        idx = np.floor(np.arange(len(self.ppg)) * (self.fs_ecg / self.fs_ppg)).astype(np.int64)
        return self.rhythm[np.clip(idx, 0, len(self.rhythm) - 1)]

    def to_npz_dict(self) -> dict[str, Any]:
        return {
            "ecg": self.ecg.astype(np.float32),
            "ppg": self.ppg.astype(np.float32),
            "fs_ecg": np.float64(self.fs_ecg),
            "fs_ppg": np.float64(self.fs_ppg),
            "rhythm": self.rhythm.astype(np.int8),
            "r_peaks": self.r_peaks.astype(np.int64),
            "meta": np.array(json.dumps(self.meta)),
        }


@dataclass(frozen=True)
class Splits:
    train: tuple[str, ...]
    val: tuple[str, ...]
    pair: tuple[str, ...]
    test: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in SPLIT_NAMES}


@dataclass(frozen=True)
class Gap:
    """A run of non-finite samples (e.g. a PPG dropout) a loader cut out of a recording.

    ``start_s`` and ``duration_s`` are in the recording's time; ``channels`` says which channels
    held the non-finite samples. Both channels are cut over the span: the pair stays aligned."""

    record: str
    start_s: float
    duration_s: float
    channels: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "start_s": self.start_s,
            "duration_s": self.duration_s,
            "channels": list(self.channels),
        }


@dataclass
class PairedDataset:
    """Labels, subject-disjoint splits and a way to load each subject's recording.

    ``recordings`` is keyed by piece: a subject's recording split at gaps is several pieces
    (``<subject>~<k>`` for k >= 1), all with the subject's ``subject_id`` and in the same split.
    ``gaps``: every span a loader cut out, so nothing is dropped unreported."""

    labels: tuple[str, ...]
    splits: Splits
    recordings: dict[str, PairedRecording]
    version: str = "1"
    source: str = ""
    gaps: tuple[Gap, ...] = ()

    def gaps_summary(self) -> dict[str, Any]:
        """What the report lists: every gap, and the seconds lost in all."""
        return {
            "n_gaps": len(self.gaps),
            "lost_s": round(sum(g.duration_s for g in self.gaps), 6),
            "records": sorted({g.record for g in self.gaps}),
            "gaps": [g.as_dict() for g in self.gaps],
        }

    def subjects(self, split: str) -> list[PairedRecording]:
        return list(self.iter_subjects(split))

    def iter_subjects(self, split: str) -> Iterator[PairedRecording]:
        """The split's recordings in order, one at a time: a loader whose ``recordings`` read
        lazily (simulated datasets) holds one recording in RAM while the caller windows it."""
        for key in getattr(self.splits, split):
            yield self.recordings[key]
