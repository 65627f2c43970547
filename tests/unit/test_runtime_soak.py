"""The soak, CI-sized (docs/runtime.md, "Soak"): three framed sensors with a NaN burst, a reboot
and an unplug every 15 s of stream time, 30 s each at 20x real time, through the real frame
decoder, pipeline and ONNX Runtime. ``scripts/soak.py --minutes 30`` is the full run."""

import pytest
from tiny_bundle import make_tiny_bundle

from bridge_edge.runtime.soak import fault_schedule, run_soak

pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")


def test_fault_schedule_leaves_room_for_the_window_after_each_fault():
    faults = fault_schedule(60.0, 15.0, nan_s=0.5, unplug_s=1.0, tail_s=6.0)
    assert [f.kind for f in faults[:3]] == ["nan", "reset", "unplug"]
    assert all(f.end_s + 6.0 < 60.0 for f in faults)


def test_three_faulty_streams_every_sample_counted_and_labels_back_after_every_fault(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "tiny", fs=125.0, window_s=4.0, hop_s=1.0)
    report = run_soak(
        bundle,
        minutes=0.5,
        streams=3,
        every_s=15.0,
        speed=20.0,
        sample_every_s=2.0,
        warmup_s=5.0,
        nan_s=0.5,
        unplug_s=1.0,
    )
    s = report.summary
    for stream in report.streams:  # sent + missing + NaN == the sensor's time axis, exactly
        truth = stream["truth"]
        assert stream["accounted"], stream
        # unplugs exactly; a reboot's outage is estimated from arrivals (0 unless the host lagged)
        assert stream["gap_samples"] == truth["unplugged"] + stream["estimated_at_reset"]
        assert truth["unplugged"] > 0
        assert stream["nonfinite_samples"] == stream["source_nonfinite"] == truth["nan"] > 0
        assert stream["clock_resets"] == truth["resets"] > 0  # a reboot is a reset, not a phantom gap
    assert s["all_samples_accounted"] and s["labels_resumed_after_every_fault"]
    resets = [f for f in report.faults if f["kind"] == "reset"]
    assert len(resets) == sum(st["truth"]["resets"] for st in report.streams) == s["resets_injected"]
    # labels come back with the first window that starts after the fault: window + one hop at most
    assert s["max_resume_s"] <= 4.0 + 1.0
    assert s["clock_reset_events"] == 2 * s["resets_injected"]  # decoder's and clock fit's report
    assert s["windows_skipped"]["nonfinite"] > 0 and report.series["rss_mb"]
