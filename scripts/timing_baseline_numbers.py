"""The pulse-timing baseline alone (no bundle) on a run's held-out windows and the development
recordings: the numbers of docs/method.md ("Retuned on dataset version 2").

``scripts/timing_vs_bridge.py`` puts the bundle beside it; this one needs no model, so it also
runs the frozen code of another checkout (``PYTHONPATH=/path/to/checkout``) for before/after.

    PYTHONPATH=. python3 scripts/timing_baseline_numbers.py [--run runs/default]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bridge_edge.bridge.metrics import _auroc
from bridge_edge.signals.dev_recordings import DEV_RECORDINGS, load_dev_recording
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, window_polarity
from bridge_edge.signals.quality import LOW_SQI, ppg_sqi
from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD, rr_af_scores

SINUS, AFIB = 0, 1  # dataset label indices (signals.simulator.LABELS)


def _rates(s: np.ndarray, is_af: np.ndarray) -> dict:
    t = RR_AF_THRESHOLD.value
    return {
        "n": int(len(s)),
        "n_af": int(is_af.sum()),
        "unscored": int(np.isnan(s).sum()),
        "auroc": round(_auroc(is_af, np.where(np.isfinite(s), s, -1.0)), 3),
        "af_recall": round(float(np.mean(s[is_af] >= t)), 3) if is_af.any() else None,
        "false_af": round(float(np.mean(s[~is_af] >= t)), 3) if (~is_af).any() else None,
    }


def held_out(run: Path, fs: float = 125.0) -> dict:
    """Windows labelled sinus or AF of the run's test split and held-out subjects."""
    parts = [np.load(run / "windows" / f"{split}.npz") for split in ("test", "held_out")]
    ppg = np.concatenate([p["ppg"] for p in parts]).astype(np.float64)
    label = np.concatenate([p["label"] for p in parts])
    keep = (label == SINUS) | (label == AFIB)
    x, is_af = ppg[keep], label[keep] == AFIB
    s = rr_af_scores(x, fs)
    sqi = ppg_sqi(x * window_polarity(x)[:, None], fs)
    strata = {"all": np.ones(len(s), bool), "sqi_ge_0.5": sqi >= LOW_SQI, "sqi_lt_0.5": sqi < LOW_SQI}
    return {name: _rates(s[m], is_af[m]) for name, m in strata.items() if m.any()}


def dev_recordings() -> dict:
    """Per recording (healthy people): windows, SQI >= 0.5, timing's AF calls and unscored among
    them, and on timing's own gate over all windows. 10-s windows, hop 5 s, after 5 s."""
    spec = PreprocessSpec()
    fs, length, hop = spec.fs_out, int(10 * spec.fs_out), int(5 * spec.fs_out)
    t = RR_AF_THRESHOLD.value
    out = {}
    for name in DEV_RECORDINGS:
        rec = load_dev_recording(name)
        y = filter_and_resample(rec.ppg, rec.fs_ppg, spec)
        w = np.stack([y[a : a + length] for a in range(int(5 * fs), len(y) - length + 1, hop)])
        s = rr_af_scores(w, fs)
        ok = ppg_sqi(w * window_polarity(w)[:, None], fs) >= LOW_SQI
        out[name] = {
            "windows": int(len(w)),
            "sqi_ok": int(ok.sum()),
            "called_af_sqi_ok": int((s[ok] >= t).sum()),
            "unscored_sqi_ok": int(np.isnan(s[ok]).sum()),
            "read": int(np.isfinite(s).sum()),
            "called_af": int((s >= t).sum()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/default"))
    args = ap.parse_args()
    result = {"threshold": RR_AF_THRESHOLD.value, "dev_recordings": dev_recordings()}
    if (args.run / "windows" / "held_out.npz").exists():
        result["held_out_simulated"] = held_out(args.run)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
