"""How well each interval target of pretraining tells AF from sinus with premature beats, by rate.

Beat trains from the rhythm suite's own interval generators (signals.resequence: sinus with
breathing, sinus with isolated premature beats at 10 % of beats, AF), cut into 10-s windows;
each target is computed from the window's beat times as pretraining computes it from the
detected beats. Printed: AUROC of AF against each not-AF group (1.0: every AF window above every
other; 0.5: no better than chance; below 0.5: the group reads as *more* irregular than AF) and
the share of windows where the target is undefined (NaN). docs/method.md ("Pretraining targets
that tell ectopy from AF") has the table. Run: PYTHONPATH=. python3 scripts/pretraining_target_separation.py
"""

from __future__ import annotations

import numpy as np

from bridge_edge.bridge.metrics import average_ranks
from bridge_edge.signals import resequence
from bridge_edge.signals.ppg_targets import nn_interval_cv_from_beats
from bridge_edge.signals.rr_irregularity_v1 import rr_irregularity_v1_from_beats

FS = 125.0
WINDOW_S = 10.0
RR_BANDS_S = ((0.4, 0.6), (0.6, 0.85), (0.85, 1.0), (1.0, 1.25), (1.25, 1.5))
WINDOWS_PER_RHYTHM = 3000
GENERATORS = {
    "sinus": resequence.sinus_intervals,
    "ectopic": resequence.ectopic_intervals,
    "afib": resequence.af_intervals,
}


def window_intervals(rhythm: str, mean_rr: float, rng: np.random.Generator) -> np.ndarray:
    times = np.cumsum(GENERATORS[rhythm](30.0, mean_rr, rng))
    start = rng.uniform(2.0, 8.0)
    return np.diff(times[(times >= start) & (times < start + WINDOW_S)])


def targets(rr: np.ndarray) -> dict[str, float]:
    beats = np.round(np.concatenate([[0.0], np.cumsum(rr)]) * FS)
    return {
        "ibi_cv": rr.std() / rr.mean(),
        "rmssd_over_ibi": np.sqrt(np.mean(np.diff(rr) ** 2)) / rr.mean(),
        "rr_irregularity": np.log(rr_irregularity_v1_from_beats(beats, FS) + 0.01),
        "nn_interval_cv": np.log(nn_interval_cv_from_beats(beats, FS) + 0.01),
    }


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    positives, negatives = positives[np.isfinite(positives)], negatives[np.isfinite(negatives)]
    ranks = average_ranks(np.concatenate([positives, negatives]))
    n1, n0 = len(positives), len(negatives)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def main() -> None:
    rng = np.random.default_rng(2)
    print(
        "| mean RR (bpm) | target | AF vs sinus | AF vs 1 premature beat | AF vs >= 2 premature beats | NaN in >= 2 |"
    )
    print("|---|---|---|---|---|---|")
    for low, high in RR_BANDS_S:
        rows: dict[str, list[tuple[int, dict[str, float]]]] = {}
        for rhythm in GENERATORS:
            rows[rhythm] = []
            while len(rows[rhythm]) < WINDOWS_PER_RHYTHM:
                rr = window_intervals(rhythm, rng.uniform(low, high), rng)
                if len(rr) >= 5:
                    premature = int((rr < 0.8 * np.median(rr)).sum())
                    rows[rhythm].append((premature, targets(rr)))
        for name in rows["afib"][0][1]:

            def values(rhythm, keep=lambda n: True, name=name, rows=rows):
                return np.array([t[name] for n, t in rows[rhythm] if keep(n)])

            af = values("afib")
            double = values("ectopic", lambda n: n >= 2)
            print(
                f"| {low}-{high} s ({60 / high:.0f}-{60 / low:.0f}) | {name} | {auroc(af, values('sinus')):.3f} "
                f"| {auroc(af, values('ectopic', lambda n: n == 1)):.3f} | {auroc(af, double):.3f} "
                f"| {np.mean(~np.isfinite(double)):.2f} (of {len(double)}) |"
            )


if __name__ == "__main__":
    main()
