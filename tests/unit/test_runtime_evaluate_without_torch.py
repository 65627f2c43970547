"""`bridge-edge evaluate BUNDLE --data DIR` and `run` on the device side: no torch, scikit-learn or scipy.

The commands run in a fresh interpreter in which importing torch, scikit-learn, matplotlib, onnx
or scipy fails, as in the device venv (scripts/test-device-py310.sh runs this file there too)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("onnxruntime")

BLOCKED = ("torch", "sklearn", "matplotlib", "onnx", "scipy")
# A meta-path finder that refuses them (an ImportError, as a missing package gives).
BLOCK = f"""import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ImportError(f"import of {{name}} blocked: not installed on the device")
sys.meta_path.insert(0, Blocked())
"""
RUN_WITHOUT = BLOCK + "from bridge_edge.cli import main\nsys.exit(main(sys.argv[1:]))"


def bridge_edge_without_torch(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_the_blocker_blocks(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK + "import torch"],
        cwd=tmp_path,
        capture_output=True,
    )
    assert proc.returncode != 0 and b"import of torch blocked" in proc.stderr


def test_evaluate_a_bundle_on_a_dataset_without_torch(tmp_path):
    data = tmp_path / "data"
    proc = bridge_edge_without_torch(
        "simulate", str(data), "--subjects", "4", "--minutes", "0.5", "--seed", "2", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = bridge_edge_without_torch("evaluate", "default", "--data", str(data), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["split"] == "test" and out["n_windows"] > 0
    assert set(out["models"]) == {"bridge", "timing"}
    assert out["positive_label"] == "afib"  # the default bundle's manifest names it
    assert out["models"]["bridge"]["n_windows"] == out["models"]["timing"]["n_windows"] == out["n_windows"]
    assert 0.0 <= out["accuracy"] <= 1.0


def test_run_a_simulated_stream_without_scipy(tmp_path):
    """The streaming filters, beat detector, SQI and the simulator behind sim:// are numpy only."""
    proc = bridge_edge_without_torch(
        "run", "--source", "sim://ppg?rhythm=afib&seed=3", "--seconds", "25", "--json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    hops = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    scored = [h for h in hops if "summary" not in h and h.get("label")]
    assert len(scored) >= 2, proc.stdout[-2000:]
    assert all(h["hr_bpm"] is None or 40 <= h["hr_bpm"] <= 200 for h in scored)


def test_evaluate_without_data_or_suite_is_one_line_error(tmp_path):
    proc = bridge_edge_without_torch("evaluate", "default", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--data" in proc.stderr
