"""`bridge-edge run` as a user runs it: a real subprocess, real sources, a real ONNX session."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the test bundle's model is written with the onnx package")

import itertools

from ctrl_c import default_sigint
from tiny_bundle import make_tiny_bundle

from bridge_edge.signals.simulator import PatientSimulator

REQUIRED = {"t_end", "label", "probs", "sqi", "latency_ms", "dropped_samples", "gap", "rr_af_score"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def bridge_edge(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=ENV,
    )


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle")
    make_tiny_bundle(path, window_s=10.0, hop_s=2.0)
    return path


@pytest.fixture(scope="module")
def ppg_csv(tmp_path_factory):
    ppg = PatientSimulator(5, fs_ppg=125.0, script=[("sinus", 40.0)]).generate(40.0).ppg
    path = tmp_path_factory.mktemp("csv") / "ppg.csv"
    np.savetxt(path, ppg, fmt="%.6f", header="ppg", comments="")
    return path, len(ppg)


def strict(line: str):
    """RFC 8259 JSON only: NaN/Infinity are refused."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant} in {line[:120]!r}")

    return json.loads(line, parse_constant=refuse)


def hops(stdout: str) -> list[dict]:
    """The per-hop objects; the last line of a run that ended is one summary object."""
    lines = [strict(line) for line in stdout.splitlines() if line.strip()]
    assert lines and set(lines[-1]) == {"summary"}, "a --json run ends with its summary object"
    return lines[:-1]


def summary(stdout: str) -> dict:
    return strict(stdout.strip().splitlines()[-1])["summary"]


def test_run_json_over_a_replay_ends_with_the_file(bundle_dir, ppg_csv, tmp_path):
    csv, n = ppg_csv
    rec_dir = tmp_path / "rec"
    r = bridge_edge(
        "run",
        "--source",
        f"replay://{csv}?fs=125&speed=0",
        "--bundle",
        str(bundle_dir),
        "--json",
        "--lossless",
        "--threads",
        "1",
        "--record",
        str(rec_dir),
    )
    assert r.returncode == 0, r.stderr
    lines = hops(r.stdout)
    expected = (n - 1250) // 250 + 1
    assert len(lines) == expected
    assert [h["window_index"] for h in lines] == list(range(expected))
    for h in lines:
        assert REQUIRED <= set(h)
        assert set(h["latency_ms"]) == {"preprocess", "infer", "total"}
        assert h["bundle_name"] == "tiny" and h["engine"] == "ort" and h["dropped_samples"] == 0
    inferred = [h for h in lines if h["label"] is not None]
    assert inferred and all(abs(sum(h["probs"].values()) - 1) < 1e-4 for h in inferred)
    assert all(h["hr_bpm"] is None or 30 < h["hr_bpm"] < 220 for h in lines)
    assert "run: " in r.stderr and "lost 0" in r.stderr  # the summary on stderr
    assert (rec_dir / "signal.hea").exists() and (rec_dir / "events.jsonl").exists()


def test_the_regular_rhythm_rule_is_reported_per_hop_and_can_be_turned_off(bundle_dir, ppg_csv):
    """Sinus replay: the rule fires on regular windows (their AF probability moved to sinus);
    with --no-regular-rhythm-rule the same windows carry the model's own probabilities."""
    csv, _ = ppg_csv
    runs = {}
    for flag in ((), ("--no-regular-rhythm-rule",)):
        r = bridge_edge(
            "run", "--source", f"replay://{csv}?fs=125&speed=0", "--bundle", str(bundle_dir),
            "--json", "--lossless", "--threads", "1", *flag,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs[bool(flag)] = [h for h in hops(r.stdout) if h["probs"] is not None]
    with_rule, without = runs[False], runs[True]
    assert [h["window_index"] for h in with_rule] == [h["window_index"] for h in without]
    assert not any(b["af_ruled_out"] for b in without)
    moved = 0
    for a, b in zip(with_rule, without):
        if a["probs"]["afib"] == 0.0 and b["probs"]["afib"] > 0.0:  # the rule fired here
            moved += 1
            assert abs(a["probs"]["sinus"] - b["probs"]["sinus"] - b["probs"]["afib"]) < 1e-5
        assert a["af_ruled_out"] == (a["probs"]["afib"] == 0.0 and b["label"] == "afib")
    assert moved


def test_run_json_over_a_simulated_ppg_stream_stops_after_seconds(bundle_dir):
    r = bridge_edge(
        "run",
        "--source",
        "sim://ppg?rhythm=afib&speed=0&seed=2",
        "--bundle",
        str(bundle_dir),
        "--json",
        "--seconds",
        "5",
        "--lossless",
        "--threads",
        "1",
    )
    assert r.returncode == 0, r.stderr
    lines = hops(r.stdout)
    assert len(lines) >= 2 and all(REQUIRED <= set(h) for h in lines)
    assert all(a["t_end"] < b["t_end"] for a, b in itertools.pairwise(lines))


def test_run_json_carries_the_pulse_timing_score_per_hop(bundle_dir, tmp_path):
    from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD

    ppg = (
        PatientSimulator(3, fs_ppg=125.0, script=[("sinus", 60.0), ("afib", 60.0)], sensor=False)
        .generate(120.0)
        .ppg
    )
    csv = tmp_path / "sinus_then_af.csv"
    np.savetxt(csv, ppg, fmt="%.6f", header="ppg", comments="")
    r = bridge_edge(
        "run",
        "--source",
        f"replay://{csv}?fs=125&speed=0",
        "--bundle",
        str(bundle_dir),
        "--json",
        "--lossless",
        "--threads",
        "1",
        timeout=300,  # 2 min of signal, 56 windows: slower than the other runs on a loaded machine
    )
    assert r.returncode == 0, r.stderr
    lines = hops(r.stdout)
    assert all(h["rr_af_score"] is None or h["rr_af_score"] >= 0 for h in lines)
    end_s = {h["window_index"]: 10.0 + 2.0 * h["window_index"] for h in lines}  # 10-s windows, 2-s hop
    sinus = [h["rr_af_score"] for h in lines if 15 <= end_s[h["window_index"]] <= 60]
    af = [h["rr_af_score"] for h in lines if 70 <= end_s[h["window_index"]]]
    assert len(sinus) > 10 and sum(s is not None for s in sinus) >= 0.9 * len(sinus)
    # the threshold's own training AF recall is 0.80 (signals.rr_timing); a clean pulse does better
    assert np.mean([s >= RR_AF_THRESHOLD.value for s in af if s is not None]) > 0.7
    assert np.mean([s >= RR_AF_THRESHOLD.value for s in sinus if s is not None]) < 0.1


def test_human_readable_lines_and_a_missing_bundle_error(bundle_dir, tmp_path):
    r = bridge_edge(
        "run",
        "--source",
        "sim://ecg+ppg?speed=0",
        "--bundle",
        str(bundle_dir),
        "--seconds",
        "2",
        "--lossless",
        "--threads",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "[0:sim ecg+ppg" in r.stdout and "SQI" in r.stdout and "timing" in r.stdout
    bad = bridge_edge("run", "--source", "sim://ppg", "--bundle", str(tmp_path / "nope"), "--seconds", "1")
    assert bad.returncode != 0 and "not a bundle" in bad.stderr and "Traceback" not in bad.stderr


def test_ctrl_c_shuts_down_cleanly(bundle_dir):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge_edge.cli",
            "run",
            "--source",
            "sim://ppg?speed=1",
            "--bundle",
            str(bundle_dir),
            "--json",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until the pipeline runs (start-up is slow on a loaded machine)
        if "bridge_edge.run: engine" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "interrupted" in err and "run: " in err and "Traceback" not in err


def test_run_with_the_default_bundle_when_it_is_installed():
    default = Path(__file__).resolve().parents[2] / "bridge_edge" / "assets" / "bundles" / "default"
    if not (default / "manifest.json").exists():
        pytest.skip("the default bundle is not built in this checkout (bridge_edge/assets/bundles/default)")
    r = bridge_edge(
        "run",
        "--source",
        "sim://ppg?rhythm=sinus&speed=0&seed=3",
        "--json",
        "--seconds",
        "20",
        "--lossless",
        "--threads",
        "1",
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    lines = hops(r.stdout)
    assert lines and all(REQUIRED <= set(h) for h in lines)
    assert {h["bundle_name"] for h in lines} == {json.loads((default / "manifest.json").read_text())["name"]}


def test_ort_engine_reproduces_the_default_bundle_golden_outputs():
    default = Path(__file__).resolve().parents[2] / "bridge_edge" / "assets" / "bundles" / "default"
    if not (default / "manifest.json").exists():
        pytest.skip("the default bundle is not built in this checkout (bridge_edge/assets/bundles/default)")
    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.runtime.engines import select_engine

    bundle = load_bundle("default")
    golden = bundle.golden()
    for precision in bundle.manifest.precisions:
        if precision not in golden.outputs:
            continue
        engine = select_engine("ort", bundle, precision, threads=1).engine
        got = engine.infer(golden.input[:16])
        # on a CPU the ORT engine runs the ort-cpu file where the bundle has one: its own golden
        variant = bundle.manifest.variant(precision, "ort-cpu")
        key = variant.key if variant is not None else precision
        atol = float(bundle.manifest.golden.get("atol", {}).get(key, 1e-3))
        np.testing.assert_allclose(got, golden.outputs[key][:16], atol=atol, err_msg=key)


# --- issue 17: poisoned input, stream end, one-line errors -----------------------------------


@pytest.fixture(scope="module")
def afib_csv_with_a_nan(tmp_path_factory):
    """Simulated AF at 64 Hz (the issue's rate) with one NaN at 30 s, and an all-NaN file."""
    ppg = PatientSimulator(4, fs_ppg=64.0, script=[("afib", 50.0)]).generate(50.0).ppg
    ppg[30 * 64] = np.nan
    folder = tmp_path_factory.mktemp("nan")
    np.savetxt(folder / "afib_nan.csv", ppg, fmt="%.6f", header="ppg", comments="")
    np.savetxt(folder / "all_nan.csv", np.full(len(ppg), np.nan), fmt="%.6f", header="ppg", comments="")
    return folder


def test_run_json_over_nan_is_strict_json_with_gated_windows_and_a_summary(bundle_dir, afib_csv_with_a_nan):
    for name, speed in (("afib_nan.csv", "0"), ("all_nan.csv", "20")):  # the paced one used to never end
        r = bridge_edge(
            "run",
            "--source",
            f"replay://{afib_csv_with_a_nan / name}?fs=64&speed={speed}",
            "--bundle",
            str(bundle_dir),
            "--json",
            "--threads",
            "1",
            "--sqi-policy",
            "off",
            timeout=90,
        )
        assert r.returncode == 0, r.stderr
        lines, end = hops(r.stdout), summary(r.stdout)  # both parsed strictly: no NaN, no Infinity
        assert end["ended"] == "source_end" and end["hops"] == len(lines)
        gated = [h for h in lines if h["gated"] == "nonfinite"]
        assert all(h["label"] is None and h["probs"] is None and h["smoothed_label"] is None for h in gated)
        starts = [h["t_start"] for h in lines]
        assert np.allclose(np.diff(starts), 2.0, atol=1e-3)  # the file's clock, not arrival times
        if name == "all_nan.csv":
            assert len(gated) == len(lines) and end["streams"][0]["nonfinite_samples"] == 50 * 64
        else:
            # 10 s windows every 2 s: 5 hold the NaN, a 6th ends on a sample interpolated from it
            assert 5 <= len(gated) <= 6 and end["streams"][0]["nonfinite_samples"] == 1
            after = [h for h in lines if h["t_start"] > gated[-1]["t_start"]]
            assert after and all(h["label"] is not None for h in after)  # labelled again at once
        assert "run: ended (source_end)" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "sim://ppg?fs=inf"], "fs=inf must be > 0"),
        (["--source", "sim://ppg?fs=nan"], "fs=nan must be > 0"),
        (
            ["--source", "serial:///dev/ttyNOPE_bridge_edge?format=csv&fs=100"],
            "serial port /dev/ttyNOPE_bridge_edge not found",
        ),
        (["--source", "sim://ppg", "--engine", "torch"], "--engine torch"),
    ],
)
def test_bad_run_input_is_one_line_and_non_zero(bundle_dir, args, message):
    r = bridge_edge("run", *args, "--bundle", str(bundle_dir), "--seconds", "2", "--threads", "1")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and message in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("bridge-edge: error: ")]
    assert len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    assert not [ln for ln in r.stderr.splitlines() if ln.startswith("run: ")]  # no summary of nothing


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seconds", "-1"], "--seconds: '-1' is not a finite number > 0"),
        (["--seconds", "0"], "--seconds: '0' is not a finite number > 0"),
        (["--threads", "0"], "--threads: '0' is not an integer >= 1"),
    ],
)
def test_out_of_range_run_options_are_refused(bundle_dir, args, message):
    r = bridge_edge("run", "--source", "sim://ppg", "--bundle", str(bundle_dir), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
