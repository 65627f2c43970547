"""The run report (RUN_DIR/report.json): bridge, KD, the pulse-timing baseline and the ceiling
(the old model on the paired old modality) on the test split, with subject-bootstrap intervals,
the position check, what each stage did, and the acceptance targets evaluated on it.
"""

from __future__ import annotations

import numpy as np

from bridge_edge.bridge.evaluate import TIMING, evaluate_probs, json_safe, timing_probs
from bridge_edge.bridge.memory import EVAL_BATCH
from bridge_edge.bridge.metrics import Metrics, per_subject_scores, subject_bootstrap
from bridge_edge.bridge.shards import fill_in_passes
from bridge_edge.bridge.stages import Run


def _difference(first: Metrics, other: Metrics, intervals: dict, name: str) -> dict:
    """Positive-AUROC difference bridge - ``name`` with its paired subject-bootstrap interval."""
    return {
        "estimate": None
        if first.positive_auroc is None or other.positive_auroc is None
        else first.positive_auroc - other.positive_auroc,
        "ci95": intervals["differences"][f"bridge - {name}"]["positive_auroc"],
        "resamples_without_auroc": intervals["resamples_without_auroc"],
    }


def _test_block(m: Metrics, intervals: dict | None = None, name: str = "") -> dict:
    test = m.as_dict()
    if intervals is not None:
        test["ci95"] = intervals["models"][name] | {"resamples": intervals["resamples"]}
    return {"test": test}


def describe_test_set(test, held_out_subjects: set[str]) -> dict:
    """Which subjects the test windows come from: the dataset's test split and [held_out] extras."""
    subjects = sorted(set(test.subject.tolist()))
    return {
        "subjects": len(subjects),
        "dataset_test_subjects": [s for s in subjects if s not in held_out_subjects],
        "held_out_extra_subjects": sorted(held_out_subjects),
        "windows": len(test),
    }


@np.errstate(all="ignore")
def old_model_probs(old, ecg: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    import torch

    # written into one array as it goes: a list of small per-pass results kept alive between the
    # passes' large buffers pinned glibc's heap, which then grew with the test split (docs/scale.md)
    def run_pass(rows: slice) -> np.ndarray:
        return old.forward(old.prepare(ecg[rows])).float().cpu().numpy()

    with torch.no_grad():
        return fill_in_passes(len(ecg), batch_size, run_pass, np.zeros((0, len(old.labels)), np.float32))


def target_checks(report: dict) -> dict:
    """The issue's acceptance targets, evaluated on this report (None: not measurable here)."""
    bridge, ceiling = report["bridge"]["test"], report["old_model_on_old_modality"]["test"]
    auroc = bridge.get("positive_auroc")
    checks = {
        "bridge_af_auroc_ge_0.90": None if auroc is None else auroc >= 0.90,
        "bridge_macro_f1_within_0.10_of_ceiling": bridge["macro_f1"] >= ceiling["macro_f1"] - 0.10,
    }
    if "kd" in report:
        kd_auroc = report["kd"]["test"].get("positive_auroc")
        ratios = report["bridge_vs_kd"]
        checks["bridge_af_auroc_ge_kd"] = None if auroc is None or kd_auroc is None else auroc >= kd_auroc
        checks["bridge_params_le_12pct_of_kd"] = ratios["trainable_params_ratio"] <= 0.12
        checks["bridge_peak_memory_le_50pct_of_kd"] = ratios["peak_memory_ratio"] <= 0.50
    return checks


def monitor_scored(
    probs: dict[str, np.ndarray], truth: np.ndarray, sqi: np.ndarray, labels, positive: str
) -> dict:
    """Every model on the windows a monitor labels: those the runtime's SQI gate passes
    (``sqi >= LOW_SQI``); the headline metrics count every window, gated or not."""
    from bridge_edge.signals.quality import LOW_SQI

    passed = np.isfinite(sqi) & (sqi >= LOW_SQI)
    out: dict = {"min_sqi": LOW_SQI, "windows": int(passed.sum()), "of": len(sqi)}
    if not passed.any():
        return out
    for name, p in probs.items():
        m = evaluate_probs(p[passed], truth[passed], labels, positive)
        out[name] = {"positive_auroc": m.positive_auroc, "macro_f1": m.macro_f1, "n_windows": m.n_windows}
    return out


def trained_on(device: str) -> str:
    """Where a run trained, for its report: "cpu", or the CUDA device and its name."""
    if not str(device).startswith("cuda"):
        return str(device)
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


def write_report(run: Run, stages: dict[str, str] | None = None) -> dict:
    """Evaluate bridge, KD and the ceiling on the test split; write report.json and figures.

    ``stages``: what each fit stage did ("ran", "reused", "skipped: <why>"), reported as is."""
    from safetensors.torch import load_file

    from bridge_edge.bridge.compose import load_composed
    from bridge_edge.bridge.kd import make_student
    from bridge_edge.bridge.plots import plot_confusions, plot_test_subjects, plot_training_curves
    from bridge_edge.bridge.selection import read_selection
    from bridge_edge.signals.preprocess import PreprocessSpec

    rd = run.dir
    old, new = run.models()
    # four passes over the mapped test windows otherwise left ~25 KB a window resident (docs/scale.md)
    test = run.windows("test").batched()
    truth = test.head_truth(old.labels)
    composed, spec = load_composed(rd.root, device=run.device)
    positive = spec.positive_label
    probs = {
        "bridge": composed.predict_proba(test.ppg),
        "old_model_on_old_modality": old_model_probs(old, test.ecg),
    }
    if rd.kd_student.exists():
        student = make_student(new, len(old.labels), test.ppg[:2])
        student.load_state_dict(load_file(str(rd.kd_student)))
        probs["kd"] = student.predict_proba(test.ppg)
    fs_ppg = PreprocessSpec.from_dict(spec.preprocess).fs_out
    probs[TIMING], timing_info = timing_probs(test.ppg, fs_ppg, old.labels, positive, test.sqi)
    metrics = {name: evaluate_probs(p, truth, old.labels, positive) for name, p in probs.items()}
    bridge_m, ceiling_m = metrics["bridge"], metrics["old_model_on_old_modality"]
    n_resamples = run.recipe.held_out.bootstrap_resamples
    intervals = None
    if n_resamples:
        # bridge first: the paired differences are bridge minus each other model
        intervals = subject_bootstrap(
            probs, truth, test.subject, old.labels, positive, n_resamples, seed=run.recipe.seed
        )
    bridge_train = rd.load_json(rd.bridge_training)
    report = {
        "recipe": {"name": run.recipe.name, "sha256": run.recipe.sha256},
        "positions": {
            "k_in": spec.k_in,
            "k_out": spec.k_out,
            "new_block": new.block_paths[spec.k_in],
            "old_block": old.block_paths[spec.k_out],
        },
        "selection": read_selection(rd.root).as_dict(),
        "labels": {
            "head": list(old.labels),
            "dataset": list(test.labels),
            "positive": positive,
            "scored": "windows whose truth name exists in the head vocabulary; argmax over all head classes",
        },
        "models": {
            "old": old.describe() | {"parameters": old.parameter_count()},
            "new": {"name": new.name, "parameters": new.parameter_count()},
        },
        "bridge": bridge_train | {"params_formula": spec.bridge} | _test_block(bridge_m, intervals, "bridge"),
        # the bridge's test block is scored at this point (bridge.operating_point)
        "operating_point": rd.load_json(rd.operating_point) if rd.operating_point.exists() else None,
        "old_model_on_old_modality": _test_block(ceiling_m, intervals, "old_model_on_old_modality"),
        "position_check": rd.load_json(rd.position_check, []),
        "n_windows": {s: len(run.windows(s)) for s in ("train", "val", "pair", "test")},
        "test_set": describe_test_set(test, rd.held_out_subjects())
        | {"by_subject": per_subject_scores(probs, truth, test.subject, old.labels, positive)},
    }
    results = {"bridge (PPG)": bridge_m.as_dict(), "old model on ECG": ceiling_m.as_dict()}
    curves = {"bridge": bridge_train}
    if "kd" in metrics:
        kd_m = metrics["kd"]
        kd_train = rd.load_json(rd.kd_training)
        report["kd"] = kd_train | _test_block(kd_m, intervals, "kd")
        results["KD student (PPG)"] = kd_m.as_dict()
        curves["KD"] = kd_train
        report["bridge_vs_kd"] = {
            "trainable_params_ratio": bridge_train["trainable_params"] / kd_train["trainable_params"],
            "peak_memory_ratio": bridge_train["peak_memory_bytes"] / max(1, kd_train["peak_memory_bytes"]),
            "seconds_per_epoch_ratio": bridge_train["seconds_per_epoch"]
            / max(1e-9, kd_train["seconds_per_epoch"]),
        }
        if bridge_train.get("median_batch_seconds") and kd_train.get("median_batch_seconds"):
            # per batch; with the same batch size on the same windows (the default recipe) also per epoch
            report["bridge_vs_kd"]["median_batch_seconds_ratio"] = (
                bridge_train["median_batch_seconds"] / kd_train["median_batch_seconds"]
            )
        if intervals is not None:
            report["bridge_vs_kd"]["positive_auroc_difference"] = _difference(bridge_m, kd_m, intervals, "kd")
    report[TIMING] = timing_info | _test_block(metrics[TIMING], intervals, TIMING)
    results["pulse timing (PPG)"] = metrics[TIMING].as_dict()
    if intervals is not None:
        report["bridge_vs_timing"] = {
            "positive_auroc_difference": _difference(bridge_m, metrics[TIMING], intervals, TIMING)
        }
    report["monitor_scored"] = monitor_scored(probs, truth, test.sqi, old.labels, positive)
    report["targets"] = target_checks(report)
    if stages is not None:
        report["stages"] = dict(stages)
    if rd.data_gaps.exists():  # spans of the dataset cut out at non-finite samples (docs/scale.md)
        report["data_gaps"] = rd.load_json(rd.data_gaps)
    report["device"] = trained_on(run.device)
    report["world_size"] = run.dist.world_size  # processes of the torchrun job (docs/scale.md)
    report["distributed_backend"] = run.dist.backend or "none"
    report["timings_s"] = dict(run.timings)
    report = json_safe(report)
    plot_training_curves(curves, rd.training_curves_plot)
    plot_confusions(results, rd.confusions_plot)
    plot_test_subjects(report["test_set"]["by_subject"], intervals, rd.test_subjects_plot, positive)
    rd.save_json(rd.report, report)
    return report
