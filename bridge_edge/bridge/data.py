"""Model-ready paired windows: ECG for the old model, preprocessed PPG for the new one.

For each subject: ECG is resampled (linear) to the old model's rate and cut raw (the old
adapter's ``prepare`` normalises it); PPG goes through the versioned ``PreprocessSpec``
(causal band-pass over the whole recording, resample, z-score per window) so training sees
exactly what the device will. Both are cut on the same time grid. A window takes the dataset
label that covers at least ``purity`` of its ECG samples, else -1 (mixed; counted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bridge_edge.bridge.shards import RowReader
from bridge_edge.errors import DataError
from bridge_edge.signals.preprocess import (
    PreprocessSpec,
    filter_and_resample,
    normalise_windows,
    resample_linear,
    upright_windows,
    window_beats,
)
from bridge_edge.signals.quality import window_sqi
from bridge_edge.signals.types import PairedDataset, PairedRecording


@dataclass
class WindowSet:
    ecg: np.ndarray  # (N, L_ecg) float32 at the old model's rate, raw mV; (N, 0) when not asked for
    ppg: np.ndarray  # (N, L_ppg) float32 at the new model's rate, preprocessed (model-ready)
    label: np.ndarray  # (N,) int64 dataset label index, -1 = mixed window
    subject: np.ndarray  # (N,) subject id (str)
    start_s: np.ndarray  # (N,) window start, seconds from recording start
    labels: tuple[str, ...]  # dataset vocabulary
    # (N,) PPG quality of each window as recorded (signals.quality.window_sqi on the upright
    # band-passed window, before normalisation): what the runtime's SQI gate reads. NaN in run
    # directories written before it was stored; without the motion or pulse-gap score in older ones.
    sqi: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.sqi is None:
            self.sqi = np.full(len(self.label), np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.label)

    def batched(self) -> WindowSet:
        """The same windows, their ECG and PPG read through ``shards.RowReader``: a memory-mapped
        split is read pass by pass and its pages given back as it goes (docs/scale.md)."""
        return replace(self, ecg=RowReader(self.ecg), ppg=RowReader(self.ppg))

    def subset(self, idx: np.ndarray) -> WindowSet:
        return WindowSet(
            self.ecg[idx],
            self.ppg[idx],
            self.label[idx],
            self.subject[idx],
            self.start_s[idx],
            self.labels,
            self.sqi[idx],
        )

    @staticmethod
    def concat(parts: list[WindowSet]) -> WindowSet:
        if len({w.labels for w in parts}) != 1:
            raise DataError(
                f"cannot pool windows of datasets with different label vocabularies: "
                f"{[list(w.labels) for w in parts]}; expected one vocabulary",
                reason="label vocabularies differ",
            )
        joined = {f: np.concatenate([getattr(w, f) for w in parts]) for f in ARRAY_FIELDS}
        return WindowSet(**joined, labels=parts[0].labels)

    def head_truth(self, head_labels: tuple[str, ...]) -> np.ndarray:
        """Truth as indices into the head vocabulary (-1 where the label has no counterpart)."""
        return map_labels(self.label, self.labels, head_labels)


ARRAY_FIELDS = ("ecg", "ppg", "label", "subject", "start_s", "sqi")  # what a WindowSet stores per window


def map_labels(label: np.ndarray, dataset_labels, head_labels) -> np.ndarray:
    """Dataset label indices -> head label indices by name; unknown names and -1 map to -1."""
    lut = np.array([head_labels.index(n) if n in head_labels else -1 for n in dataset_labels] + [-1])
    return lut[np.where(label >= 0, label, len(dataset_labels))]


def _window_starts(duration_s: float, window_s: float, hop_s: float) -> np.ndarray:
    n = int(np.floor((duration_s - window_s) / hop_s)) + 1 if duration_s >= window_s else 0
    return np.arange(n) * hop_s


def _cut(x: np.ndarray, fs: float, starts_s: np.ndarray, window_s: float) -> np.ndarray:
    n = round(window_s * fs)
    idx = np.round(starts_s * fs).astype(np.int64)
    return sliding_window_view(x, n)[idx]


def _window_labels(rhythm: np.ndarray, fs: float, starts_s, window_s, n_labels: int, purity: float):
    n = round(window_s * fs)
    idx = np.round(starts_s * fs).astype(np.int64)
    onehot = rhythm[:, None] == np.arange(n_labels)[None, :]  # (n_samples, K)
    csum = np.concatenate([np.zeros((1, n_labels), np.int64), np.cumsum(onehot, axis=0)])
    counts = csum[idx + n] - csum[idx]  # (N, K) samples per label in each window
    best = counts.argmax(axis=1)
    return np.where(counts.max(axis=1) >= purity * n, best, -1).astype(np.int64)


def recording_windows(
    rec: PairedRecording,
    *,
    window_s: float,
    hop_s: float,
    fs_ecg: float | None,
    ppg_spec: PreprocessSpec,
    purity: float = 0.8,
) -> WindowSet:
    """Windows of one subject; ``fs_ecg=None`` skips the ECG (PPG-only evaluation)."""
    ppg = filter_and_resample(rec.ppg, rec.fs_ppg, ppg_spec)
    duration = min(len(ppg) / ppg_spec.fs_out, len(rec.rhythm) / rec.fs_ecg)
    starts = _window_starts(duration, window_s, hop_s)
    cut = _cut(ppg, ppg_spec.fs_out, starts, window_s)
    upright = upright_windows(cut, ppg_spec)
    sqi = window_sqi(upright, ppg_spec.fs_out, "ppg", beats=window_beats(upright, ppg_spec)).astype(
        np.float32
    )
    ppg_w = normalise_windows(cut, ppg_spec)
    if fs_ecg is None:
        ecg_w = np.zeros((len(starts), 0), np.float32)
    else:
        ecg = resample_linear(np.asarray(rec.ecg, np.float64), rec.fs_ecg, fs_ecg)
        starts = starts[starts + window_s <= len(ecg) / fs_ecg]
        ppg_w, sqi = ppg_w[: len(starts)], sqi[: len(starts)]
        ecg_w = _cut(ecg, fs_ecg, starts, window_s).astype(np.float32)
    lab = _window_labels(rec.rhythm.astype(np.int64), rec.fs_ecg, starts, window_s, len(rec.labels), purity)
    return WindowSet(ecg_w, ppg_w, lab, np.full(len(starts), rec.subject_id), starts, tuple(rec.labels), sqi)


def split_windows(
    dataset: PairedDataset,
    split: str,
    *,
    window_s: float,
    hop_s: float,
    fs_ecg: float | None,
    ppg_spec: PreprocessSpec,
    purity: float = 0.8,
) -> WindowSet:
    """All windows of one split, subjects in the split's (sorted) order."""
    parts = [
        recording_windows(r, window_s=window_s, hop_s=hop_s, fs_ecg=fs_ecg, ppg_spec=ppg_spec, purity=purity)
        for r in dataset.subjects(split)
    ]
    if not parts:
        n_ecg = 0 if fs_ecg is None else round(window_s * fs_ecg)
        return WindowSet(
            np.zeros((0, n_ecg), np.float32),
            np.zeros((0, round(window_s * ppg_spec.fs_out)), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, str),
            np.zeros(0),
            tuple(dataset.labels),
        )
    return WindowSet.concat(parts)
