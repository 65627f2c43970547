"""Rhythm, not shape: the simulator's pulse shapes, sensors and rates do not give the rhythm away,
preprocessing cannot see a sensor's polarity, and re-sequenced real pulses keep their new timing."""

import dataclasses

import numpy as np
import pytest

from bridge_edge.signals import resequence, sensor
from bridge_edge.signals.physiology import draw_physiology
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, normalise_windows
from bridge_edge.signals.simulator import PatientSimulator, simulate_subject


def test_sensor_front_end_in_pieces_equals_at_once_and_counts_clipping():
    fe = sensor.FrontEnd(
        polarity=-1, highpass_hz=0.3, lowpass_hz=3.0, resonance_q=2.0, adc_bits=8, headroom=0.9
    )
    x = np.sin(2 * np.pi * 1.2 * np.arange(2000) / 100.0) + 0.5
    whole, clipped = sensor.SensorChain(fe, 100.0, 1.0).apply(x)
    chain = sensor.SensorChain(fe, 100.0, 1.0)
    parts = [chain.apply(x[a:b]) for a, b in ((0, 333), (333, 1500), (1500, 2000))]
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), whole)
    assert clipped > 0 and sum(p[1] for p in parts) == clipped
    assert len(np.unique(whole)) <= 2**8  # quantised to the ADC's 8 bits
    # inverted: the output follows -x (correlation over the settled part)
    assert np.corrcoef(whole[500:], x[500:])[0, 1] < -0.5


def test_pulse_shape_is_the_subjects_not_the_rhythms():
    """With the beat-to-beat rules switched off, an AF pulse and a sinus pulse of one subject are
    the same shape: the rhythm lives only in the beat times."""
    shapes = {}
    for episode in ("sinus", "afib"):
        sim = PatientSimulator(21, script=[(episode, 120.0)], sensor=False)
        sim.physiology = dataclasses.replace(
            sim.physiology, squeeze_strength=0.0, starling_strength=0.0, beat_shape_jitter=0.0
        )
        rec = sim.generate(120.0)
        r = rec.r_peaks / rec.fs_ecg
        gaps = np.diff(r)
        lone = r[1:-1][(gaps[:-1] > 0.6) & (gaps[1:] > 0.6)]  # beats with room on both sides
        start = np.round((lone + sim.physiology.ptt_s - 0.05) * rec.fs_ppg).astype(int)
        segs = np.stack([rec.ppg[s : s + int(0.35 * rec.fs_ppg)] for s in start if s > 0])
        segs = segs - segs[:, :1]
        shapes[episode] = segs.mean(axis=0)
    assert np.corrcoef(shapes["sinus"], shapes["afib"])[0, 1] > 0.98


def test_rates_overlap_across_rhythms_without_holes():
    rng = np.random.default_rng(0)
    draws = [draw_physiology(rng) for _ in range(3000)]
    sinus = np.concatenate([[p.resting_hr_bpm, p.brady_hr_bpm, p.tachy_hr_bpm] for p in draws])
    af = np.array([p.af_hr_bpm for p in draws])
    bins = np.arange(40, 150, 5)
    assert all(((sinus >= b) & (sinus < b + 5)).sum() > 20 for b in bins)  # 85-102 included
    assert all(((af >= b) & (af < b + 5)).sum() > 20 for b in np.arange(50, 160, 5))


def test_subjects_get_different_sensors_and_rates_independent_of_rhythm():
    recs = [simulate_subject(f"s{i}", 1.0, 300 + i) for i in range(12)]
    assert len({r.fs_ppg for r in recs}) >= 4
    assert {r.meta["ppg_sensor"]["polarity"] for r in recs} == {-1.0, 1.0}
    assert all(r.meta["artefacts"]["ppg_adc_clipped_samples"] >= 0 for r in recs)


def test_bigeminy_is_ectopy_and_every_other_beat_is_premature():
    rec = PatientSimulator(4, script=[("bigeminy", 60.0)], sensor=False).generate(60.0)
    assert set(np.unique(rec.rhythm)) == {2}  # labelled "ectopy", not AF
    rr = np.diff(rec.r_peaks / rec.fs_ecg)[2:-2]
    short, long_ = rr[0::2], rr[1::2]
    n = min(len(short), len(long_))
    assert np.all(short[:n] < long_[:n]) or np.all(short[:n] > long_[:n])


def test_ppg_v2_cannot_tell_a_window_from_its_inverse_and_v1_can():
    rec = PatientSimulator(8, script=[("afib", 40.0)]).generate(40.0)
    v2, v1 = PreprocessSpec(), PreprocessSpec(version="ppg-v1", polarity="none")
    y = filter_and_resample(rec.ppg, rec.fs_ppg, v2)
    w = np.stack([y[i : i + 1250] for i in range(625, len(y) - 1250, 625)])
    np.testing.assert_array_equal(normalise_windows(w, v2), normalise_windows(-w, v2))
    assert not np.allclose(normalise_windows(w, v1), normalise_windows(-w, v1))
    assert (normalise_windows(w, v2) ** 3).mean(axis=1).min() >= 0  # every window skewed upward
    assert PreprocessSpec.from_dict(v1.as_dict()).polarity == "none"  # 0.4.x bundles keep ppg-v1


def test_resequenced_pulses_keep_their_new_beat_times():
    fs = 100.0
    t = np.arange(int(60 * fs)) / fs
    x = np.maximum(np.sin(2 * np.pi * 1.1 * t), 0) ** 3  # a crude real-like pulse train
    cycles = resequence.cut_cycles(x, fs)
    assert len(cycles) > 40
    rr = resequence.af_intervals(40.0, 0.7, np.random.default_rng(1))
    y = resequence.place_cycles(cycles, rr, fs)
    from bridge_edge.signals.beats import detect_ppg_beats

    measured = np.diff(detect_ppg_beats(y, fs)) / fs
    assert abs(len(measured) - (len(rr) - 1)) <= 1  # one pulse per new interval
    n = min(len(measured), len(rr) - 1)
    assert np.median(np.abs(measured[:n] - rr[:n])) < 0.03
    assert np.std(measured) / np.mean(measured) > 0.12  # AF timing survives


def test_real_pulses_can_be_cut_from_a_development_recording():
    from bridge_edge.signals.dev_recordings import DatasetNotFoundError, load_dev_recording

    try:
        rec = load_dev_recording("heartpy/data3.csv")
    except DatasetNotFoundError as err:
        pytest.skip(f"heartpy data not installed: {err}")
    cycles = resequence.cut_cycles(rec.ppg, rec.fs_ppg)
    lengths = np.array([len(c) for c in cycles]) / rec.fs_ppg
    assert len(cycles) > 200 and 0.5 < np.median(lengths) < 1.2


def test_cycles_are_cut_in_the_orientation_the_runtime_reads():
    """Every development recording's cycles, laid at their own typical interval, are read upright
    by the runtime (step 4 leaves most windows as they are); the recordings the cutter turns over
    then rise faster than they fall (a systolic upstroke). Cut the other way up, a cycle ends with its own upstroke: the
    suite's four SpO2 channels were cut so until the cutter took the runtime's sign."""
    from bridge_edge.signals.dev_recordings import available_dev_recordings
    from bridge_edge.signals.preprocess import window_polarity

    recordings = available_dev_recordings()
    if not recordings:
        pytest.skip("no development recording installed")
    assert any(resequence.runtime_polarity(r.ppg, r.fs_ppg) < 0 for r in recordings)  # the case exists
    spec = PreprocessSpec()
    for rec in recordings:
        cycles = resequence.cut_cycles(rec.ppg, rec.fs_ppg)
        period = np.median([len(c) for c in cycles]) / rec.fs_ppg
        laid = resequence.place_cycles(
            cycles, np.full(int(60 / period), period), rec.fs_ppg
        )  # cycles in turn
        y = filter_and_resample(laid, rec.fs_ppg, spec)
        windows = np.stack([y[i : i + 1250] for i in range(625, len(y) - 1250, 625)])
        assert np.mean(window_polarity(windows) == 1) > 0.5, rec.source  # bvp_motion: 0.78; SpO2 were 0
        if resequence.runtime_polarity(rec.ppg, rec.fs_ppg) < 0:  # turned over: now a systolic upstroke
            steep = [np.max(np.diff(c)) / -np.min(np.diff(c)) for c in cycles]
            assert np.median(steep) > 1.2, rec.source


def _crude_cycles(fs: float) -> list[np.ndarray]:
    t = np.arange(int(60 * fs)) / fs
    return resequence.cut_cycles(np.maximum(np.sin(2 * np.pi * 1.1 * t), 0) ** 3, fs)


def test_pulses_start_at_their_beat_times_without_drift():
    fs = 50.0
    cycles = [np.sin(np.linspace(0.0, np.pi, 20))]  # 0.4 s, zero at both ends
    beats = 0.3 + np.cumsum(np.full(400, 0.8123))  # 325 s of beats, a rate off the sample grid
    y = resequence.pulses_at(cycles, np.concatenate([[-1.0], beats]), int(200 * fs), fs)
    assert len(y) == 200 * fs and not y[: int(round(beats[0] * fs))].any()  # flat before the first
    rises = np.flatnonzero((y[1:] > 0) & (y[:-1] == 0))  # each pulse leaves zero one sample in
    inside = beats[beats < 200 - 0.05]
    assert len(rises) == len(inside)
    assert np.max(np.abs(rises / fs - inside)) <= 0.5 / fs + 1e-9  # rounded once each, not summed


def test_cohort_subject_keeps_its_ecg_and_rhythm_with_real_pulses_at_its_beats():
    from bridge_edge.signals.beats import detect_ppg_beats

    rec = PatientSimulator(3, fs_ppg=100.0, script=[("afib", 60.0)]).generate(60.0)
    pulses = resequence.RealPulses("crude", _crude_cycles(100.0), 100.0)
    real = resequence.with_real_pulses(rec, pulses)
    assert np.array_equal(real.ecg, rec.ecg) and np.array_equal(real.rhythm, rec.rhythm)
    assert real.ppg.shape == rec.ppg.shape and real.meta["ppg_pulses"] == "crude"
    found = detect_ppg_beats(real.ppg.astype(np.float64), 100.0)
    expected = rec.r_peaks / rec.fs_ecg + rec.meta["physiology"]["ptt_s"]
    beats = len(expected[expected < 60.0])
    assert abs(len(found) - beats) <= 0.05 * beats  # one pulse per heartbeat (short AF cycles: a few missed)
    rr = np.diff(found) / 100.0
    assert np.std(rr) / np.mean(rr) > 0.1  # the ECG's AF timing is the PPG's


def test_cohort_pulses_come_from_the_development_recordings():
    from bridge_edge.bridge.inputs import cohort_pulses

    assert cohort_pulses("simulated") == []
    pulses = cohort_pulses("dev_recordings")
    if not pulses:
        pytest.skip("no development recording installed")
    assert all(len(p.cycles) >= 8 and p.fs > 0 for p in pulses)
    assert len({p.source for p in pulses}) == len(pulses)
