"""`bench latency` on a device install (`.[device]`: no torch, onnx, matplotlib or threadpoolctl):
a Jetson user benchmarks with what the device has. The engines' times are measured; what needs a
workstation package (the FLOP count, the sgemm limit, the plots) is left unmeasured with its
reason instead of a traceback. The device suite (scripts/test-device-py310.sh) runs this file
against the installed wheel, where those packages are really absent; here they are made
unimportable for the test."""

import json
import sys

import pytest
from tiny_bundle import make_tiny_bundle

from bridge_edge import cli
from bridge_edge.bench import subject as subject_module
from bridge_edge.bench.subject import Subject

WORKSTATION_ONLY = ("torch", "onnx", "matplotlib", "threadpoolctl")


def test_bench_latency_measures_the_engines_and_says_what_it_could_not(tmp_path, monkeypatch, capsys):
    tiny = make_tiny_bundle(tmp_path / "bundle", window_s=2.0, hop_s=0.5)  # written with onnx, first
    for name in WORKSTATION_ONLY:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    monkeypatch.setattr(
        subject_module, "load_subject", lambda ref, run_dir, fallback=None: Subject.from_bundle(tiny, None)
    )
    out = tmp_path / "res"
    argv = ["bench", "latency", "--json", "--out", str(out), "--engines", "torch,ort", "--precisions", "fp32"]
    assert cli.main([*argv, "--batches", "1", "--windows", "8", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    rows = [r for r in lines if r.get("bench") == "latency" and "stage" in r]
    ort = [r for r in rows if r["engine"] == "ort"]
    assert ort and all(r["status"] == "ok" and r["p50_ms"] > 0 for r in ort)
    assert all(r["achieved_gflops"] is None for r in ort)  # no FLOP count without onnx
    (torch_row,) = [r for r in rows if r["engine"] == "torch" and r["stage"] == "end_to_end"]
    assert torch_row["status"] == "unmeasured" and torch_row["reason"]
    summary = next(r["summary"] for r in lines if "summary" in r)
    assert summary["flops"]["per_window"] is None and summary["limits"]["sgemm_gflops"] is None
    assert "plots skipped" in captured.err and "matplotlib" in captured.err
    assert (out / "latency.json").exists() and not (out / "latency.png").exists()


@pytest.mark.parametrize("missing", ["threadpoolctl", "torch"])
def test_the_sgemm_limit_is_left_out_for_a_library_that_is_not_installed(monkeypatch, missing):
    from bridge_edge.bench import roofline

    monkeypatch.setitem(sys.modules, missing, None)
    peaks = roofline.measure(threads=1, sizes=(64,), seconds=0.05)
    library = {"threadpoolctl": "numpy", "torch": "torch"}[missing]
    assert library not in {p.library for p in peaks}
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert roofline.measure(threads=1, sizes=(64,), seconds=0.05) == []
    assert roofline.limit_gflops([]) is None
