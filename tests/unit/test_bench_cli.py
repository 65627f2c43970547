"""`bridge-edge bench ...` end to end: JSON lines, result files and plots, unmeasured rows."""

import json
import subprocess
import sys

import pytest

from bridge_edge import cli
from bridge_edge.bench import subject as subject_module
from bridge_edge.bench.subject import Subject


def test_bench_power_quick_json_reports_unreadable_sources_as_unmeasured_never_zero(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge_edge.cli",
            "bench",
            "power",
            "--quick",
            "--json",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert "machine" in lines[0] and lines[0]["machine"]["cpu_logical_cores"] >= 1
    rows = [line for line in lines[1:] if "summary" not in line]
    for row in rows:
        if row["status"] == "unmeasured":
            assert row["reason"] and row["mean_watts"] is None and row["joules"] is None
        else:  # a machine with a readable source: a real positive reading
            assert row["mean_watts"] > 0
    saved = json.loads((tmp_path / "quick" / "power.json").read_text())
    assert saved["bench"] == "power" and len(saved["rows"]) == len(rows)


def test_bench_latency_cli_writes_json_png_and_prints_rows(tmp_path, monkeypatch, capsys):
    from tiny_bundle import make_tiny_bundle

    tiny = make_tiny_bundle(tmp_path / "bundle", window_s=2.0, hop_s=0.5)
    monkeypatch.setattr(
        subject_module, "load_subject", lambda ref, run_dir, fallback=None: Subject.from_bundle(tiny, None)
    )
    code = cli.main(
        [
            "bench",
            "latency",
            "--json",
            "--out",
            str(tmp_path / "res"),
            "--engines",
            "ort,trt",
            "--precisions",
            "fp32",
            "--batches",
            "1,2",
            "--windows",
            "8",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = [line for line in lines if line.get("bench") == "latency" and "stage" in line]
    measured = {(r["engine"], r["batch"], r["stage"]) for r in rows if r["status"] == "ok"}
    assert ("ort", 1, "end_to_end") in measured and ("ort", 2, "infer") in measured
    assert all(r["reason"] for r in rows if r["engine"] == "trt")
    for row in rows:
        assert {
            "bench",
            "engine",
            "precision",
            "batch",
            "stage",
            "n",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
        } <= set(row)
    assert (tmp_path / "res" / "latency.json").exists() and (
        tmp_path / "res" / "latency.png"
    ).stat().st_size > 0
    assert (tmp_path / "res" / "roofline.png").stat().st_size > 0  # achieved vs each precision's limit


def test_bench_help_lists_the_four_benches(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in ("latency", "streams", "training", "power"))
