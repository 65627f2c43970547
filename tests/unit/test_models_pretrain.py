"""Self-supervised PPG pretraining: label-free by construction, deterministic, and useful."""

import inspect

import numpy as np
import pytest
import torch

from bridge_edge.models.papagei import PapageiAdapter, PapageiConfig
from bridge_edge.models.ppg_augment import AugmentSpec, augment, motion_burst, random_crop
from bridge_edge.models.pretrain import (
    nt_xent,
    pretrain_ppg_encoder,
    rhythm_probe,
    unlabelled_ppg_windows,
)
from bridge_edge.signals.ppg_targets import SIGNAL_TARGETS, signal_targets

torch.set_num_threads(1)
TINY = PapageiConfig(base_filters=8, kernel_size=7, n_block=6, n_classes=8, window_s=8.0)


def test_pretraining_takes_no_labels():
    params = inspect.signature(pretrain_ppg_encoder).parameters
    assert not [p for p in params if "label" in p.lower() or p in ("y", "target", "targets")]
    assert list(params)[:2] == ["windows", "adapter"]


def test_views_keep_shape_and_are_normalised():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1200)
    crop = random_crop(x, 1000, gen)
    assert crop.shape == (5, 1000)
    # each crop is a contiguous slice of its own row
    row = x[2].numpy()
    start = int(np.flatnonzero(np.isclose(row, crop[2, 0].item()))[0])
    assert np.allclose(row[start : start + 1000], crop[2].numpy())
    v = augment(x, 1000, 125.0, gen)
    assert v.shape == (5, 1000)
    assert torch.allclose(v.mean(dim=1), torch.zeros(5), atol=1e-4)
    assert torch.allclose(v.std(dim=1, unbiased=False), torch.ones(5), atol=1e-3)


def test_motion_bursts_are_one_band_limited_span_and_off_by_default():
    fs, n = 125.0, 1250
    x = torch.sin(2 * torch.pi * 1.1 * torch.arange(n) / fs).repeat(6, 1)
    gen = torch.Generator().manual_seed(4)
    assert torch.equal(motion_burst(x, fs, gen, AugmentSpec()), x)  # motion_prob 0: untouched
    added = (motion_burst(x, fs, gen, AugmentSpec(motion_prob=1.0)) - x).numpy()
    for row in added:
        touched = np.flatnonzero(np.abs(row) > 1e-6)
        span_s = (touched[-1] - touched[0] + 1) / fs
        assert 0.9 <= span_s <= 8.0 and len(touched) > 0.9 * (touched[-1] - touched[0] + 1)  # one span
        power = np.abs(np.fft.rfft(row)) ** 2
        freqs = np.fft.rfftfreq(n, 1 / fs)
        assert power[freqs > 6.0].sum() < 0.05 * power.sum()  # motion, not hiss
        assert row.std() > 0.1  # and big enough to matter


def test_nt_xent_prefers_matching_views():
    z = torch.randn(8, 16)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 16), 0.2) < nt_xent(z, torch.randn(8, 16), 0.2)


def _synthetic_ppg(n: int, irregular: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """Pulse trains at 125 Hz: regular (sinus-like) or irregular (AF-like) beat intervals."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 125)) / 125.0
    out = np.zeros((n, t.size))
    for i in range(n):
        mean_rr = rng.uniform(0.6, 1.0)
        rr = mean_rr * (rng.uniform(0.55, 1.45, 40) if irregular[i] else 1 + 0.03 * rng.standard_normal(40))
        beats = np.cumsum(rr) - rng.uniform(0, 1)
        d = t[None, :] - beats[:, None]
        pulse = np.exp(-(((d - 0.15) / 0.08) ** 2)) + 0.4 * np.exp(-(((d - 0.4) / 0.1) ** 2))
        out[i] = pulse.sum(axis=0) + 0.05 * rng.standard_normal(t.size)
    out = (out - out.mean(1, keepdims=True)) / out.std(1, keepdims=True)
    return out.astype(np.float32)


def test_pretraining_is_deterministic_and_changes_weights():
    irregular = np.arange(16) % 2 == 0
    windows = _synthetic_ppg(16, irregular, 9.0, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        adapter = PapageiAdapter(TINY)
        before = adapter.module.basicblock_list[0].conv1.conv.weight.detach().clone()
        history = pretrain_ppg_encoder(windows, adapter, epochs=2, batch_size=8, seed=5, progress=False)
        runs.append(history["loss"])
        assert not torch.equal(before, adapter.module.basicblock_list[0].conv1.conv.weight)
        assert not adapter.module.training
    assert len(runs[0]) == 2 and np.isfinite(runs[0]).all()
    assert runs[0] == runs[1]


def test_pretraining_reads_memory_mapped_rows_as_it_reads_the_array(tmp_path):
    """A fit hands pretraining its pool as a memory-mapped file joined with in-memory parts,
    read a batch at a time (docs/scale.md): the same losses and weights as the joined array."""
    from bridge_edge.bridge.shards import JoinedRows, RowReader

    windows = _synthetic_ppg(16, np.arange(16) % 2 == 0, 9.0, seed=0)
    np.save(tmp_path / "split.npy", windows[:10])
    joined = JoinedRows([np.load(tmp_path / "split.npy", mmap_mode="r"), windows[10:]])
    weights = []
    for source in (windows, RowReader(joined)):
        torch.manual_seed(123)
        adapter = PapageiAdapter(TINY)
        history = pretrain_ppg_encoder(source, adapter, epochs=2, batch_size=8, seed=5, progress=False)
        weights.append(
            (history["loss"], adapter.module.basicblock_list[0].conv1.conv.weight.detach().clone())
        )
    assert weights[0][0] == weights[1][0] and torch.equal(weights[0][1], weights[1][1])


def _simulated_ppg(seeds, window_s: float, hop_s: float):
    """Preprocessed PPG windows and AF flags from scripted sinus/AF simulated subjects."""
    sim = pytest.importorskip("bridge_edge.signals.simulator")
    from bridge_edge.signals.preprocess import PreprocessSpec
    from bridge_edge.signals.windows import paired_windows

    windows, afib = [], []
    for seed in seeds:
        patient = sim.PatientSimulator(seed, script=[("sinus", 60.0), ("afib", 60.0)], subject_id=f"s{seed}")
        rec = patient.generate(240.0)
        pw = paired_windows(rec, window_s, hop_s)
        w = unlabelled_ppg_windows([rec], PreprocessSpec(), window_s, hop_s)[: len(pw)]
        keep = pw.label[: len(w)] >= 0
        windows.append(w[keep])
        afib.append(pw.label[: len(w)][keep] == rec.labels.index("afib"))
    return np.concatenate(windows), np.concatenate(afib)


def test_pretrained_features_show_rhythm_on_held_out_windows():
    """Labels are used only here, by the evaluation probe, never by pretraining."""
    unlabelled, _ = _simulated_ppg([11, 12, 13], window_s=10.0, hop_s=2.0)  # flags thrown away
    torch.manual_seed(0)
    adapter = PapageiAdapter(TINY)
    history = pretrain_ppg_encoder(
        unlabelled, adapter, epochs=3, batch_size=32, lr=2e-3, seed=0, progress=False
    )
    assert history["loss"][-1] < history["loss"][0]
    train, y_train = _simulated_ppg([21, 22], window_s=8.0, hop_s=4.0)
    test, y_test = _simulated_ppg([31, 32], window_s=8.0, hop_s=4.0)
    aucs = rhythm_probe(adapter, train, y_train, test, y_test)
    assert len(aucs) == TINY.n_block
    assert max(aucs) > 0.85, aucs


def test_unlabelled_windows_from_recordings():
    sim = pytest.importorskip("bridge_edge.signals.simulator")
    from bridge_edge.signals.preprocess import PreprocessSpec

    rec = sim.simulate_subject("s0", 1.0, seed=3, fs_ppg=125.0)
    w = unlabelled_ppg_windows([rec], PreprocessSpec(), window_s=12.0, hop_s=4.0)
    assert w.shape == ((60 - 12) // 4 + 1, 1500)
    assert np.allclose(w.mean(axis=1), 0, atol=1e-4)


def test_real_unlabelled_ppg_from_installed_development_recordings():
    from bridge_edge.signals.dev_recordings import available_dev_recordings
    from bridge_edge.signals.preprocess import PreprocessSpec

    recs = available_dev_recordings()
    if not recs:
        pytest.skip("neither heartpy nor biosignalsnotebooks is installed: no real example PPG here")
    assert all(16.0 < r.fs_ppg <= 1000.0 and np.isfinite(r.ppg).all() for r in recs)
    w = unlabelled_ppg_windows(recs, PreprocessSpec(), window_s=20.0, hop_s=10.0)
    assert w.shape[1] == 2500 and len(w) > 50
    assert np.allclose(w.std(axis=1), 1.0, atol=1e-3)


def test_signal_targets_come_from_the_signal_and_see_irregularity():
    from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, normalise_windows
    from bridge_edge.signals.simulator import PatientSimulator

    spec = PreprocessSpec()
    rec = PatientSimulator(seed=11, script=[("sinus", 100.0), ("afib", 100.0)]).generate(200.0)
    ppg = filter_and_resample(rec.ppg, rec.fs_ppg, spec)
    windows = normalise_windows(ppg[: 20 * 1250].reshape(20, 1250), spec)
    afib = np.arange(20) >= 10
    targets = signal_targets(
        np.vstack([windows, np.zeros((1, 1250), np.float32)]), spec.fs_out, SIGNAL_TARGETS
    )
    assert targets.shape == (21, len(SIGNAL_TARGETS))
    assert np.isnan(targets[-1]).all()  # a flat window has no beats: unknown, not zero
    rmssd = targets[1:-1, SIGNAL_TARGETS.index("rmssd_over_ibi")]  # skip the filter warm-up window
    assert np.median(rmssd[afib[1:]]) > 2 * np.median(rmssd[~afib[1:]])
    acf = targets[1:-1, SIGNAL_TARGETS.index("autocorrelation_peak")]
    assert np.median(acf[afib[1:]]) < np.median(acf[~afib[1:]])
    irregular = targets[1:-1, SIGNAL_TARGETS.index("rr_irregularity")]
    assert np.nanmin(irregular[afib[1:]]) > np.nanmax(irregular[~afib[1:]])
    # a subset by name is the same columns, in the asked order
    subset = signal_targets(windows, spec.fs_out, ("spectral_entropy", "ibi_cv"))
    both = targets[:-1, [SIGNAL_TARGETS.index("spectral_entropy"), SIGNAL_TARGETS.index("ibi_cv")]]
    assert np.allclose(subset, both, equal_nan=True)


@pytest.mark.parametrize("names", [(), ("ibi_cv", "ibi_cv"), ("ibi_cv", "heart_rhythm")])
def test_unknown_duplicate_or_no_targets_are_config_errors(names):
    from bridge_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="pretraining targets") as err:
        signal_targets(np.zeros((1, 1250), np.float32), 125.0, names)
    assert err.value.key == "pretrain.targets"


def test_auxiliary_targets_join_the_loss_when_weighted():
    windows = _synthetic_ppg(16, np.arange(16) % 2 == 0, 9.0, seed=0)
    losses = {}
    for weight in (0.0, 5.0):
        torch.manual_seed(123)
        history = pretrain_ppg_encoder(
            windows, PapageiAdapter(TINY), epochs=1, batch_size=8, seed=5, progress=False, aux_weight=weight
        )
        assert history["aux_weight"] == weight and history["aux_targets_valid_fraction"] > 0.9
        losses[weight] = history["loss"][0]
    assert losses[5.0] > losses[0.0]  # same seed and batches: only the auxiliary term differs


def test_targets_only_run_leaves_contrastive_out_and_masks_noisy_windows():
    regular = _synthetic_ppg(12, np.zeros(12, bool), 9.0, seed=1)
    noise = np.random.default_rng(2).standard_normal((4, regular.shape[1])).astype(np.float32)
    windows = np.vstack([regular, noise])
    torch.manual_seed(7)
    history = pretrain_ppg_encoder(
        windows,
        PapageiAdapter(TINY),
        epochs=1,
        batch_size=8,
        seed=3,
        progress=False,
        contrastive_weight=0.0,
        aux_weight=1.0,
        aux_min_sqi=0.5,
    )
    assert history["contrastive_weight"] == 0.0 and history["aux_min_sqi"] == 0.5
    # white noise has no pulse shape: its targets are masked, the clean pulses' are kept
    assert history["aux_targets_valid_fraction"] <= 12 / 16
    assert history["aux_targets_valid_fraction"] > 0.5
    # without the contrastive term the loss is the targets' MSE alone: small and non-negative
    assert 0.0 <= history["loss"][0] < 10.0
