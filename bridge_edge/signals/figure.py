"""The committed picture of the simulator: example ECG/PPG pairs per rhythm.

    python -m bridge_edge.signals.figure docs/figures/simulated_pairs.png

Each row is 10 s of one rhythm (the judge's window length): ECG on top, PPG below, the R
peaks drawn on both so the pulse transit time is visible. With openecg installed, each row's
title also carries openecg's verdict on that exact window.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bridge_edge.signals.simulator import PatientSimulator

EXAMPLES = (  # (title, seed, script, motion, start of the shown window in s)
    ("sinus rhythm", 31, [("sinus", 30)], 0.0, 10.0),
    ("atrial fibrillation", 31, [("afib", 30)], 0.0, 10.0),
    ("ectopy (PVCs, PACs)", 32, [("ectopy", 40)], 0.0, 20.0),
    ("sinus tachycardia + PPG motion artefact", 33, [("tachy", 60)], 1.0, 30.0),
)


def _verdict(window: np.ndarray) -> str | None:
    """openecg's call on one 10-s window, or None where openecg/torch are not installed."""
    from bridge_edge.errors import DependencyMissingError
    from bridge_edge.signals.judge import JUDGE_CLASSES, judge_windows

    try:
        return JUDGE_CLASSES[int(judge_windows(window[None])[0])]
    except (ImportError, DependencyMissingError):
        return None


def plot_simulated_pairs(path: str | Path, with_verdicts: bool = True) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(EXAMPLES), 1, figsize=(13, 2.1 * 2 * len(EXAMPLES)), sharex=True)
    for row, (title, seed, script, motion, start) in enumerate(EXAMPLES):
        sim = PatientSimulator(seed, script=script, motion_noise=motion)
        sim.generate(start)
        rec = sim.generate(10.0)
        t_ecg = np.arange(len(rec.ecg)) / rec.fs_ecg
        t_ppg = np.arange(len(rec.ppg)) / rec.fs_ppg
        r_s = rec.r_peaks / rec.fs_ecg
        ax_e, ax_p = axes[2 * row], axes[2 * row + 1]
        ax_e.plot(t_ecg, rec.ecg, lw=0.8, color="tab:blue")
        ax_e.plot(r_s, rec.ecg[rec.r_peaks], "v", ms=4, color="tab:red")
        ax_p.plot(t_ppg, rec.ppg, lw=1.0, color="tab:green")
        for r in r_s:
            ax_p.axvline(r, color="tab:red", lw=0.5, alpha=0.4)
        verdict = _verdict(rec.ecg) if with_verdicts else None
        phys = sim.physiology
        ax_e.set_title(
            f"{title} - HR {60 / np.mean(np.diff(r_s)):.0f} bpm, PTT {phys.ptt_s * 1000:.0f} ms"
            + (f" - openecg says: {verdict}" if verdict else ""),
            loc="left",
            fontsize=10,
        )
        ax_e.set_ylabel("ECG (mV)")
        ax_p.set_ylabel("PPG (a.u.)")
    axes[-1].set_xlabel("time (s); red: R peaks")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=75)
    plt.close(fig)
    return out


if __name__ == "__main__":  # pragma: no cover
    print(plot_simulated_pairs(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/simulated_pairs.png"))
