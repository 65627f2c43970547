"""bench scale: sized recipes, rows from a run directory's memory files, the growth figure."""

import json
from pathlib import Path

import pytest

from bridge_edge.bench import plots, table
from bridge_edge.bench.results import STATUS_OK, BenchReport
from bridge_edge.bench.scale import growth, recipe_with_subjects, rows_of_run, subjects_for
from bridge_edge.bridge.recipe import parse_recipe
from bridge_edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_sized_recipe_changes_only_the_data_subjects():
    text = (ROOT / "recipes" / "smoke.toml").read_text()
    base, sized = parse_recipe(text), parse_recipe(recipe_with_subjects(text, 240))
    assert sized.data.subjects == 240 and base.data.subjects == 8
    assert sized.data.minutes == base.data.minutes and sized.pretrain == base.pretrain
    assert sized.held_out == base.held_out
    assert subjects_for(4.0, 1.0) == 240 and subjects_for(0.01, 1.0) == 4
    with pytest.raises(ConfigError, match="subjects = N"):
        recipe_with_subjects(text.replace("subjects = 8\n", ""), 10)


def _run_dir(path: Path, peaks: dict[str, list[int]]) -> Path:
    (path / "windows").mkdir(parents=True)
    (path / "memory").mkdir()
    counts = {"train": {"windows": 30, "mixed": 0}, "pair": {"windows": 10, "mixed": 1}}
    (path / "windows" / "windows.json").write_text(json.dumps({"labels": [], "counts": counts}))
    (path / "timings.json").write_text(json.dumps({s: 2.0 for s in peaks}))
    for rank in range(len(next(iter(peaks.values())))):
        doc = {
            s: {
                "peak_rss_bytes": v[rank] * 2**20,
                "peak_anon_bytes": v[rank] * 2**19,
                "peak_rss_method": "VmHWM",
            }
            for s, v in peaks.items()
        }
        (path / "memory" / f"rank{rank}.json").write_text(json.dumps(doc))
    return path


def test_rows_take_the_largest_rank_and_growth_compares_fit_peaks(tmp_path):
    report = BenchReport("scale", {"cpu_model": "test"})
    for hours, peaks in (
        (1.0, {"data": [100, 90], "bridge": [400, 300]}),
        (4.0, {"data": [100], "bridge": [440]}),
    ):
        procs = len(peaks["data"])
        for row in rows_of_run(_run_dir(tmp_path / f"r{hours}", peaks), hours, 60, procs):
            report.add(row)
    rows = report.rows
    assert [r["stage"] for r in rows[:2]] == ["data", "bridge"]
    assert rows[1]["peak_rss_mb"] == 400.0 and rows[1]["processes"] == 2  # max over the two ranks
    assert rows[0]["windows"] == 40 and rows[0]["windows_per_s"] == 20.0
    # one process only at 4 h: no 1-process pair of sizes yet
    assert growth(rows, "peak_rss_mb") is None
    for row in rows_of_run(_run_dir(tmp_path / "r1p", {"data": [100], "bridge": [400]}), 1.0, 60, 1):
        report.add(row)
    assert growth(report.rows, "peak_rss_mb") == pytest.approx(0.1)  # 440 vs 400 MB
    assert all(r["status"] == STATUS_OK for r in report.rows)
    report.summary.update(recipe="smoke", peak_rss_growth=0.1, peak_anon_growth=0.1)
    lines = table.scale_section(report)
    assert "0.1" in lines[0] and any("bridge" in line for line in lines)
    assert plots.scale_curves(report.rows, tmp_path / "scale.png", "t") == tmp_path / "scale.png"
    assert (tmp_path / "scale.png").stat().st_size > 0
