"""The fit stage table: what reruns when the recipe changes, disabled stages, declared reads."""

from __future__ import annotations

import pytest

from bridge_edge.bridge.fit import STAGES
from bridge_edge.bridge.recipe import parse_recipe
from bridge_edge.bridge.stages import DISABLED_KEY, RecipeView, Run, Stage, plan
from bridge_edge.errors import StageReadError


def changed(before: str, after: str) -> set[str]:
    a, b = plan(parse_recipe(before), STAGES).keys, plan(parse_recipe(after), STAGES).keys
    return {name for name in a if a[name] != b[name]}


def downstream(names: set[str]) -> set[str]:
    """``names`` and every stage after one of them."""
    out = set(names)
    for s in STAGES:  # the table is in topological order
        if out & set(s.after):
            out.add(s.name)
    return out


def readers(ref: str, recipe_text: str = "") -> set[str]:
    recipe = parse_recipe(recipe_text)
    p = plan(recipe, STAGES)
    return {s.name for s in STAGES if p.active[s.name] and ref in s.reads_of(recipe)}


def test_the_top_level_seed_reruns_exactly_the_stages_that_read_it():
    assert readers("seed") == {"pretrain", "bridge", "kd"}
    assert changed("seed = 0\n", "seed = 1\n") == downstream(readers("seed")) == {
        "pretrain", "features", "select", "bridge", "operating_point", "kd", "position_check"
    }  # fmt: skip
    # with a probe and selection trials, they read it too
    text = "[probe]\nenabled = true\n[selection]\ntrial_epochs = 1\n"
    assert readers("seed", text) == {"probe", "pretrain", "select", "bridge", "kd"}
    assert changed("seed = 0\n" + text, "seed = 1\n" + text) == downstream(readers("seed", text))


@pytest.mark.parametrize(
    "edit, field",
    [
        ("positive_label = 'sinus'\n", "positive_label"),
        ("[data]\nhop_s = 2.5\n", "data.hop_s"),
        ("[data]\npair_balance = 'rate'\n", "data.pair_balance"),
        ("[bridge]\nbatch_size = 8\n", "bridge.batch_size"),
        ("[bridge]\nsensor_variants = 2\n", "bridge.sensor_variants"),
        ("[kd]\nepochs = 3\n", "kd.epochs"),
        ("[pretrain]\nepochs = 2\n", "pretrain.epochs"),
        ("[position_check]\nepochs = 1\n", "position_check.epochs"),
        ("[held_out]\nextra_simulated_subjects = 2\n", "held_out.extra_simulated_subjects"),
        ("[pair_cohort]\nsubjects = 2\n", "pair_cohort.subjects"),
    ],
)
def test_any_field_a_stage_reads_reruns_that_stage_and_what_follows_it(edit, field):
    recipe = parse_recipe(edit)
    p = plan(recipe, STAGES)
    direct = {
        s.name
        for s in STAGES
        if p.active[s.name] and any(field == r or field.startswith(r + ".") for r in s.reads_of(recipe))
    }
    assert direct
    assert changed("", edit) == {name for name in downstream(direct) if p.active[name]}


def test_how_the_pair_windows_are_drawn_retrains_without_resimulating():
    # pair_balance is read only by the stages that draw pair windows, not by the data stage
    assert changed("", "[data]\npair_balance = 'rate'\n") == downstream({"bridge", "kd"})
    assert readers("data.pair_balance", "[selection]\ntrial_epochs = 2\n") == {
        "select",
        "bridge",
        "kd",
        "position_check",
    }


def test_selection_with_a_pinned_input_block_does_not_depend_on_the_bridge_settings():
    # one candidate: no trial bridge is trained, so [bridge] changes retrain the bridge, not selection
    pinned = "[selection]\ntrial_epochs = 8\nk_in = 9\nk_out = 7\n"
    assert readers("bridge", pinned) == {"bridge"}
    assert changed(pinned + "[bridge]\nrank = 4\n", pinned + "[bridge]\nrank = 8\n") == downstream({"bridge"})
    searched = "[selection]\ntrial_epochs = 8\nk_in = -1\n"
    assert readers("bridge", searched) == {"select", "bridge"}


def test_kd_disabled_is_not_run_and_stages_after_it_do_not_depend_on_its_settings():
    recipe = parse_recipe("[kd]\nenabled = false\nepochs = 3\n")
    p = plan(recipe, STAGES)
    assert not p.active["kd"] and p.keys["kd"] == DISABLED_KEY
    assert changed("[kd]\nenabled = false\n", "[kd]\nenabled = false\nepochs = 3\n") == set()
    assert changed("", "[kd]\nenabled = false\n") == {"kd"}


def test_skipped_stages_are_inactive_and_change_only_their_own_key():
    recipe = parse_recipe("")
    full, skipped = plan(recipe, STAGES), plan(recipe, STAGES, skip=("position_check",))
    assert not skipped.active["position_check"]
    assert {n for n in full.keys if full.keys[n] != skipped.keys[n]} == {"position_check"}


def test_a_stage_reads_only_what_it_or_a_stage_before_it_declares():
    recipe = parse_recipe("")
    allowed = plan(recipe, STAGES).allowed
    assert {"data.window_s", "data.pair_speeds", "old_model", "new_model", "bridge.batch_size"} <= allowed[
        "features"
    ]
    assert "data.pair_balance" not in allowed["features"] and "data" not in allowed["features"]
    view = RecipeView(recipe, allowed["features"], "features")
    assert view.bridge.batch_size == recipe.bridge.batch_size
    assert view.data.window_s == recipe.data.window_s
    with pytest.raises(StageReadError) as err:
        view.bridge.lr  # noqa: B018 - the read is the test
    assert err.value.stage == "features" and err.value.key == "bridge.lr"
    with pytest.raises(StageReadError):
        RecipeView(recipe, allowed["data"], "data").seed  # noqa: B018
    assert "seed" in allowed["pretrain"] and "seed" not in allowed["data"]


def test_a_running_stage_sees_the_recipe_through_its_view(tmp_path):
    from bridge_edge.bridge.rundir import RunDir

    recipe = parse_recipe("")
    seen = {}

    def greedy(run: Run) -> None:
        seen["epochs"] = run.recipe.kd.epochs
        run.recipe.bridge.lr  # noqa: B018 - not declared: fails

    stage = Stage("greedy", greedy, reads=("kd",))
    run = Run(RunDir(tmp_path), recipe)
    with pytest.raises(StageReadError):
        with run.stage(stage.name, plan(recipe, [stage]).allowed[stage.name]):
            stage.run(run)
    assert seen == {"epochs": recipe.kd.epochs}
    assert run.recipe is recipe  # the view ends with the stage


def test_bench_training_runs_the_fit_stage_table(monkeypatch, tmp_path):
    """bench training calls fit (the one stage table) with the position check skipped."""
    from bridge_edge.bench import training
    from bridge_edge.bridge import fit as fit_module

    calls = {}

    def fake_fit(recipe, run_dir, **kwargs):
        calls.update(kwargs, recipe=recipe, run_dir=run_dir)
        return {"stages": {"kd": "skipped: [kd] enabled = false"}}

    monkeypatch.setattr(fit_module, "fit", fake_fit)
    report = training.fit_without_position_check(tmp_path / "r.toml", tmp_path / "run", "cpu")
    assert calls["skip"] == ("position_check",) and calls["device"] == "cpu"
    rows = {r.method: r for r in training.rows_from_report(report | {"bridge": None})}
    assert rows["kd"].status == "unmeasured" and "[kd] enabled = false" in rows["kd"].reason
