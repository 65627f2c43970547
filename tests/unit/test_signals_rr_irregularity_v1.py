"""The pretraining target's statistic (signals.rr_irregularity_v1) must never drift: the shipped
default bundle's encoder was pretrained on it. Values pinned from rr_timing's score as it was at
commit d4cf490 (before the timing baseline's retuning, issue 22)."""

import numpy as np
import pytest

from bridge_edge.signals import ppg_targets
from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.rr_irregularity_v1 import rr_irregularity_v1_from_beats

# (fs, beat sample indices, v1 value); exact float equality: the target must stay bit-identical
PINNED = {
    "regular": (100.0, [80, 160, 240, 320, 400, 480, 560, 640, 720, 800, 880, 960], 0.0),
    "pvc": (100.0, [80, 160, 240, 320, 400, 445, 560, 640, 720, 800, 880, 960], 0.0),
    "af": (100.0, [72, 140, 222, 294, 355, 432, 529, 618, 676, 727, 787, 858], 0.12152950609950942),
    "bigeminy": (100.0, [55, 160, 215, 320, 375, 480, 535, 640, 695, 800, 855, 960, 1015, 1120], 0.0),
    "rsa": (
        100.0,
        [90, 187, 279, 363, 449, 544, 640, 726, 809, 901, 998, 1089, 1172, 1259],
        0.04504389786832493,
    ),
    "missed": (100.0, [80, 160, 320, 400, 482, 560, 640, 785, 865, 945], 0.024454446563645038),
    "many_excluded": (100.0, [100, 160, 260, 320, 420, 480, 580, 640, 740], 0.0),
    "jitter_pac": (
        125.0,
        [100, 201, 300, 398, 497, 565, 668, 765, 866, 969, 1068, 1166, 1267],
        0.017055220314545386,
    ),
    "af_fast": (
        125.0,
        [63, 121, 163, 219, 288, 326, 375, 407, 445, 477, 530, 568, 629, 688, 741, 768, 816, 871, 929, 965],
        0.09091725292651757,
    ),
    "af_long_gap": (
        125.0,
        [91, 173, 258, 382, 467, 566, 804, 923, 1012, 1110, 1212, 1313],
        0.16532182186478853,
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_v1_statistic_is_pinned(name):
    fs, beats, value = PINNED[name]
    assert rr_irregularity_v1_from_beats(np.array(beats), fs) == value


def test_v1_statistic_too_few_intervals_is_nan():
    assert np.isnan(rr_irregularity_v1_from_beats(np.array([0, 80, 160]), 100.0))


def test_pretraining_target_is_the_v1_statistic():
    """signals.ppg_targets' rr_irregularity = log(v1 + 0.01) of the window's detected beats."""
    fs, t = 125.0, np.arange(1250) / 125.0
    rng = np.random.default_rng(11)
    beats_s = np.cumsum(rng.lognormal(np.log(0.75), 0.22, 14))
    pulse = np.exp(-(((t[:, None] - beats_s[None, :]) / 0.08) ** 2)).sum(axis=1)  # narrow pulses
    windows = np.stack([pulse, np.roll(pulse, 200)]) + 0.01 * rng.standard_normal((2, 1250))
    got = ppg_targets.signal_targets(windows, fs, ("rr_irregularity",))[:, 0]
    want = [np.log(rr_irregularity_v1_from_beats(detect_ppg_beats(w, fs), fs) + 0.01) for w in windows]
    assert np.all(np.isfinite(want))
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32))
