"""`bridge-edge simulate OUT` writes exactly the docs/simulator.md format, and it loads back."""

import json

import numpy as np
import pytest

from bridge_edge.cli import main
from bridge_edge.signals.datasets import load_dataset
from bridge_edge.signals.sensor import SENSOR_RATES_HZ
from bridge_edge.signals.simulator import simulate_subject, subject_seed, write_dataset


def test_simulate_command_writes_the_design_format(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--subjects", "4", "--minutes", "0.5", "--seed", "7", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["out"] == str(out) and line["subjects"] == 4
    index = json.loads((out / "dataset.json").read_text())
    assert set(index) == {"version", "labels", "subjects", "splits"}
    assert index["labels"] == ["sinus", "afib", "ectopy"]
    assert set(index["splits"]) == {"train", "val", "pair", "test"}
    split_ids = [s for ids in index["splits"].values() for s in ids]
    assert sorted(split_ids) == sorted(index["subjects"]) and len(set(split_ids)) == 4
    for sid in index["subjects"]:
        with np.load(out / "subjects" / f"{sid}.npz", allow_pickle=False) as z:
            assert set(z.files) == {"ecg", "ppg", "fs_ecg", "fs_ppg", "rhythm", "r_peaks", "meta"}
            assert z["ecg"].dtype == np.float32 and z["ppg"].dtype == np.float32
            assert z["rhythm"].dtype == np.int8 and len(z["rhythm"]) == len(z["ecg"])
            assert z["r_peaks"].dtype == np.int64
            fs_ppg = float(z["fs_ppg"])  # the subject's sensor rate (dataset version 2)
            assert float(z["fs_ecg"]) == 500.0 and fs_ppg in SENSOR_RATES_HZ
            assert len(z["ecg"]) == 15000 and len(z["ppg"]) == round(30 * fs_ppg)
            meta = json.loads(str(z["meta"]))
            assert 0.12 <= meta["physiology"]["ptt_s"] <= 0.35 and "artefacts" in meta
            assert set(meta["ppg_sensor"]) >= {"polarity", "highpass_hz", "lowpass_hz", "adc_bits"}


def test_written_dataset_loads_back_identically(tmp_path):
    write_dataset(tmp_path, subjects=2, minutes=0.25, seed=3)
    ds = load_dataset(str(tmp_path))
    again = simulate_subject("sim001", 0.25, subject_seed(3, 1))
    rec = ds.recordings["sim001"]
    np.testing.assert_array_equal(rec.ecg, again.ecg)
    np.testing.assert_array_equal(rec.r_peaks, again.r_peaks)
    assert ds.labels == ("sinus", "afib", "ectopy")


def test_simulate_without_out_is_one_clear_error(capsys):
    assert main(["simulate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bridge-edge: error: simulate needs an output directory OUT (or --judge)"]


def test_held_out_subjects_come_from_their_own_seed_stream_and_sit_in_the_test_split(tmp_path):
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import HELD_OUT_STREAM, write_held_out_dataset

    dataset_and_pretraining = {subject_seed(3, i) for i in range(500)}
    assert not dataset_and_pretraining & {subject_seed(3, i, HELD_OUT_STREAM) for i in range(500)}
    write_held_out_dataset(tmp_path, subjects=2, minutes=0.25, seed=3)
    ds = load_dataset(str(tmp_path))
    assert [r.subject_id for r in ds.subjects("test")] == ["tst000", "tst001"]
    assert all(ds.subjects(name) == [] for name in ("train", "val", "pair"))
    again = simulate_subject("tst001", 0.25, subject_seed(3, 1, HELD_OUT_STREAM))
    np.testing.assert_array_equal(ds.recordings["tst001"].ecg, again.ecg)


def test_a_pair_cohort_draws_its_af_rate_from_its_range_and_keeps_every_other_draw(tmp_path):
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import (
        HELD_OUT_STREAM,
        PAIR_COHORT_STREAM,
        PatientSimulator,
        write_pair_cohort_dataset,
    )

    others = {subject_seed(3, i) for i in range(300)} | {
        subject_seed(3, i, HELD_OUT_STREAM) for i in range(300)
    }
    assert not others & {subject_seed(3, i, PAIR_COHORT_STREAM) for i in range(300)}
    write_pair_cohort_dataset(tmp_path, subjects=2, minutes=0.25, seed=3, af_hr_bpm=(45.0, 50.0))
    ds = load_dataset(str(tmp_path))
    assert [r.subject_id for r in ds.subjects("pair")] == ["coh000", "coh001"]
    assert all(ds.subjects(name) == [] for name in ("train", "val", "test"))
    for i, rec in enumerate(ds.subjects("pair")):
        assert 45.0 <= rec.meta["physiology"]["af_hr_bpm"] <= 50.0
        plain = PatientSimulator(subject_seed(3, i, PAIR_COHORT_STREAM)).physiology.as_dict()
        assert {
            k: v for k, v in rec.meta["physiology"].items() if k not in ("af_hr_bpm", "motion_level")
        } == {k: v for k, v in plain.items() if k not in ("af_hr_bpm", "motion_level")}


def test_a_pair_cohort_can_draw_its_sinus_rate_without_moving_any_other_draw(tmp_path):
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import PAIR_COHORT_STREAM, PatientSimulator, write_pair_cohort_dataset

    write_pair_cohort_dataset(
        tmp_path, subjects=3, minutes=0.5, seed=3, af_hr_bpm=(45.0, 50.0), sinus_hr_bpm=(50.0, 55.0)
    )
    for i, rec in enumerate(load_dataset(str(tmp_path)).subjects("pair")):
        drawn = rec.meta["physiology"]
        assert 50.0 <= drawn["resting_hr_bpm"] <= 55.0 and 45.0 <= drawn["af_hr_bpm"] <= 50.0
        seed = subject_seed(3, i, PAIR_COHORT_STREAM)
        without = PatientSimulator(seed, af_hr_bpm=(45.0, 50.0)).physiology.as_dict()
        assert drawn["af_hr_bpm"] == without["af_hr_bpm"]  # its own stream: the AF draw does not move
        assert {k: v for k, v in drawn.items() if k not in ("resting_hr_bpm", "motion_level")} == {
            k: v for k, v in without.items() if k not in ("resting_hr_bpm", "motion_level")
        }


def test_a_pair_cohort_with_an_episode_mix_draws_only_those_episodes_and_the_same_physiology(tmp_path):
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import (
        PAIR_COHORT_STREAM,
        EpisodeMix,
        PatientSimulator,
        write_pair_cohort_dataset,
    )

    mix = EpisodeMix(sinus=0.0, brady=0.0, tachy=0.0, afib=0.0, ectopy=1.0, bigeminy=1.0)
    write_pair_cohort_dataset(tmp_path, subjects=2, minutes=6.0, seed=3, af_hr_bpm=(45.0, 50.0), episodes=mix)
    for i, rec in enumerate(load_dataset(str(tmp_path)).subjects("pair")):
        names = [name for name, _, _ in rec.meta["episodes"]]
        assert set(names) == {"ectopy", "bigeminy"}, names
        assert all(a != b for a, b in zip(names, names[1:]))  # episodes still alternate
        assert (rec.rhythm == rec.labels.index("ectopy")).all()
        plain = PatientSimulator(subject_seed(3, i, PAIR_COHORT_STREAM), af_hr_bpm=(45.0, 50.0))
        assert rec.meta["physiology"] == plain.physiology.as_dict() | {
            "motion_level": rec.meta["physiology"]["motion_level"]
        }


def test_the_default_episode_mix_is_the_usual_schedule_and_a_mix_is_checked():
    from bridge_edge.errors import ConfigError
    from bridge_edge.signals.simulator import EpisodeMix, PatientSimulator

    usual = PatientSimulator(11).generate(600.0).meta["episodes"]
    names = {name for name, _, _ in usual}
    assert {"sinus", "afib"} <= names and len(names) >= 4
    assert PatientSimulator(11, episodes=EpisodeMix()).generate(600.0).meta["episodes"] == usual
    for bad in ({"ectopy": -0.1}, dict.fromkeys(("sinus", "brady", "tachy", "afib", "ectopy"), 0.0)):
        with pytest.raises(ConfigError, match="episode weights"):
            EpisodeMix(**bad)
