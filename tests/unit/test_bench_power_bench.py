"""Energy per inference from a meter: idle baseline, workloads, marginal J/inference, plot."""

import pytest

from bridge_edge.bench import plots, power_bench
from bridge_edge.bench.power.base import IntegratingMeter, Unmeasured
from bridge_edge.bench.results import BenchReport
from bridge_edge.bench.subject import Subject


def test_energy_per_inference_from_a_constant_gauge(tmp_path, monkeypatch):
    from tiny_bundle import make_tiny_bundle

    watts = {"now": 2.0}
    gauge = IntegratingMeter("fake", "test rail", lambda: watts["now"], period_s=0.005)
    monkeypatch.setattr(power_bench, "probe_all", lambda root: ([gauge], [Unmeasured("rapl", "absent here")]))

    subject = Subject.from_bundle(make_tiny_bundle(tmp_path / "b", window_s=2.0), None)
    cfg = power_bench.PowerConfig(workloads=(("ort", "fp32"), ("ort", "int8")), seconds=0.3, threads=1)
    report = BenchReport("power", machine={})
    power_bench.run(subject, cfg, report)

    by_workload = {(r["source"], r["workload"]): r for r in report.rows}
    assert by_workload[("rapl", "all")]["status"] == "unmeasured"
    idle = by_workload[("fake", "idle")]
    assert idle["mean_watts"] == pytest.approx(2.0)
    busy = by_workload[("fake", "ort fp32 batch 1")]
    assert busy["inferences"] > 0
    assert busy["joules_per_inference"] == pytest.approx(busy["joules"] / busy["inferences"])
    # constant power: one more inference costs nothing beyond idle
    assert busy["marginal_joules_per_inference"] == pytest.approx(0.0, abs=1e-3)
    assert by_workload[("all", "ort int8 batch 1")]["status"] == "unmeasured"  # tiny bundle: fp32 only
    assert plots.power_bars(report.rows, tmp_path / "p.png", "t").stat().st_size > 1000
