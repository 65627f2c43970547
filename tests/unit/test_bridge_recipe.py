from pathlib import Path

import numpy as np
import pytest

from bridge_edge.bridge.recipe import RECIPES_DIR, Recipe, load_recipe, parse_recipe
from bridge_edge.errors import ConfigError


@pytest.mark.parametrize("name", ["default", "smoke", "wesad_ecg2ppg"])
def test_shipped_recipes_parse(name):
    recipe = load_recipe(RECIPES_DIR / f"{name}.toml")
    assert isinstance(recipe, Recipe)
    assert recipe.name == name
    assert len(recipe.sha256) == 64
    assert recipe.bridge.batch_size == 16


def test_bare_name_resolves_to_shipped_recipe():
    assert Path(load_recipe("smoke").source_path).name == "smoke.toml"


def test_wesad_recipe_pins_the_papers_positions():
    r = load_recipe(RECIPES_DIR / "wesad_ecg2ppg.toml")
    assert (r.selection.k_in, r.selection.k_out) == (4, 2)
    assert (r.bridge.rank, r.bridge.init, r.bridge.lr, r.bridge.epochs) == (8, "rand_150", 1e-6, 100)
    # stage 1: HuBERT-ECG gets a class-weighted linear probe on the paper's 3 classes
    assert r.probe.enabled and (r.probe.epochs, r.probe.lr, r.probe.batch_size) == (50, 1e-5, 32)
    assert r.probe.class_weighted and r.probe.labels == ("baseline", "stress", "amusement")


def test_unknown_key_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as err:
        parse_recipe("[bridge]\nrank = 4\nrnak = 5\n")
    assert err.value.key == "bridge.rnak"
    with pytest.raises(ConfigError):
        parse_recipe("colour = 'blue'\n")


def test_wrong_types_are_rejected_and_ints_widen_to_float():
    with pytest.raises(ConfigError) as err:
        parse_recipe("[bridge]\nrank = 'eight'\n")
    assert err.value.key == "bridge.rank"
    with pytest.raises(ConfigError):
        parse_recipe("[bridge]\nepochs = true\n")
    with pytest.raises(ConfigError):
        parse_recipe("bridge = 3\n")
    assert parse_recipe("[bridge]\nlr = 1\n").bridge.lr == 1.0


def test_string_arrays_parse_to_tuples_and_anything_else_is_rejected():
    recipe = parse_recipe('[pretrain]\ntargets = ["ibi_cv", "spectral_entropy"]\n')
    assert recipe.pretrain.targets == ("ibi_cv", "spectral_entropy")
    assert parse_recipe("").pretrain.targets == ("mean_ibi_s", "ibi_cv", "rmssd_over_ibi", "amplitude_cv")
    for bad in ('"ibi_cv"', "[1, 2]"):
        with pytest.raises(ConfigError, match="array of strings") as err:
            parse_recipe(f"[pretrain]\ntargets = {bad}\n")
        assert err.value.key == "pretrain.targets"
    # a name pretraining does not know fails when the recipe loads, not minutes into a fit
    with pytest.raises(ConfigError, match="pretraining targets") as err:
        parse_recipe('[pretrain]\ntargets = ["ibi_cv", "heart_rhythm"]\n')
    assert err.value.key == "pretrain.targets"


def test_named_choices_are_checked_when_the_recipe_loads():
    assert parse_recipe('[bridge]\nbest_epoch_by = "val_head_kl"\n').bridge.best_epoch_by == "val_head_kl"
    assert parse_recipe('[bridge]\ninput = "tokens"\n').bridge.input == "tokens"
    assert parse_recipe("").bridge.input == "pooled"  # METHOD's pooled bridge unless asked
    for text, key in (
        ('[bridge]\nbest_epoch_by = "test_auroc"\n', "bridge.best_epoch_by"),
        ('[kd]\nloss = "mse"\n', "kd.loss"),
        ('[data]\npair_balance = "label"\n', "data.pair_balance"),
        ('[bridge]\ninput = "sequence"\n', "bridge.input"),
    ):
        with pytest.raises(ConfigError, match="expected one of") as err:
            parse_recipe(text)
        assert err.value.key == key


def test_head_kl_weight_is_a_finite_non_negative_weight():
    assert parse_recipe("[bridge]\nhead_kl_weight = 0.5\n").bridge.head_kl_weight == 0.5
    assert parse_recipe("").bridge.head_kl_weight == 0.0  # METHOD's cosine loss alone
    assert (
        parse_recipe('[data]\npair_balance = "rate_irregularity"\n').data.pair_balance == "rate_irregularity"
    )
    for bad in ("-1.0", "nan", "inf"):
        with pytest.raises(ConfigError, match="head_kl_weight") as err:
            parse_recipe(f"[bridge]\nhead_kl_weight = {bad}\n")
        assert err.value.key == "bridge.head_kl_weight"


def test_local_rank_is_only_for_the_token_bridge_and_not_negative():
    assert parse_recipe('[bridge]\ninput = "tokens"\nlocal_rank = 4\n').bridge.local_rank == 4
    assert parse_recipe("").bridge.local_rank == 0  # the pooled rank
    for text in ("[bridge]\nlocal_rank = 4\n", '[bridge]\ninput = "tokens"\nlocal_rank = -1\n'):
        with pytest.raises(ConfigError, match="local_rank") as err:
            parse_recipe(text)
        assert err.value.key == "bridge.local_rank"


def test_invalid_toml_is_a_config_error():
    with pytest.raises(ConfigError):
        parse_recipe("[bridge\n")


def test_stage_keys_change_only_downstream_of_an_edited_section():
    from bridge_edge.bridge.fit import STAGES
    from bridge_edge.bridge.stages import DISABLED_KEY, plan

    def _stage_keys(recipe):
        return plan(recipe, STAGES).keys

    base = _stage_keys(parse_recipe("[bridge]\nlr = 0.001\n"))
    tuned = _stage_keys(parse_recipe("[bridge]\nlr = 0.01\n"))
    changed = {name for name in base if base[name] != tuned[name]}
    assert changed == {"bridge", "operating_point", "position_check"}
    # the operating point is chosen after the bridge: changing it trains nothing again
    point = _stage_keys(parse_recipe('[bridge]\nlr = 0.001\n[operating_point]\nmethod = "old_model_calls"\n'))
    assert {name for name in base if base[name] != point[name]} == {"operating_point"}
    trials = "[selection]\ntrial_epochs = 2\n[bridge]\nlr = "
    base, tuned = _stage_keys(parse_recipe(trials + "0.001\n")), _stage_keys(parse_recipe(trials + "0.01\n"))
    assert {name for name in base if base[name] != tuned[name]} == {
        "select", "bridge", "operating_point", "position_check"
    }  # fmt: skip
    data = _stage_keys(parse_recipe("[data]\nsubjects = 5\n"))
    # everything that runs depends on the data (probe and held_out are off: their key says so)
    assert all(data[name] != base[name] for name in base if base[name] != DISABLED_KEY)
    # more test subjects redo only what reads the test split; the bootstrap count redoes nothing
    plain = _stage_keys(parse_recipe(""))
    extra = _stage_keys(parse_recipe("[held_out]\nextra_simulated_subjects = 3\n"))
    assert {name for name in plain if plain[name] != extra[name]} == {"held_out", "position_check"}
    assert _stage_keys(parse_recipe("[held_out]\nbootstrap_resamples = 7\n")) == plain
    # a pair cohort redoes what reads the pair split, never the data or the pretraining
    cohort = _stage_keys(parse_recipe("[pair_cohort]\nsubjects = 2\n"))
    assert {name for name in plain if plain[name] != cohort[name]} == {
        "pair_cohort", "features", "select", "bridge", "operating_point", "kd", "position_check"
    }  # fmt: skip
    # a probe is the old head: with it on, everything from the features on depends on it
    probed = _stage_keys(parse_recipe("[probe]\nenabled = true\n"))
    assert {name for name in plain if plain[name] != probed[name]} == {
        "probe", "features", "select", "bridge", "operating_point", "kd", "position_check"
    }  # fmt: skip
    off = _stage_keys(parse_recipe("[probe]\nepochs = 3\n"))  # still off: nothing moves
    assert off == plain


def test_position_check_pairs_are_distinct_and_include_the_chosen_one():
    from bridge_edge.bridge.bridging import check_pairs

    assert check_pairs(9, 6, n_new=10, n_old=8, pinned=[]) == [(9, 6), (8, 6), (9, 5), (5, 4)]
    pairs = check_pairs(9, 7, n_new=10, n_old=8, pinned=[])  # the deepest pair still gets 3 others
    assert pairs[0] == (9, 7) and len(pairs) == 4 and len(set(pairs)) == 4
    assert all(0 <= a < 10 and 0 <= b < 8 for a, b in pairs)
    assert check_pairs(1, 1, 4, 8, pinned=[[0, 7], [1, 1], [3, 2], [2, 2]]) == [
        (1, 1),
        (0, 7),
        (3, 2),
        (2, 2),
    ]


def test_extra_pretraining_subjects_are_simulated_past_the_dataset_and_need_simulated_data():
    import dataclasses

    from bridge_edge.bridge.inputs import extra_simulated_ppg
    from bridge_edge.errors import ConfigError

    recipe = parse_recipe(
        "[data]\nsubjects = 3\nminutes = 0.5\nseed = 4\n[pretrain]\nsimulated_subjects = 2\n"
    )
    windows = extra_simulated_ppg(recipe, 125.0)
    assert windows.shape[1] == 2 * 10 * 125 and len(windows) >= 2  # 20-s views, hop 10 s, 30 s each
    assert np.isfinite(windows).all()
    np.testing.assert_allclose(windows.mean(axis=1), 0.0, atol=1e-4)  # z-scored like every ppg-v1 window
    # the extra subjects' seeds follow the dataset's: none of them repeats a dataset subject
    from bridge_edge.signals.simulator import subject_seed

    dataset_seeds = {subject_seed(4, i) for i in range(3)}
    assert not dataset_seeds & {subject_seed(4, 3 + i) for i in range(2)}

    on_disk = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, source="dir", path="x"))
    with pytest.raises(ConfigError, match="simulated_subjects"):
        extra_simulated_ppg(on_disk, 125.0)


def test_held_out_subjects_need_simulated_data_and_counts_are_not_negative():
    from bridge_edge.errors import ConfigError

    assert parse_recipe("[held_out]\nextra_simulated_subjects = 2\n").held_out.extra_simulated_subjects == 2
    with pytest.raises(ConfigError, match='source = "simulate"'):
        parse_recipe('[data]\nsource = "dir"\npath = "x"\n[held_out]\nextra_simulated_subjects = 2\n')
    with pytest.raises(ConfigError, match=">= 0"):
        parse_recipe("[held_out]\nbootstrap_resamples = -1\n")


def test_pair_speeds_parse_as_numbers_and_out_of_range_speeds_are_refused():
    assert parse_recipe("[data]\npair_speeds = [0.8, 1]").data.pair_speeds == (0.8, 1.0)
    assert parse_recipe("").data.pair_speeds == ()
    with pytest.raises(ConfigError) as err:
        parse_recipe('[data]\npair_speeds = ["fast"]')
    assert err.value.key == "data.pair_speeds"
    with pytest.raises(ConfigError) as err:
        parse_recipe("[data]\npair_speeds = [0.0]")
    assert err.value.key == "data.pair_speeds"


def test_played_pair_windows_keep_the_rhythm_at_another_heart_rate():
    from bridge_edge.bridge.data import WindowSet, recording_windows
    from bridge_edge.bridge.inputs import played_pair_recordings, ppg_preprocess_spec
    from bridge_edge.signals.simulator import simulate_subject
    from bridge_edge.signals.types import PairedDataset, Splits

    rec = simulate_subject("p0", 1.0, seed=5, fs_ppg=100.0)
    dataset = PairedDataset(rec.labels, Splits((), (), ("p0",), ()), {"p0": rec})
    recipe = parse_recipe("[data]\npair_speeds = [0.8, 1.25]\npreprocess = 'ppg-v2'")
    d, spec = recipe.data, ppg_preprocess_spec(recipe, 125.0)
    played = WindowSet.concat(  # as the data stage windows them, one played recording at a time
        [
            recording_windows(r, window_s=d.window_s, hop_s=d.hop_s, fs_ecg=100.0, ppg_spec=spec)
            for r in played_pair_recordings(dataset, d.pair_speeds)
        ]
    )
    slow, fast = (played.subject == "p0@x0.8"), (played.subject == "p0@x1.25")
    assert slow.sum() + fast.sum() == len(played)
    # the same minute lasts 75 s at x0.8 and 48 s at x1.25: 13 (75 s less the resampler's last
    # sample) and 8 windows of 10 s, hop 5 s
    assert (slow.sum(), fast.sum()) == (13, 8)
    assert played.ecg.shape[1] == 1000 and played.ppg.shape[1] == 1250

    def rate_hz(ecg_window):  # dominant ECG periodicity by autocorrelation
        x = ecg_window - ecg_window.mean()
        ac = np.correlate(x, x, "full")[len(x) - 1 :]
        lag = 30 + int(np.argmax(ac[30:200]))  # 0.3-2 s at 100 Hz
        return 100.0 / lag

    r_slow = np.median([rate_hz(w) for w in played.ecg[slow]])
    r_fast = np.median([rate_hz(w) for w in played.ecg[fast]])
    assert r_fast / r_slow == pytest.approx(1.25 / 0.8, rel=0.15)


def test_pair_cohort_needs_simulated_data_a_count_and_an_ordered_rate_range():
    assert parse_recipe("").pair_cohort.subjects == 0
    cohort = parse_recipe("[pair_cohort]\nsubjects = 3\naf_hr_bpm = [50, 70]\n").pair_cohort
    assert (cohort.subjects, cohort.af_hr_bpm) == (3, (50.0, 70.0))
    for bad in ("subjects = -1", "af_hr_bpm = [70, 50]", "af_hr_bpm = [20, 50]", "af_hr_bpm = [60]"):
        with pytest.raises(ConfigError, match="pair_cohort"):
            parse_recipe(f"[pair_cohort]\n{bad}\n")
    with pytest.raises(ConfigError, match='source = "simulate"'):
        parse_recipe('[data]\nsource = "dir"\npath = "x"\n[pair_cohort]\nsubjects = 2\n')
    assert parse_recipe("").pair_cohort.sinus_hr_bpm == (0.0, 0.0)  # off: the physiology's draw
    slow = parse_recipe("[pair_cohort]\nsubjects = 3\nsinus_hr_bpm = [50, 65]\n").pair_cohort
    assert slow.sinus_hr_bpm == (50.0, 65.0)
    for bad in ("sinus_hr_bpm = [65, 50]", "sinus_hr_bpm = [10, 50]", "sinus_hr_bpm = [0, 60]"):
        with pytest.raises(ConfigError, match="sinus_hr_bpm"):
            parse_recipe(f"[pair_cohort]\n{bad}\n")


def test_a_pair_cohort_episode_mix_is_a_typed_table():
    from bridge_edge.signals.simulator import EpisodeMix

    assert parse_recipe("").pair_cohort.episodes == EpisodeMix()
    mix = parse_recipe("[pair_cohort]\nsubjects = 2\n[pair_cohort.episodes]\nectopy = 0.3\nbigeminy = 0.2\n")
    assert (mix.pair_cohort.episodes.ectopy, mix.pair_cohort.episodes.bigeminy) == (0.3, 0.2)
    assert mix.pair_cohort.episodes.afib == EpisodeMix().afib
    with pytest.raises(ConfigError, match="flutter"):
        parse_recipe("[pair_cohort.episodes]\nflutter = 1.0\n")
    with pytest.raises(ConfigError, match="episode weights"):
        parse_recipe("[pair_cohort.episodes]\nafib = -1.0\n")


def test_pair_cohort_pulses_are_simulated_unless_asked_for_real_ones():
    assert parse_recipe("").pair_cohort.pulses == "simulated"
    real = parse_recipe('[pair_cohort]\nsubjects = 2\npulses = "dev_recordings"\n').pair_cohort
    assert real.pulses == "dev_recordings"
    with pytest.raises(ConfigError, match="pair_cohort.*pulses.*'wrist'"):
        parse_recipe('[pair_cohort]\npulses = "wrist"\n')


def test_ema_decay_is_off_by_default_checked_and_redoes_only_what_it_trains():
    from bridge_edge.bridge.fit import STAGES
    from bridge_edge.bridge.stages import plan

    plain = parse_recipe("")
    assert plain.bridge.ema_decay == plain.kd.ema_decay == 0.0
    assert parse_recipe("[bridge]\nema_decay = 0.998\n").bridge.ema_decay == 0.998
    for section in ("bridge", "kd"):
        for bad in ("1.0", "-0.1", "1.5"):
            with pytest.raises(ConfigError, match=f"{section}.*ema_decay") as err:
                parse_recipe(f"[{section}]\nema_decay = {bad}\n")
            assert err.value.key == f"{section}.ema_decay"
    keys = plan(plain, STAGES).keys
    bridge_ema = plan(parse_recipe("[bridge]\nema_decay = 0.99\n"), STAGES).keys
    kd_ema = plan(parse_recipe("[kd]\nema_decay = 0.99\n"), STAGES).keys
    assert {n for n in keys if keys[n] != bridge_ema[n]} == {"bridge", "operating_point", "position_check"}
    assert {n for n in keys if keys[n] != kd_ema[n]} == {"kd"}
