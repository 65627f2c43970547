"""Fixed-length paired windows over a recording (strided views, no copies until stacked).

Window i covers [i * hop_s, i * hop_s + window_s) on both signals; a window's label is the
rhythm label when every ECG sample in it carries the same label, else -1 (mixed/unlabelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bridge_edge.errors import ConfigError
from bridge_edge.signals.types import PairedRecording


@dataclass(frozen=True)
class PairedWindows:
    ecg: np.ndarray  # (N, window_s * fs_ecg) float32
    ppg: np.ndarray  # (N, window_s * fs_ppg) float32, raw (not preprocessed)
    label: np.ndarray  # (N,) int64, rhythm index if the window is pure else -1
    start_s: np.ndarray  # (N,) float64 window start time in the recording
    fs_ecg: float
    fs_ppg: float

    def __len__(self) -> int:
        return len(self.label)


def _n_samples(seconds: float, fs: float, what: str) -> int:
    n = seconds * fs
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ConfigError(
            f"{what} of {seconds} s is not a whole number of samples at {fs} Hz",
            key=what,
            value=seconds,
            expected=f"a multiple of {1.0 / fs} s",
        )
    return round(n)


def paired_windows(rec: PairedRecording, window_s: float = 10.0, hop_s: float = 5.0) -> PairedWindows:
    w_e, h_e = _n_samples(window_s, rec.fs_ecg, "window_s"), _n_samples(hop_s, rec.fs_ecg, "hop_s")
    w_p, h_p = _n_samples(window_s, rec.fs_ppg, "window_s"), _n_samples(hop_s, rec.fs_ppg, "hop_s")
    n = min((len(rec.ecg) - w_e) // h_e, (len(rec.ppg) - w_p) // h_p) + 1
    if n <= 0:
        empty = np.zeros(0)
        return PairedWindows(
            np.zeros((0, w_e), np.float32),
            np.zeros((0, w_p), np.float32),
            empty.astype(np.int64),
            empty,
            rec.fs_ecg,
            rec.fs_ppg,
        )
    ecg = sliding_window_view(rec.ecg, w_e)[::h_e][:n]
    ppg = sliding_window_view(rec.ppg, w_p)[::h_p][:n]
    rhythm = sliding_window_view(rec.rhythm, w_e)[::h_e][:n]
    pure = (rhythm == rhythm[:, :1]).all(axis=1)
    label = np.where(pure, rhythm[:, 0], -1).astype(np.int64)
    return PairedWindows(
        ecg=np.ascontiguousarray(ecg, dtype=np.float32),
        ppg=np.ascontiguousarray(ppg, dtype=np.float32),
        label=label,
        start_s=np.arange(n) * hop_s,
        fs_ecg=rec.fs_ecg,
        fs_ppg=rec.fs_ppg,
    )
