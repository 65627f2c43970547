"""Training bench: rows from a run report (bridge vs KD side by side) and the bar plot."""

import json

from bridge_edge.bench import plots, table, training
from bridge_edge.bench.results import BenchReport


def run_report(with_kd=True):
    def block(params, peak, sec, f1):
        return {
            "trainable_params": params,
            "peak_memory_bytes": peak,
            "memory_method": "cpu.profiler+resident",
            "seconds_per_epoch": sec,
            "epochs": 3,
            "batch_size": 16,
            "test": {"macro_f1": f1, "balanced_accuracy": f1, "positive_auroc": 0.9, "n_windows": 40},
        }

    report = {
        "recipe": {"name": "smoke", "sha256": "x"},
        "bridge": block(4544, 80 * 2**20, 21.5, 0.7),
        "bridge_vs_kd": {"trainable_params_ratio": 0.27},
        "n_windows": {"test": 40},
    }
    if with_kd:
        report["kd"] = block(17074, 11 * 2**20, 2.6, 0.6)
    return report


def test_rows_put_bridge_and_kd_side_by_side():
    bridge, kd = training.rows_from_report(run_report())
    assert (bridge.method, kd.method) == ("bridge", "kd")
    assert bridge.trainable_params == 4544 and kd.trainable_params == 17074
    assert bridge.peak_memory_mb == 80.0 and kd.peak_memory_mb == 11.0
    assert bridge.test_macro_f1 == 0.7 and kd.test_positive_auroc == 0.9


def test_missing_kd_is_unmeasured_with_reason():
    _, kd = training.rows_from_report(run_report(with_kd=False))
    assert kd.status == "unmeasured" and "kd" in kd.reason and kd.trainable_params is None


def test_from_run_reads_a_finished_report_and_plots(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(run_report()))
    report = BenchReport("training", machine={})
    training.run(report, recipe=None, run_dir=tmp_path / "unused", from_run=tmp_path)
    assert [r["method"] for r in report.rows] == ["bridge", "kd"]
    assert report.summary["bridge_vs_kd"]["trainable_params_ratio"] == 0.27
    # where the fit trained comes from its report, never from this command's --device
    assert report.summary["device"] == "not in the run's report"
    (tmp_path / "report.json").write_text(json.dumps(run_report() | {"device": "cuda:0 (NVIDIA H200)"}))
    report = BenchReport("training", machine={})
    training.run(report, recipe=None, run_dir=tmp_path / "unused", from_run=tmp_path)
    assert "trained on cuda:0 (NVIDIA H200)" in table.training_section(report)[0]
    png = plots.training_bars(report.rows, tmp_path / "training.png", "t")
    assert png.stat().st_size > 1000


def test_interleaved_ratio_is_the_median_of_per_round_ratios_and_reaches_the_table(tmp_path):
    timing = training.InterleavedTiming(3, 256, [0.05, 0.09, 0.06], [0.10, 0.10, 0.20])
    side = timing.as_dict()
    assert side["batch_seconds_ratio_per_round"] == [0.5, 0.9, 0.3]
    assert side["batch_seconds_ratio"] == 0.5  # per round, not the ratio of the two medians (0.6)
    assert side["bridge_median_batch_seconds"] == 0.06 and side["kd_median_batch_seconds"] == 0.10
    report = BenchReport("training", machine={})
    (tmp_path / "report.json").write_text(json.dumps(run_report()))
    training.run(report, recipe=None, run_dir=tmp_path / "unused", from_run=tmp_path)
    assert "Side by side" not in "\n".join(table.training_section(report))
    report.summary["interleaved"] = side | {"device": "cpu"}
    text = "\n".join(table.training_section(report))
    assert "ratio **0.5**" in text and "3 rounds" in text and "0.9, 0.3" in text
