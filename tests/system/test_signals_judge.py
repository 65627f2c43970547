"""The outside judge: openecg's real pretrained rhythm head believes the simulator.

Seeds 9100-9103 were never used while tuning the simulator (tuning used 100-219).
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
openecg = pytest.importorskip("openecg")

from bridge_edge.cli import main
from bridge_edge.signals.judge import (
    AFIB_FLOOR,
    JUDGE_CLASSES,
    SINUS_FLOOR,
    judge_recordings,
    judge_windows,
    load_judge,
)
from bridge_edge.signals.simulator import PatientSimulator, simulate_subject, subject_seed
from bridge_edge.signals.windows import paired_windows

SCRIPT = [("sinus", 30), ("afib", 30), ("brady", 20), ("tachy", 20)]


@pytest.fixture(scope="module")
def judge():
    torch.set_num_threads(1)
    return load_judge()


def test_openecg_calls_simulated_sinus_sinus_and_afib_afib(judge):
    recordings = [
        PatientSimulator(seed, script=SCRIPT, motion_noise=0.5).generate(100.0) for seed in range(9100, 9104)
    ]
    report = judge_recordings(recordings, judge)
    print(report.table())
    assert report.confusion.sum() == 40
    assert report.agreement("sinus") >= SINUS_FLOOR
    assert report.agreement("afib") >= AFIB_FLOOR
    assert report.passed


def test_batched_verdict_equals_openecgs_public_encode(judge):
    rec = PatientSimulator(9200, script=[("sinus", 10), ("afib", 10)]).generate(20.0)
    windows = paired_windows(rec, window_s=10.0, hop_s=10.0).ecg
    ours = judge_windows(windows, judge)
    theirs = [
        np.bincount(openecg.encode(w, fs=500, model=judge).rhythm, minlength=6).argmax() for w in windows
    ]
    assert list(ours) == theirs
    assert [JUDGE_CLASSES[i] for i in ours] == ["sinus", "afib"]


def test_simulate_judge_command_prints_the_confusion_as_json(capsys):
    torch.set_num_threads(1)
    code = main(["simulate", "--judge", "--json", "--subjects", "1", "--minutes", "1", "--seed", "9300"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["event"] == "judge" and out["columns"] == list(JUDGE_CLASSES)
    assert out["rows"] == ["sinus", "afib", "ectopy"]
    rec = simulate_subject("sim000", 1.0, subject_seed(9300, 0))
    pure = (paired_windows(rec, window_s=10.0, hop_s=10.0).label >= 0).sum()
    assert np.array(out["confusion"]).sum() == pure > 0  # every pure 10-s window judged once
    assert code == (0 if out["passed"] else 1)
