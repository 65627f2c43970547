"""`bridge-edge fit recipes/smoke.toml` end to end, then every stage and reader of its run dir."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openecg")

from bridge_edge.bridge.recipe import load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, timeout=900):
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", *args],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    _cli("fit", str(ROOT / "recipes" / "smoke.toml"), "--out", str(out), "--json")
    return out


def _check_method_block(block):
    assert block["trainable_params"] > 0
    assert block["peak_memory_bytes"] > 0
    assert block["seconds_per_epoch"] > 0
    assert 0 < block["median_batch_seconds"] < block["seconds_per_epoch"] * block["epochs"]
    _check_test(block)


def _check_test(block):
    test = block["test"]
    for key in ("macro_f1", "accuracy", "balanced_accuracy", "kappa"):
        assert isinstance(test[key], float) and -1.0 <= test[key] <= 1.0, key
    assert isinstance(test["auroc"], dict)
    assert all(0.0 <= v <= 1.0 for v in test["auroc"].values())
    assert test["n_windows"] > 0


@pytest.mark.slow
def test_fit_report_has_every_field(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert report["device"] == "cpu"  # where it trained
    pos = report["positions"]
    assert 0 <= pos["k_in"] < 4 and 0 <= pos["k_out"] < 8  # smoke: 4 new blocks, openecg 8 blocks
    _check_method_block(report["bridge"])
    _check_method_block(report["kd"])
    _check_test(report["old_model_on_old_modality"])
    assert report["bridge"]["trainable_params"] < report["kd"]["trainable_params"]
    ratios = report["bridge_vs_kd"]
    assert ratios["median_batch_seconds_ratio"] == pytest.approx(
        report["bridge"]["median_batch_seconds"] / report["kd"]["median_batch_seconds"]
    )
    assert report["bridge"]["trainable_params"] == report["bridge"]["params_formula"]["params"]
    check = report["position_check"]
    assert len(check) >= 4 and sum(row["chosen"] for row in check) == 1
    assert len({(r["k_in"], r["k_out"]) for r in check}) == len(check)
    sel = json.loads((run_dir / "selection.json").read_text())
    assert (sel["k_in"], sel["k_out"]) == (pos["k_in"], pos["k_out"])
    assert len(sel["input_scores"]) == 4 and len(sel["output_scores"]) == 8
    assert np.isfinite(sel["input_scores"]).all()  # the smoke pair windows hold two scorable classes
    if sel["trials"]:  # the chosen pair is the trial with the lowest score the recipe picks epochs by
        assert sel["trial_score"] == load_recipe("smoke").bridge.best_epoch_by
        best = min(sel["trials"], key=lambda t: t[sel["trial_score"]])
        assert (best["k_in"], best["k_out"]) == (pos["k_in"], pos["k_out"])
    for png in ("selection.png", "training_curves.png", "confusions.png", "test_subjects.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_the_operating_point_calls_af_as_often_as_the_old_model_on_the_validation_pairs(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    point = report["operating_point"]
    assert (point["method"], point["label"]) == ("old_model_calls", "afib")
    assert point["n_windows"] == report["n_windows"]["val"] > 0
    assert point["bridged_calls"] == point["old_model_calls"]  # no label read: the old model's ECG calls
    spec = json.loads((run_dir / "composed.json").read_text())
    expected = [point["weight"] if label == "afib" else 1.0 for label in spec["labels"]]
    assert spec["class_weights"] == expected


@pytest.mark.slow
def test_test_set_holds_the_extra_subjects_and_intervals_bracket_the_scores(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    held_out = load_recipe("smoke").held_out
    test_set = report["test_set"]
    assert test_set["held_out_extra_subjects"] == [
        f"tst{i:03d}" for i in range(held_out.extra_simulated_subjects)
    ]
    assert test_set["dataset_test_subjects"] and not any(
        s.startswith("tst") for s in test_set["dataset_test_subjects"]
    )
    assert test_set["windows"] == report["n_windows"]["test"]
    for block in (report["bridge"], report["kd"], report["timing"], report["old_model_on_old_modality"]):
        ci = block["test"]["ci95"]
        assert ci["resamples"] == held_out.bootstrap_resamples
        lo, hi = ci["macro_f1"]
        assert 0.0 <= lo <= block["test"]["macro_f1"] <= hi <= 1.0
    rows = test_set["by_subject"]
    assert [r["subject"] for r in rows] == sorted(
        test_set["dataset_test_subjects"] + test_set["held_out_extra_subjects"]
    )
    assert sum(r["windows"] for r in rows) == report["bridge"]["test"]["n_windows"]
    diff = report["bridge_vs_kd"]["positive_auroc_difference"]
    assert diff["estimate"] == pytest.approx(
        report["bridge"]["test"]["positive_auroc"] - report["kd"]["test"]["positive_auroc"]
    )
    assert -1.0 <= diff["ci95"][0] <= diff["ci95"][1] <= 1.0
    # the pulse-timing baseline: same windows, same resamples, its threshold and unscored count
    timing = report["timing"]
    assert timing["test"]["n_windows"] == report["bridge"]["test"]["n_windows"]
    assert 0 <= timing["unscored_windows"] <= report["n_windows"]["test"]
    assert timing["threshold"]["value"] > 0 and "rr_timing" in timing["method"]
    assert all("timing" in r for r in rows)
    t_diff = report["bridge_vs_timing"]["positive_auroc_difference"]
    assert t_diff["estimate"] == pytest.approx(
        report["bridge"]["test"]["positive_auroc"] - timing["test"]["positive_auroc"]
    )


@pytest.mark.slow
def test_a_second_fit_reuses_every_stage_and_keeps_their_times(run_dir):
    first = json.loads((run_dir / "report.json").read_text())
    stages = {
        "data",
        "pretrain",
        "features",
        "select",
        "bridge",
        "operating_point",
        "kd",
        "held_out",
        "position_check",
    }
    assert set(first["timings_s"]) >= stages
    _cli("fit", str(ROOT / "recipes" / "smoke.toml"), "--out", str(run_dir), "--json")
    second = json.loads((run_dir / "report.json").read_text())
    assert {k: second["timings_s"][k] for k in stages} == {k: first["timings_s"][k] for k in stages}
    assert second["bridge"]["test"] == first["bridge"]["test"]  # nothing retrained
    off = {"probe": "skipped: [probe] enabled = false", "pair_cohort": "skipped: [pair_cohort] subjects = 0"}
    assert first["stages"] == {s: "ran" for s in stages} | off
    assert second["stages"] == {s: "reused" for s in stages} | off


@pytest.mark.slow
def test_kd_disabled_skips_kd_and_the_report_says_so(run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    recipe = tmp_path / "no_kd.toml"
    smoke = (ROOT / "recipes" / "smoke.toml").read_text()
    assert "[kd]\n" in smoke and "enabled" not in smoke.split("[kd]")[1].split("[")[0]
    recipe.write_text(smoke.replace("[kd]\n", "[kd]\nenabled = false\n"))
    report = json.loads(_cli("fit", str(recipe), "--out", str(run), "--json").strip())
    assert report["stages"]["kd"] == "skipped: [kd] enabled = false"
    assert {s for s, what in report["stages"].items() if what == "ran"} == set()  # nothing else reran
    assert "kd" not in report and "bridge_vs_kd" not in report
    assert not (run / "kd_student.safetensors").exists()
    assert not any(name.startswith("bridge_") and "kd" in name for name in report["targets"])


def test_pretraining_used_the_recipes_targets_and_motion_bursts(run_dir):
    history = json.loads((run_dir / "pretrain.json").read_text())
    wanted = load_recipe("smoke").pretrain
    assert history["aux_targets"] == list(wanted.targets) and "autocorrelation_peak" in wanted.targets
    assert history["motion_prob"] == wanted.motion_prob > 0


def test_composed_model_and_split_windows(run_dir):
    from bridge_edge.bridge.compose import load_composed, load_split_windows

    model, spec = load_composed(run_dir)
    assert spec.positive_label == "afib" and "afib" in spec.labels
    assert spec.preprocess["version"] == "ppg-v2"  # recipes/smoke.toml pins it
    x, y, labels = load_split_windows(run_dir, "test")
    assert x.dtype == np.float32 and x.shape[1] == int(spec.input["fs"] * spec.window_s)
    assert y.shape == (len(x),) and y.min() >= -1 and y.max() < len(labels)
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        probs = model(torch.from_numpy(x[:3])).numpy()
    assert probs.shape == (3, len(labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    report = json.loads((run_dir / "report.json").read_text())
    ours = model.predict_proba(x)
    assert (y >= 0).sum() == report["bridge"]["test"]["n_windows"]
    assert ours.shape == (len(x), len(labels))


@pytest.mark.slow
def test_evaluate_and_select_rerun(run_dir):
    # the report's test set is the dataset's test split plus the [held_out] subjects
    test_set = ("--data", str(run_dir / "data"), "--data", str(run_dir / "held_out_data"))
    out = json.loads(_cli("evaluate", str(run_dir), *test_set, "--json").strip())
    report = json.loads((run_dir / "report.json").read_text())
    assert out["n_windows"] == report["bridge"]["test"]["n_windows"]
    assert out["macro_f1"] == pytest.approx(report["bridge"]["test"]["macro_f1"])
    assert set(out) >= {"n_windows", "macro_f1", "accuracy", "auroc"}
    # three rows on the same windows with the report's numbers: bridge, KD, pulse timing
    assert set(out["models"]) == {"bridge", "kd", "timing"}
    for name in ("kd", "timing"):
        assert out["models"][name]["n_windows"] == out["n_windows"]
        assert out["models"][name]["macro_f1"] == pytest.approx(report[name]["test"]["macro_f1"])
        lo, hi = out["models"][name]["ci95"]["macro_f1"]
        assert 0.0 <= lo <= hi <= 1.0
    before = json.loads((run_dir / "selection.json").read_text())
    _cli("select", str(run_dir))
    after = json.loads((run_dir / "selection.json").read_text())
    assert (after["k_in"], after["k_out"]) == (before["k_in"], before["k_out"])


@pytest.mark.slow
def test_evaluate_bundle_matches_run_dir(run_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("bridge_edge.export.bundle")
    bundle = tmp_path / "bundle"
    _cli("export", str(run_dir), "--out", str(bundle), "--precision", "fp32")
    on_bundle = json.loads(_cli("evaluate", str(bundle), "--data", str(run_dir / "data"), "--json").strip())
    on_run = json.loads(_cli("evaluate", str(run_dir), "--data", str(run_dir / "data"), "--json").strip())
    assert on_bundle["n_windows"] == on_run["n_windows"] > 0
    assert on_bundle["macro_f1"] == pytest.approx(on_run["macro_f1"], abs=1e-6)
    assert set(on_bundle["auroc"]) == set(on_run["auroc"])
    assert on_bundle["models"]["timing"] == on_run["models"]["timing"]  # same windows, numpy only
    # The scores themselves agree to export parity. A 1-epoch smoke bridge barely moves its
    # output (scores of one class can differ by ~1e-7 between windows), so an AUROC is only
    # comparable where no two windows' scores are closer than that parity error.
    from bridge_edge.bridge.compose import load_composed
    from bridge_edge.checks.bundle_eval import bundle_probs as probs_of
    from bridge_edge.export.bundle import load_bundle

    bundle_probs, labels, windows, _ = probs_of(load_bundle(bundle), str(run_dir / "data"), "test")
    run_probs = load_composed(run_dir)[0].predict_proba(windows.ppg)
    parity = float(np.abs(bundle_probs - run_probs).max())
    assert parity < 1e-4
    for label, value in on_run["auroc"].items():
        scores = np.sort(run_probs[:, list(labels).index(label)])
        if np.diff(scores).min() > 2 * parity:  # ranks cannot flip: the AUROC must match exactly
            assert on_bundle["auroc"][label] == pytest.approx(value, abs=1e-9)


@pytest.mark.slow
def test_a_probe_as_old_head_is_trained_reported_and_exported(tmp_path):
    """The paper's WESAD setup needs a linear probe on the old model (docs/method.md); here it replaces
    openecg's rhythm head on the smoke data, so the whole chain runs through a probed old model."""
    pytest.importorskip("onnxruntime")
    recipe = tmp_path / "probe.toml"
    # positions pinned: a 4-epoch probe on 8 one-minute subjects may leave the pair split with one
    # pseudo-label class, which selection (tested above) refuses with a clear error
    recipe.write_text(
        (ROOT / "recipes" / "smoke.toml")
        .read_text()
        .replace("[selection]\n", "[selection]\nk_in = 3\nk_out = 7\n")
        + "\n[probe]\nenabled = true\nepochs = 4\nlr = 1e-3\nbatch_size = 16\n"
    )
    run = tmp_path / "run"
    _cli("fit", str(recipe), "--out", str(run), "--json")
    probe = json.loads((run / "probe.json").read_text())
    report = json.loads((run / "report.json").read_text())
    assert probe["labels"] == report["labels"]["dataset"] == report["labels"]["head"]
    assert 1 <= probe["best_epoch"] <= 4 and len(probe["val_loss"]) == 4
    assert report["models"]["old"]["probe"]["labels"] == probe["labels"]
    assert report["models"]["old"]["name"].endswith("+probe")
    # every dataset label now has a head column, so only mixed windows are excluded
    mixed = json.loads((run / "windows" / "windows.json").read_text())["counts"]["test"]["mixed"]
    assert report["bridge"]["test"]["n_excluded"] >= mixed
    bundle = tmp_path / "bundle"
    _cli("export", str(run), "--out", str(bundle), "--precision", "fp32")
    test_set = ("--data", str(run / "data"), "--data", str(run / "held_out_data"))
    on_bundle = json.loads(_cli("evaluate", str(bundle), *test_set, "--json").strip())
    on_run = json.loads(_cli("evaluate", str(run), *test_set, "--json").strip())
    assert on_bundle["n_windows"] == on_run["n_windows"] == report["bridge"]["test"]["n_windows"]
    assert on_bundle["macro_f1"] == pytest.approx(on_run["macro_f1"], abs=1e-6)


def test_probe_labels_must_be_dataset_labels(tmp_path):
    recipe = tmp_path / "bad_probe.toml"
    recipe.write_text(
        (ROOT / "recipes" / "smoke.toml").read_text()
        + '\n[probe]\nenabled = true\nlabels = ["sinus", "stress"]\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", "fit", str(recipe), "--out", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode != 0
    assert "['stress'] are not dataset labels" in proc.stderr and "sinus" in proc.stderr


# 2 processes vs 1 (docs/scale.md): what no training touches is identical; the PaPaGei encoder's
# batch norm and dropout see each rank's share, so what training touches agrees within these.
# Measured on the smoke recipe (2 gloo processes vs 1): pretraining loss 0.994 vs 0.979; the
# 2-process encoder led selection to other positions (1->2 vs 0->1); bridge AF AUROC 0.413 both,
# KD 0.173 vs 0.288 (macro-F1 0.000 vs 0.077) on 30 test windows of 1-epoch models near chance;
# a CI run saw KD AF AUROC 0.019 vs 0.490: the test scores of models trained on a differently
# drawn encoder differ as another seed's would, so no tolerance is claimed for them here. The
# exact equivalence is tested where batch norm is absent: tests/unit/test_bridge_distributed.py.
PRETRAIN_LOSS_TOLERANCE = 0.1  # 1-epoch pretraining loss (standardised-target MSE)


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_process(run_dir, tmp_path):
    import os

    out = tmp_path / "R2"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "bridge_edge.cli", "fit", str(ROOT / "recipes" / "smoke.toml"), "--out", str(out), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1  # rank 0 prints the report, rank 1 nothing
    two, one = json.loads(printed[0]), json.loads((run_dir / "report.json").read_text())
    assert two == json.loads((out / "report.json").read_text())
    assert (one["world_size"], one["distributed_backend"]) == (1, "none")
    assert (two["world_size"], two["distributed_backend"]) == (2, "gloo")
    assert two["stages"] == {s: v if v.startswith("skipped") else "ran" for s, v in one["stages"].items()}
    assert json.loads((out / "pretrain.json").read_text())["world_size"] == 2
    # no training touches these: identical
    assert two["n_windows"] == one["n_windows"]
    for name in ("old_model_on_old_modality", "timing"):
        for key in ("macro_f1", "positive_auroc", "n_windows"):
            assert two[name]["test"][key] == one[name]["test"][key], (name, key)
    # the feature pass is sharded (each rank its whole batches, joined by rank 0): the old model's
    # features, which no training touches, are the one-process run's (other thread counts: close)
    for store, stems in (
        ("features_pair", ("old_0", "old_probs", "old_target")),
        ("targets_val", ("old_target",)),
    ):
        for stem in stems:
            a, b = (np.load(d / store / f"{stem}.npy").astype(np.float32) for d in (out, run_dir))
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3, err_msg=f"{store}/{stem}")
    assert not list(out.glob("*.rank*"))  # the shards were joined and removed
    assert "features" in json.loads((out / "memory" / "rank1.json").read_text())
    # training touches these: within the stated tolerance
    loss_one = json.loads((run_dir / "pretrain.json").read_text())["loss"]
    loss_two = json.loads((out / "pretrain.json").read_text())["loss"]
    np.testing.assert_allclose(loss_two, loss_one, atol=PRETRAIN_LOSS_TOLERANCE)
    for name in ("bridge", "kd"):
        assert two[name]["trainable_params"] == one[name]["trainable_params"]
        for key in ("macro_f1", "positive_auroc"):  # scored on the same windows, valid scores
            assert 0.0 <= two[name]["test"][key] <= 1.0, (name, key)
        assert two[name]["test"]["n_windows"] == one[name]["test"]["n_windows"]


@pytest.mark.slow
def test_the_report_lists_the_gaps_the_loader_cut(run_dir, tmp_path):
    """A WFDB record with a PPG dropout: its gaps, saved by the data stage, are in report.json."""
    import shutil

    wfdb = pytest.importorskip("wfdb")
    from bridge_edge.bridge.report import write_report
    from bridge_edge.bridge.stages import Run
    from bridge_edge.signals.datasets import load_dataset

    fs, t = 125, np.arange(60 * 125) / 125
    ppg = np.cos(2 * np.pi * 1.1 * t)
    ppg[20 * fs : 24 * fs] = np.nan  # a 4-s PPG dropout
    sig = np.stack([np.sin(2 * np.pi * 1.1 * t), ppg], axis=1)
    wfdb.wrsamp(
        "p1",
        fs=fs,
        units=["mV", "NU"],
        sig_name=["II", "PLETH"],
        p_signal=sig,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    gaps = load_dataset(str(tmp_path / "p1.hea")).gaps_summary()
    assert gaps["n_gaps"] == 1 and gaps["lost_s"] == pytest.approx(4.0)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    run_obj = Run.open(run)
    run_obj.dir.save_json(run_obj.dir.data_gaps, gaps)
    report = write_report(run_obj)
    assert report["data_gaps"] == gaps == json.loads((run / "report.json").read_text())["data_gaps"]
    assert report["world_size"] == 1


@pytest.mark.slow
def test_fit_on_cuda_where_there_is_a_gpu(run_dir, tmp_path):
    """`fit --device cuda` (a GPU machine; skipped elsewhere). What no training touches is the CPU
    run's; what training touches is a valid score on the same windows (a differently drawn
    encoder scores as another seed's would: see the torchrun test above); the pretraining loss
    is held to the same tolerance as two processes are."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here (torch.cuda.is_available() is False)")
    out = tmp_path / "cuda"
    _cli("fit", str(ROOT / "recipes" / "smoke.toml"), "--out", str(out), "--device", "cuda")
    gpu, cpu = (json.loads((d / "report.json").read_text()) for d in (out, run_dir))
    assert gpu["n_windows"] == cpu["n_windows"] and gpu["device"].startswith("cuda")
    for key in (
        "macro_f1",
        "n_windows",
    ):  # the frozen old model on ECG: TF32 may move a probability, not a class
        assert gpu["old_model_on_old_modality"]["test"][key] == cpu["old_model_on_old_modality"]["test"][key]
    for name in ("bridge", "kd"):
        _check_method_block(gpu[name])
        assert gpu[name]["memory_method"] == "cuda.max_memory_allocated"
        assert gpu[name]["trainable_params"] == cpu[name]["trainable_params"]
    loss_gpu, loss_cpu = (json.loads((d / "pretrain.json").read_text())["loss"] for d in (out, run_dir))
    np.testing.assert_allclose(loss_gpu, loss_cpu, atol=PRETRAIN_LOSS_TOLERANCE)


@pytest.mark.slow
def test_bench_training_times_bridge_and_kd_side_by_side(run_dir, tmp_path):
    _cli("bench", "training", "--from-run", str(run_dir), "--interleave", "2", "--out", str(tmp_path))
    doc = json.loads((tmp_path / "training.json").read_text())
    side = doc["summary"]["interleaved"]
    assert (
        side["rounds"] == 2
        and side["windows"] == json.loads((run_dir / "report.json").read_text())["n_windows"]["pair"]
    )
    assert len(side["batch_seconds_ratio_per_round"]) == 2
    assert side["bridge_median_batch_seconds"] > 0 and side["kd_median_batch_seconds"] > 0
    assert side["batch_seconds_ratio"] == pytest.approx(
        float(np.median(side["batch_seconds_ratio_per_round"])), rel=1e-3
    )
    # the fit's own report is left as it was
    assert [r["method"] for r in doc["rows"]] == ["bridge", "kd"]
