"""The simulator: seamless streaming, consistent ECG/PPG beats, rhythm physiology, counted artefacts."""

import numpy as np
import pytest

from bridge_edge.errors import ConfigError
from bridge_edge.signals import rhythms, waveforms
from bridge_edge.signals.physiology import draw_physiology
from bridge_edge.signals.simulator import LABELS, PatientSimulator, simulate_subject

SCRIPT = [("sinus", 40), ("afib", 40), ("ectopy", 40)]


def test_generate_in_pieces_equals_generate_at_once():
    whole = PatientSimulator(11, script=SCRIPT, motion_noise=0.8).generate(100.0)
    sim = PatientSimulator(11, script=SCRIPT, motion_noise=0.8)
    parts = [sim.generate(s) for s in (7.3, 31.9, 0.8, 60.0)]
    np.testing.assert_allclose(np.concatenate([p.ecg for p in parts]), whole.ecg, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([p.ppg for p in parts]), whole.ppg, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([p.rhythm for p in parts]), whole.rhythm)
    offsets = np.cumsum([0] + [len(p.ecg) for p in parts[:-1]])
    peaks = np.concatenate([p.r_peaks + o for p, o in zip(parts, offsets)])
    np.testing.assert_array_equal(peaks, whole.r_peaks)


def test_labels_follow_the_script_per_ecg_sample():
    rec = PatientSimulator(3, script=SCRIPT).generate(120.0)
    assert rec.labels == LABELS == ("sinus", "afib", "ectopy")
    t = np.arange(len(rec.ecg)) / rec.fs_ecg
    expected = np.select([t < 40, t < 80], [0, 1], 2)
    np.testing.assert_array_equal(rec.rhythm, expected)
    assert rec.rhythm.dtype == np.int8 and rec.ecg.dtype == np.float32 and rec.ppg.dtype == np.float32


def test_script_repeats_and_bad_script_is_rejected():
    rec = PatientSimulator(3, script=[("sinus", 10), ("afib", 10)]).generate(45.0)
    assert rec.rhythm[int(25 * rec.fs_ecg)] == 0 and rec.rhythm[int(35 * rec.fs_ecg)] == 1
    with pytest.raises(ConfigError, match="bad script episode"):
        PatientSimulator(1, script=[("vfib", 10)])


def _rr(rec, label):
    t = rec.r_peaks / rec.fs_ecg
    inside = rec.rhythm[rec.r_peaks] == LABELS.index(label)
    return np.diff(t)[inside[1:] & inside[:-1]]


def test_afib_is_irregularly_irregular_and_sinus_is_not():
    for seed in (1, 2, 3):
        rec = PatientSimulator(seed, script=[("sinus", 60), ("afib", 60)]).generate(120.0)
        sinus, afib = _rr(rec, "sinus"), _rr(rec, "afib")
        assert np.std(sinus) / np.mean(sinus) < 0.08
        assert np.std(afib) / np.mean(afib) > 0.12
        # irregularly irregular: successive AF intervals are (nearly) uncorrelated
        assert abs(np.corrcoef(afib[:-1], afib[1:])[0, 1]) < 0.4


def test_ppg_pulse_follows_each_r_peak_by_the_pulse_transit_time():
    sim = PatientSimulator(5, script=[("sinus", 60)], sensor=False)  # the pulse wave itself
    rec = sim.generate(60.0)
    p = sim.physiology
    assert 0.12 <= p.ptt_s <= 0.35
    peaks_s = rec.r_peaks / rec.fs_ecg
    delays = []
    for r in peaks_s[2:-2]:  # per-beat check on the output, a loop over ~60 beats
        lo, hi = int((r + 0.1) * rec.fs_ppg), int((r + 0.6) * rec.fs_ppg)
        delays.append(np.argmax(rec.ppg[lo:hi]) / rec.fs_ppg + 0.1)
    assert abs(np.median(delays) - (p.ptt_s + p.pulse_rise_s * p.pulse_width)) < 0.05


def test_r_peaks_sit_on_the_qrs():
    rec = PatientSimulator(8, script=[("sinus", 30)]).generate(30.0)
    win = int(0.05 * rec.fs_ecg)
    local_max = [np.argmax(rec.ecg[i - win : i + win]) - win for i in rec.r_peaks[1:-1]]
    assert np.median(np.abs(local_max)) <= 3  # samples at 500 Hz


def test_p_waves_only_in_organised_atrial_rhythm():
    phys = draw_physiology(np.random.default_rng(0))
    beats = rhythms.BeatTrain(
        np.array([1.0, 2.0, 3.0, 4.0]),
        np.array([rhythms.SINUS, rhythms.AF_CONDUCTED, rhythms.PVC, rhythms.PAC], np.int8),
        np.full(4, 0.9),
    )
    table = waveforms.ecg_waves(beats, phys, np.zeros(4))
    p_amp = table[:, 0, 3]
    assert p_amp[0] > 0 and p_amp[1] == 0 and p_amp[2] == 0 and p_amp[3] != 0
    qrs_width = table[:, 2, 1]
    assert qrs_width[2] > 2 * qrs_width[0]  # PVC is wide


def test_pvc_pause_is_compensatory_and_short_rr_gives_pulse_deficit():
    phys = draw_physiology(np.random.default_rng(4))
    beats = rhythms.episode_beats("ectopy", 0.0, 0.0, 600.0, phys, np.random.default_rng(5))
    kinds, rr = beats.kinds, beats.rr_prev
    pvc = np.flatnonzero(kinds[:-1] == rhythms.PVC)
    pvc = pvc[(pvc > 0) & (kinds[pvc + 1] == rhythms.SINUS) & (kinds[pvc - 1] == rhythms.SINUS)]
    assert len(pvc) > 5
    normal_rr = 60.0 / phys.resting_hr_bpm
    # coupling interval + pause = two sinus cycles (up to HRV)
    np.testing.assert_allclose(rr[pvc] + rr[pvc + 1], 2 * normal_rr, rtol=0.12)
    assert np.all(rr[pvc] < 0.8 * normal_rr)
    short = rhythms.BeatTrain(np.array([1.0, 1.3]), np.array([1, 1], np.int8), np.array([0.9, 0.3]))
    amp = waveforms.pulse_amplitude(short, phys)
    assert amp[0] > 0 and amp[1] == 0


def test_fibrillatory_waves_have_the_af_frequency_and_amplitude():
    phys = draw_physiology(np.random.default_rng(9))
    t = np.arange(0, 60, 1 / 500.0)
    f = waveforms.fibrillatory_waves(t, phys)
    spectrum = np.abs(np.fft.rfft(f))
    freqs = np.fft.rfftfreq(len(f), 1 / 500.0)
    in_band = spectrum[(freqs > phys.fwave_hz - 1.5) & (freqs < phys.fwave_hz + 1.5)].sum()
    assert in_band > 0.5 * spectrum.sum()
    assert 0.3 * phys.fwave_mv < np.sqrt(np.mean(f**2)) < 1.5 * phys.fwave_mv


def test_artefacts_are_counted_not_hidden():
    rec = PatientSimulator(21, script=[("sinus", 300)], motion_noise=1.0).generate(300.0)
    art = rec.meta["artefacts"]
    assert art["ppg_motion_samples"] > 0
    assert art["ecg_dropout_samples"] == int(np.sum(rec.ecg == 0.0))
    assert art["ppg_dropout_samples"] <= int(np.sum(rec.ppg == 0.0))
    still = PatientSimulator(21, script=[("sinus", 300)], motion_noise=0.0).generate(300.0)
    assert still.meta["artefacts"]["ppg_motion_samples"] == 0


def test_subjects_differ_and_seeds_reproduce():
    a, b = simulate_subject("a", 1.0, 1), simulate_subject("b", 1.0, 2)
    assert a.meta["physiology"] != b.meta["physiology"]
    again = simulate_subject("a", 1.0, 1)
    np.testing.assert_array_equal(a.ecg, again.ecg)
    ecg_mv = np.percentile(np.abs(a.ecg), 99.5)
    assert 0.3 < ecg_mv < 3.0  # realistic amplitudes in mV
