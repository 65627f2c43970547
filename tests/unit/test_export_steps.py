"""export.steps: a step reruns exactly when its key (its parameters, the shared inputs, the steps
before it) changed or its files no longer hash as recorded; a failure keeps the steps before it."""

from types import SimpleNamespace

import numpy as np
import pytest

from bridge_edge.errors import ModelError
from bridge_edge.export.source import SplitWindows
from bridge_edge.export.steps import ExportRun, Step, run_steps


def make_run(tmp_path, settings: dict, *, held_out_seed: int = 0) -> ExportRun:
    w = SplitWindows(
        np.random.default_rng(held_out_seed).standard_normal((4, 3)).astype(np.float32), np.arange(4)
    )
    return ExportRun(
        SimpleNamespace(module=None, name="t", recipe_hash="h"),
        w,
        w,
        w.x,
        w.y,
        SimpleNamespace(**settings),
        ("fp32",),
        (),
        18,
        tmp_path / "work",
    )


def table(calls: list[str]):
    def writer(name):
        def run(r: ExportRun) -> dict:
            if getattr(r.recipe, f"fail_{name}", False):
                raise ModelError(f"{name} failed", step=name)
            calls.append(name)
            (r.bundle / f"{name}.txt").write_text(f"{name} {getattr(r.recipe, name)}")
            return {"value": getattr(r.recipe, name)}

        return run

    def files(name):
        return lambda r, rec: [f"{name}.txt"]

    return [
        Step("a", writer("a"), files("a"), params=lambda r: r.recipe.a),
        Step("b", writer("b"), files("b"), params=lambda r: r.recipe.b, after=("a",)),
        Step(
            "c",
            writer("c"),
            files("c"),
            params=lambda r: r.recipe.c,
            enabled=lambda r: r.recipe.c is not None,
        ),
    ]


def test_steps_rerun_exactly_when_their_key_changes(tmp_path):
    calls: list[str] = []
    base = {"a": 1, "b": 1, "c": 1}
    assert run_steps(table(calls), make_run(tmp_path, base)) == {"a": "ran", "b": "ran", "c": "ran"}
    assert run_steps(table(calls), make_run(tmp_path, base)) == {"a": "reused", "b": "reused", "c": "reused"}
    assert calls == ["a", "b", "c"]
    calls.clear()
    run = make_run(tmp_path, base | {"b": 2})  # only b's own setting
    assert run_steps(table(calls), run) == {"a": "reused", "b": "ran", "c": "reused"}
    assert run.records["b"]["record"] == {"value": 2}
    calls.clear()
    run_steps(table(calls), make_run(tmp_path, base | {"a": 2, "b": 2}))  # a changed: b follows it
    assert calls == ["a", "b"]
    calls.clear()
    run_steps(table(calls), make_run(tmp_path, base | {"a": 2, "b": 2}, held_out_seed=1))  # shared input
    assert calls == ["a", "b", "c"]


def test_a_tampered_file_reruns_its_step_and_a_disabled_step_leaves_nothing(tmp_path):
    calls: list[str] = []
    base = {"a": 1, "b": 1, "c": 1}
    run_steps(table(calls), make_run(tmp_path, base))
    bundle = tmp_path / "work" / "bundle"
    (bundle / "a.txt").write_text("truncated")
    (bundle / "stray.onnx").write_text("a failed attempt's file")
    calls.clear()
    assert run_steps(table(calls), make_run(tmp_path, base | {"c": None})) == {
        "a": "ran",
        "b": "reused",
        "c": "disabled",
    }
    assert calls == ["a"] and (bundle / "a.txt").read_text() == "a 1"
    assert sorted(p.name for p in bundle.iterdir()) == ["a.txt", "b.txt"]
    assert not (tmp_path / "work" / "steps" / "c.json").exists()


def test_a_failed_step_keeps_the_steps_before_it_and_resumes_there(tmp_path):
    calls: list[str] = []
    base = {"a": 1, "b": 1, "c": 1}
    with pytest.raises(ModelError, match="b failed"):
        run_steps(table(calls), make_run(tmp_path, base | {"fail_b": True}))
    assert calls == ["a"]
    calls.clear()
    assert run_steps(table(calls), make_run(tmp_path, base)) == {"a": "reused", "b": "ran", "c": "ran"}
    assert calls == ["b", "c"]
