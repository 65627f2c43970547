"""``bench training``: the bridge and the KD baseline, trained on the same data in the same run.

The whole offline chain (``bridge_edge.bridge.fit.fit``, its one stage table) trains both on the same pair
windows with the same batch size and bookkeeping, then scores both on the same test subjects;
this bench runs it (``--quick``: recipes/smoke.toml) and lays the two side by side: trainable
parameters, peak step memory, seconds per epoch and test metrics. ``--from-run RUN_DIR`` reads
a finished run's report instead of training again (the numbers still come from one run).

A fit trains the bridge and then KD, minutes apart, and on a shared machine minutes apart can
run at different speeds. ``--interleave N`` times the two side by side as well, on the run
just made or read: N rounds, each one epoch of the bridge then one epoch of KD on the same first pair
windows, by the fit's own training code; the ratio of their median batch times in each round,
and its median over rounds, move only with what changes within a round.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.bench.results import STATUS_OK, STATUS_UNMEASURED, BenchReport
from bridge_edge.errors import DataError

log = logging.getLogger(__name__)

METHODS = (("bridge", "bridge"), ("kd", "kd"))  # (row name, report.json key)


@dataclass(frozen=True)
class TrainingRow:
    method: str  # "bridge" | "kd"
    status: str
    reason: str | None = None
    trainable_params: int | None = None
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    seconds_per_epoch: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    test_macro_f1: float | None = None
    test_balanced_accuracy: float | None = None
    test_positive_auroc: float | None = None
    test_n_windows: int | None = None
    bench: str = "training"


def rows_from_report(run_report: dict) -> list[TrainingRow]:
    rows = []
    for name, key in METHODS:
        block = run_report.get(key)
        if block is None:
            stage = run_report.get("stages", {}).get(key, "")
            reason = (
                f"the fit {stage}" if stage.startswith("skipped") else f"the run report has no '{key}' block"
            )
            rows.append(TrainingRow(name, STATUS_UNMEASURED, reason=reason))
            continue
        test = block.get("test", {})
        rows.append(
            TrainingRow(
                method=name,
                status=STATUS_OK,
                trainable_params=block["trainable_params"],
                peak_memory_mb=round(block["peak_memory_bytes"] / 2**20, 3),
                memory_method=block.get("memory_method"),
                seconds_per_epoch=round(block["seconds_per_epoch"], 3),
                epochs=block.get("epochs"),
                batch_size=block.get("batch_size"),
                test_macro_f1=test.get("macro_f1"),
                test_balanced_accuracy=test.get("balanced_accuracy"),
                test_positive_auroc=test.get("positive_auroc"),
                test_n_windows=test.get("n_windows"),
            )
        )
    return rows


def fit_without_position_check(recipe: Path, run_dir: Path, device: str) -> dict:
    """``fit``'s stage table without the position check (extra bridges at other positions, a
    method diagnostic: not part of either method's cost), then its report."""
    from bridge_edge.bridge.fit import fit

    return fit(recipe, run_dir, device=device, skip=("position_check",))


@dataclass(frozen=True)
class InterleavedTiming:
    """Median seconds per batch of the bridge and of KD, one epoch each per round, alternating."""

    rounds: int
    windows: int  # pair windows each epoch draws from
    bridge_batch_seconds: list[float]  # per round
    kd_batch_seconds: list[float]

    @property
    def ratios(self) -> list[float]:
        return [b / k for b, k in zip(self.bridge_batch_seconds, self.kd_batch_seconds)]

    def as_dict(self) -> dict:
        return {
            "rounds": self.rounds,
            "windows": self.windows,
            "bridge_median_batch_seconds": float(np.median(self.bridge_batch_seconds)),
            "kd_median_batch_seconds": float(np.median(self.kd_batch_seconds)),
            "batch_seconds_ratio": float(np.median(self.ratios)),
            "batch_seconds_ratio_per_round": [round(r, 4) for r in self.ratios],
        }


def interleaved_timing(
    run_dir: Path, rounds: int, windows: int = 256, device: str = "cpu"
) -> InterleavedTiming:
    """Bridge and KD epochs alternated on a finished run's data and models (see module docstring)."""
    from bridge_edge.bridge.bridging import pair_data, train_bridge_at, train_student
    from bridge_edge.bridge.selection import read_selection
    from bridge_edge.bridge.stages import Run

    run = Run.open(run_dir, device)
    sel = read_selection(run.run_dir)
    data = pair_data(run)
    n = min(windows, len(data.pair.ppg))
    bridge_s, kd_s = [], []
    for r in range(rounds):
        log.info("bench training: interleaved round %d/%d on %d pair windows", r + 1, rounds, n)
        _, res, _ = train_bridge_at(run, data, sel.k_in, sel.k_out, epochs=1, desc="bridge", max_windows=n)
        bridge_s.append(res.median_batch_seconds)
        _, res = train_student(run, data, epochs=1, max_windows=n)
        kd_s.append(res.median_batch_seconds)
    return InterleavedTiming(rounds, n, bridge_s, kd_s)


def run(
    report: BenchReport,
    *,
    recipe: Path | None,
    run_dir: Path,
    from_run: Path | None = None,
    device: str = "cpu",
    interleave: int = 0,
) -> None:
    if from_run is not None:
        from bridge_edge.bridge.rundir import RunDir

        path = RunDir(from_run).report
        try:
            run_report = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DataError(
                f"{path}: cannot read the run report ({err}); expected a finished `fit` run",
                path=str(path),
                reason=str(err),
            ) from err
        source = {"from_run": str(from_run)}
    else:
        log.info("bench training: %s -> %s (bridge and KD on the same data)", recipe, run_dir)
        run_report = fit_without_position_check(Path(recipe), Path(run_dir), device)
        source = {"recipe": str(recipe), "run_dir": str(run_dir)}
    for row in rows_from_report(run_report):
        report.add(row)
    report.summary.update(
        source=source,
        recipe=run_report.get("recipe"),
        positions=run_report.get("positions"),
        bridge_vs_kd=run_report.get("bridge_vs_kd"),
        n_windows=run_report.get("n_windows"),
        timings_s=run_report.get("timings_s"),
        # where the fit trained (its report says; reports before 2026-12 do not)
        device=run_report.get("device", device if from_run is None else "not in the run's report"),
    )
    if interleave:
        timing = interleaved_timing(
            from_run if from_run is not None else Path(run_dir), interleave, device=device
        )
        report.summary["interleaved"] = timing.as_dict() | {"device": device}
