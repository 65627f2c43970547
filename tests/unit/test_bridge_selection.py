import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from bridge_edge.bridge.features import FeatureStore
from bridge_edge.bridge.selection import (
    linear_cka,
    output_position,
    read_selection,
    select_positions,
    within_one_se,
    write_selection,
)


def _gram_cka(x, y):
    """Reference: CKA from N x N Gram matrices with explicit centering matrix H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l_) / (np.linalg.norm(k) * np.linalg.norm(l_))


def test_linear_cka_matches_gram_definition_and_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = rng.normal(size=(40, 9))
    assert linear_cka(x, y) == pytest.approx(_gram_cka(x, y), rel=1e-9)
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotation, scale, offset
    assert linear_cka(x, y) < 0.5


def _store(rng, n=120):
    pseudo = np.repeat([0, 3], n // 2)  # two head classes present

    def noise(d):
        return rng.normal(size=(n, d))

    informative = noise(4) + 3.0 * pseudo[:, None]
    probs = np.zeros((n, 6))
    probs[np.arange(n), pseudo] = 1.0
    new = [noise(4), informative, informative.copy(), noise(4)]
    old = [noise(5), informative @ rng.normal(size=(4, 5)), noise(5)]
    return FeatureStore(new, old, None, probs, 0.0)


def test_selection_picks_informative_input_and_most_similar_output(tmp_path):
    store = _store(np.random.default_rng(1))
    labels = ("sinus", "avb", "paced", "afib", "bbb", "ventricular")
    sel = select_positions(store, labels)
    assert sel.k_in == 1  # blocks 1 and 2 tie: the shallowest wins
    assert sel.input_scores[1] == sel.input_scores[2] > sel.input_scores[0] + 0.3
    assert sel.k_out == 1
    assert sel.pseudo_label_counts == {"sinus": 60, "afib": 60}
    write_selection(sel, tmp_path, ["n0", "n1", "n2", "n3"], ["o0", "o1", "o2"])
    doc = json.loads((tmp_path / "selection.json").read_text())
    assert doc["k_in"] == 1 and doc["new_block_paths"][1] == "n1"
    assert (tmp_path / "selection.png").stat().st_size > 1000
    assert read_selection(tmp_path).k_out == 1


def test_pinned_positions_are_kept_but_scored():
    store = _store(np.random.default_rng(2))
    sel = select_positions(store, ("sinus", "avb", "paced", "afib", "bbb", "ventricular"), k_in=3, k_out=2)
    assert (sel.k_in, sel.k_out, sel.pinned) == (3, 2, True)
    assert len(sel.input_scores) == 4 and len(sel.output_scores) == 3


LABELS = ("sinus", "avb", "paced", "afib", "bbb", "ventricular")


def test_one_standard_error_band_and_cka_tolerance():
    assert within_one_se([0.80, 0.90, 0.88, float("nan"), 0.86], [0.1, 0.03, 0.2, 0.1, 0.1]) == [1, 2]
    cka = [0.1, 0.69, 0.70, 0.66, 0.5]
    assert output_position(cka) == 2  # METHOD: plain argmax
    assert output_position(cka, tolerance=0.05) == 3  # deepest within 0.05 of the best
    assert output_position(cka, tolerance=0.005) == 2


def test_trials_decide_among_near_tied_input_blocks_by_validation_loss(tmp_path):
    store = _store(np.random.default_rng(1))  # blocks 1 and 2 tie on the LR score
    tried = []

    def trial(k_in, k_out):
        tried.append((k_in, k_out))
        return {"val_loss": {1: 0.4, 2: 0.3}[k_in], "peak_memory_bytes": 10}

    sel = select_positions(store, LABELS, trial=trial)
    assert tried == [(1, 1), (2, 1)]  # only the blocks within one SE of the best, each with its output
    assert (sel.k_in, sel.k_out) == (2, 1)
    assert [t["val_loss"] for t in sel.trials] == [0.4, 0.3] and len(sel.input_score_se) == 4
    write_selection(sel, tmp_path, ["n0", "n1", "n2", "n3"], ["o0", "o1", "o2"])
    assert read_selection(tmp_path).trials[1]["k_in"] == 2
    # pinned input: nothing to try
    assert select_positions(store, LABELS, k_in=3, trial=trial).trials == [] and len(tried) == 2


def test_trials_can_be_decided_by_the_head_kl(tmp_path):
    store = _store(np.random.default_rng(1))

    def trial(k_in, k_out):  # the two scores disagree: the named one decides
        return {"val_loss": {1: 0.4, 2: 0.3}[k_in], "val_head_kl": {1: 0.2, 2: 0.5}[k_in]}

    sel = select_positions(store, LABELS, trial=trial, trial_score="val_head_kl")
    assert (sel.k_in, sel.trial_score) == (1, "val_head_kl")
    write_selection(sel, tmp_path, ["n0", "n1", "n2", "n3"], ["o0", "o1", "o2"])
    assert read_selection(tmp_path).trial_score == "val_head_kl"
    assert (tmp_path / "selection.png").stat().st_size > 0


def test_a_stray_pseudo_label_is_left_out_of_the_input_score_not_fatal_to_it():
    store = _store(np.random.default_rng(1))
    clean = select_positions(store, LABELS)
    probs = store.old_probs.copy()
    probs[0] = np.eye(6)[2]  # one window the old head calls "paced": too few for 5 stratified folds
    stray = select_positions(FeatureStore(store.new_pooled, store.old_pooled, None, probs, 0.0), LABELS)
    assert stray.pseudo_labels_left_out == {"paced": 1} and clean.pseudo_labels_left_out == {}
    assert stray.pseudo_label_counts["paced"] == 1
    assert np.isfinite(stray.input_scores).all() and stray.k_in == clean.k_in == 1


def test_selection_without_two_scorable_pseudo_label_classes_is_a_clear_error():
    from bridge_edge.errors import DataError

    store = _store(np.random.default_rng(1))
    probs = np.tile(np.eye(6)[0], (len(store.old_probs), 1))
    probs[:3] = np.eye(6)[3]  # 3 afib windows: fewer than the 5 folds
    one_class = FeatureStore(store.new_pooled, store.old_pooled, None, probs, 0.0)
    with pytest.raises(DataError, match="two pseudo-label classes") as err:
        select_positions(one_class, LABELS)
    assert "'afib': 3" in str(err.value) and "pin [selection] k_in" in str(err.value)
    assert select_positions(one_class, LABELS, k_in=2).k_in == 2  # a pinned input needs no score


def test_scores_on_at_most_max_windows_evenly_spaced_mapped_windows(tmp_path):
    from bridge_edge.bridge.rundir import load_feature_store
    from bridge_edge.bridge.selection import score_rows

    store = _store(np.random.default_rng(3), n=400)
    folder = tmp_path / "store"
    folder.mkdir()
    for k, a in enumerate(store.new_pooled):
        np.save(folder / f"new_{k}.npy", a.astype(np.float32))
    for k, a in enumerate(store.old_pooled):
        np.save(folder / f"old_{k}.npy", a.astype(np.float32))
    np.save(folder / "old_probs.npy", store.old_probs.astype(np.float32))
    (folder / "store.json").write_text(
        json.dumps({"n_new": 4, "n_old": 3, "old_target": False, "seconds": 0.0})
    )
    mapped = load_feature_store(folder)
    assert isinstance(mapped.new_pooled[0], np.memmap)

    rows = score_rows(400, 100)
    assert len(np.unique(rows)) == 100 and rows[0] == 0 and rows[-1] == 399
    assert score_rows(400, 0) is None and score_rows(400, 400) is None
    subset = FeatureStore(
        [np.asarray(a)[rows] for a in mapped.new_pooled],
        [np.asarray(a)[rows] for a in mapped.old_pooled],
        None,
        np.asarray(mapped.old_probs)[rows],
        0.0,
    )
    capped, by_hand = select_positions(mapped, LABELS, max_windows=100), select_positions(subset, LABELS)
    assert capped.input_scores == by_hand.input_scores and capped.output_scores == by_hand.output_scores
    assert (capped.n_windows, capped.scored_windows) == (400, 100)
    everything = select_positions(mapped, LABELS, max_windows=0)
    assert (everything.n_windows, everything.scored_windows) == (400, 400)
    assert everything.input_scores != capped.input_scores  # other windows, other folds


def test_recipe_refuses_too_few_scored_windows():
    from bridge_edge.bridge.recipe import parse_recipe
    from bridge_edge.errors import ConfigError

    assert parse_recipe("[selection]\nmax_windows = 0\n").selection.max_windows == 0
    assert parse_recipe("").selection.max_windows == 8192
    with pytest.raises(ConfigError, match="max_windows = 20; expected 0 .* or at least 50"):
        parse_recipe("[selection]\nmax_windows = 20\n")
