"""The README table generator on small result files, and the marker rewrite."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge_edge.bench import table
from bridge_edge.bench.results import BenchReport, LatencySummary, load_report
from bridge_edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MACHINE = {
    "cpu_model": "Test CPU",
    "cpu_logical_cores": 2,
    "versions": {"numpy": "2.0"},
    "load_average_at_start": [0.5, 0.4, 0.3],
}


def latency_rows():
    rows = []
    for engine, precision, p50 in (("torch", "fp32", 40.0), ("ort", "int8", 12.0)):
        for stage, scale in (
            ("preprocess", 0.05),
            ("infer", 1.0),
            ("postprocess", 0.01),
            ("end_to_end", 1.1),
        ):
            rows.append(
                {
                    "bench": "latency",
                    "engine": engine,
                    "precision": precision,
                    "batch": 1,
                    "stage": stage,
                    "n": 1024,
                    "windows": 1024,
                    "p50_ms": p50 * scale,
                    "p90_ms": p50 * scale * 1.1,
                    "p99_ms": p50 * scale * 1.3,
                    "max_ms": p50 * scale * 2,
                    "mean_ms": p50 * scale,
                    "throughput_windows_s": 1000 / (p50 * scale),
                    "achieved_gflops": 2.12 / (p50 * scale / 1e3),
                    "pct_of_matmul_limit": 5.0,
                    "status": "ok",
                    "reason": None,
                }
            )
    rows.append(
        {
            "bench": "latency",
            "engine": "trt",
            "precision": "int8",
            "batch": 1,
            "stage": "end_to_end",
            "n": 0,
            "status": "unmeasured",
            "reason": "tensorrt not installed",
            "p50_ms": None,
        }
    )
    return rows


def write_results(tmp_path):
    results = tmp_path / "results"
    lat = BenchReport(
        "latency",
        MACHINE,
        rows=latency_rows(),
        summary={
            "subject": "default 1.0",
            "flops": {"per_window": 2.12e9},
            "matmul_limit": {"gflops": 100.0},
            "key_ratio": {
                "infer_p50_ratio": 0.3,
                "end_to_end_p50_ratio": 0.31,
                "meets_target": True,
                "target_max": 0.5,
            },
        },
    )
    lat.write(results)
    BenchReport(
        "power",
        MACHINE,
        rows=[
            {
                "bench": "power",
                "source": "rapl",
                "workload": "all",
                "status": "unmeasured",
                "reason": "/sys/class/powercap absent",
            }
        ],
    ).write(results)
    return results


def test_render_builds_the_table_from_json_only(tmp_path):
    results = write_results(tmp_path)
    (results / "latency.png").write_bytes(b"png")
    text = table.render(results)
    assert "[latency](benchmarks/results/latency.png)" in text and "[power]" not in text
    assert "Test CPU, 2 cores; numpy 2.0" in text
    assert "| torch | fp32 | 1 | 1024 | 40 / 52 |" in text
    assert "| ort | int8 | 1 | 1024 | 12 / 15.6 |" in text
    assert "unmeasured: tensorrt not installed" in text
    assert "**0.300×**" in text and "meets" in text
    assert "unmeasured: /sys/class/powercap absent" in text
    assert "Concurrent real-time streams" not in text  # no streams.json -> no streams section


def test_rewrite_touches_only_the_text_between_markers(tmp_path):
    readme = f"# Title\n\nintro\n\n{table.START}\nold table\n{table.END}\n\nafter\n"
    new = table.rewrite_between_markers(readme, "| a |\n")
    assert new == f"# Title\n\nintro\n\n{table.START}\n| a |\n{table.END}\n\nafter\n"
    assert table.rewrite_between_markers(new, "| a |\n") == new  # idempotent
    with pytest.raises(ConfigError):
        table.rewrite_between_markers("# no markers\n", "| a |")


def test_bench_table_script_rewrites_and_checks_a_readme(tmp_path):
    results = write_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{table.START}\n{table.END}\ntail\n")
    script = [
        sys.executable,
        str(ROOT / "scripts" / "bench_table.py"),
        "--results",
        str(results),
        "--readme",
        str(readme),
    ]
    assert subprocess.run(script + ["--check"], capture_output=True, check=False).returncode == 1
    subprocess.run(script, check=True, capture_output=True)
    assert "| ort | int8 | 1 |" in readme.read_text() and readme.read_text().endswith("tail\n")
    assert subprocess.run(script + ["--check"], capture_output=True, check=False).returncode == 0


def test_report_round_trip_and_json_lines(tmp_path):
    report = BenchReport("latency", MACHINE, summary={"x": float("nan")})
    report.add({"a": 1, "b": float("inf")})
    path = report.write(tmp_path)
    back = load_report(path)
    assert back.rows == [{"a": 1, "b": None}] and back.summary == {"x": None}
    lines = [json.loads(line) for line in report.json_lines()]
    assert lines[0]["machine"] == MACHINE and lines[1] == {"a": 1, "b": None} and "summary" in lines[-1]


def test_latency_summary_percentiles():
    s = LatencySummary.of_seconds([0.001] * 98 + [0.010, 0.020])
    assert s.n == 100 and s.p50_ms == 1.0 and s.max_ms == 20.0
    assert s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert LatencySummary.of_seconds([]).p50_ms is None


def test_an_impossible_pct_of_sgemm_is_never_printed():
    from bridge_edge.bench.latency import pct_of_limit

    assert pct_of_limit(50.0, 100.0) == 50.0
    assert pct_of_limit(154.0, 100.0) is None and pct_of_limit(222.0, 100.0) is None
    rows = latency_rows()
    for row in rows:
        if row.get("engine") == "ort" and row.get("stage") == "infer":
            row["pct_of_matmul_limit"] = 154.0  # as an older result file measured under load says
    report = BenchReport("latency", MACHINE, rows=rows)
    text = "\n".join(table.latency_section(report))
    assert "154" not in text and "over limit" in text
    assert "| 5 |" in text  # the possible ratio is still shown


def test_model_line_names_what_torch_runs_beyond_the_exported_graph():
    summary = {"flops": {"per_window": 1.0e9, "beyond_graph_per_window": {"torch": 1.1e9}}}
    line = table._limits_line(summary, 1.0e9)
    assert line.startswith("Model: 1 GFLOP per window in the exported graph (torch as written 2.1)")
    assert "as written" not in table._limits_line({"flops": {"per_window": 1.0e9}}, 1.0e9)
