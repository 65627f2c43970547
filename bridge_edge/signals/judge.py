"""The outside judge: openecg's pretrained rhythm head rates the simulator's ECG.

openecg (codec_v6, trained on real ECGs only) labels every sample of a 10-s, 500 Hz window
with one of sinus, avb, paced, afib, bbb, ventricular. A window's verdict is the majority of its
per-sample labels (what ``openecg.encode(x, fs=500, model=m).rhythm`` holds). The simulator
passes when its sinus windows are called ``sinus`` and its AF windows ``afib`` often enough
(SINUS_FLOOR, AFIB_FLOOR). openecg and torch are imported here only, lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bridge_edge.errors import ConfigError, DependencyMissingError
from bridge_edge.signals.preprocess import resample_linear
from bridge_edge.signals.types import PairedRecording
from bridge_edge.signals.windows import paired_windows

JUDGE_FS = 500.0
WINDOW_S = 10.0
JUDGE_CLASSES = ("sinus", "avb", "paced", "afib", "bbb", "ventricular")  # openecg's order
SINUS_FLOOR = 0.90
AFIB_FLOOR = 0.80


@dataclass
class JudgeReport:
    """Confusion of the simulator's labels (rows) against openecg's verdicts (columns)."""

    true_labels: tuple[str, ...]
    confusion: np.ndarray  # (len(true_labels), len(JUDGE_CLASSES)) window counts
    judged_classes: tuple[str, ...] = JUDGE_CLASSES
    floors: dict[str, float] = field(default_factory=lambda: {"sinus": SINUS_FLOOR, "afib": AFIB_FLOOR})

    def agreement(self, label: str) -> float:
        """Share of windows of simulated ``label`` that openecg calls ``label``."""
        row = self.confusion[self.true_labels.index(label)]
        return float(row[self.judged_classes.index(label)] / row.sum()) if row.sum() else float("nan")

    @property
    def passed(self) -> bool:
        return all(self.agreement(k) >= v for k, v in self.floors.items())

    def as_dict(self) -> dict:
        return {
            "judge": "openecg codec_v6 rhythm head",
            "rows": list(self.true_labels),
            "columns": list(self.judged_classes),
            "confusion": self.confusion.astype(int).tolist(),
            "agreement": {k: round(self.agreement(k), 4) for k in self.floors},
            "floors": self.floors,
            "passed": self.passed,
        }

    def table(self) -> str:
        width = max(len(c) for c in self.judged_classes) + 2
        lines = [
            "simulated \\ openecg".ljust(20)
            + "".join(c.rjust(width) for c in self.judged_classes)
            + "  windows"
        ]
        for label, row in zip(self.true_labels, self.confusion):
            lines.append(
                label.ljust(20) + "".join(str(int(v)).rjust(width) for v in row) + f"  {int(row.sum()):7d}"
            )
        for label, floor in self.floors.items():
            ok = "ok" if self.agreement(label) >= floor else "BELOW FLOOR"
            lines.append(f"{label} called {label}: {self.agreement(label):.1%} (floor {floor:.0%}) {ok}")
        return "\n".join(lines)


def load_judge():
    """openecg's bundled codec (torch module), loaded from the installed package."""
    try:
        import openecg
    except ImportError as err:
        raise DependencyMissingError(
            "the judge needs openecg (and torch); install the 'train' extra",
            package="openecg",
            install_hint="pip install 'bridge-edge[train]'",
        ) from err
    return openecg.load_codec()


def judge_windows(ecg_windows: np.ndarray, model=None, batch: int = 16) -> np.ndarray:
    """openecg's rhythm verdict (index into JUDGE_CLASSES) for each 10-s 500 Hz window."""
    import torch
    from openecg import rank_normalize

    model = load_judge() if model is None else model
    x = np.stack([rank_normalize(w) for w in np.asarray(ecg_windows, dtype=np.float32)])
    verdicts = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i : i + batch])
            _, _, rhythm = model(xb, torch.zeros(len(xb), dtype=torch.long))
            per_sample = rhythm.argmax(-1).numpy()  # (b, 5000)
            counts = np.stack([np.bincount(r, minlength=len(JUDGE_CLASSES)) for r in per_sample])
            verdicts.append(counts.argmax(1))
    return np.concatenate(verdicts) if verdicts else np.zeros(0, np.int64)


def judge_recordings(
    recordings: Sequence[PairedRecording], model=None, hop_s: float = 10.0, progress: bool = False
) -> JudgeReport:
    """Cut every recording into pure-label 10-s windows and tabulate openecg's verdicts."""
    if not recordings:
        raise ConfigError("nothing to judge: no recordings given", key="recordings", value=0)
    labels = recordings[0].labels
    confusion = np.zeros((len(labels), len(JUDGE_CLASSES)), np.int64)
    model = load_judge() if model is None else model
    if progress:
        import sys

        from tqdm import tqdm

        recordings = tqdm(recordings, desc="judge", unit="subject", file=sys.stderr)
    for rec in recordings:
        if rec.fs_ecg != JUDGE_FS:
            rec = _ecg_at_judge_rate(rec)
        win = paired_windows(rec, window_s=WINDOW_S, hop_s=hop_s)
        pure = win.label >= 0
        if not pure.any():
            continue
        verdict = judge_windows(win.ecg[pure], model)
        np.add.at(confusion, (win.label[pure], verdict), 1)
    return JudgeReport(tuple(labels), confusion)


def _ecg_at_judge_rate(rec: PairedRecording) -> PairedRecording:
    from dataclasses import replace

    ecg = resample_linear(rec.ecg, rec.fs_ecg, JUDGE_FS).astype(np.float32)
    idx = np.floor(np.arange(len(ecg)) * rec.fs_ecg / JUDGE_FS).astype(np.int64)
    rhythm = rec.rhythm[np.clip(idx, 0, len(rec.rhythm) - 1)]  # labels by index, never FFT
    r_peaks = np.round(rec.r_peaks * JUDGE_FS / rec.fs_ecg).astype(np.int64)
    return replace(rec, ecg=ecg, rhythm=rhythm, r_peaks=r_peaks, fs_ecg=JUDGE_FS)
