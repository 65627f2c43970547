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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from ctrl_c import default_sigint

from bridge_edge.runtime.testing import make_tiny_bundle
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


def _no_nan(token: str):
    raise AssertionError(f"--json printed {token}: not strict JSON")


def hops(stdout: str) -> list[dict]:
    return [json.loads(line, parse_constant=_no_nan) for line in stdout.splitlines() if line.strip()]


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

    ppg = PatientSimulator(3, fs_ppg=125.0, script=[("sinus", 60.0), ("afib", 60.0)]).generate(120.0).ppg
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
    assert np.mean([s >= RR_AF_THRESHOLD.value for s in af if s is not None]) > 0.8
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
        atol = float(bundle.manifest.golden.get("atol", {}).get(precision, 1e-3))
        np.testing.assert_allclose(got, golden.outputs[precision][:16], atol=atol, err_msg=precision)
