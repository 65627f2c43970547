"""The rhythm suite on an install without the workstation extras: it says what is missing."""

import json
import sys

import pytest

from bridge_edge.checks import report as suite_report
from bridge_edge.checks.rhythm_suite import CaseResult, SuiteReport
from bridge_edge.errors import DatasetNotFoundError
from bridge_edge.signals import dev_recordings


def _fixed_shape_only() -> SuiteReport:
    return SuiteReport(
        "b 0", "ort", "int8", [CaseResult("fixed_shape", "afib", "as_recorded", "sim", 10, 0, 9, None)]
    )


def test_a_recording_without_its_package_or_h5py_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(dev_recordings, "package_dir", lambda package: None)
    with pytest.raises(DatasetNotFoundError, match="biosignalsnotebooks data file"):
        dev_recordings.load_dev_recording("bsn/bvp_rest")
    # the file is there but h5py is not: still the error the suite skips, naming what to install
    found = tmp_path / "notebook_files" / "osf_files" / "signal_samples" / "bvp_rest.h5"
    found.parent.mkdir(parents=True)
    found.write_bytes(b"")
    monkeypatch.setattr(dev_recordings, "package_dir", lambda package: tmp_path)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DatasetNotFoundError, match="needs h5py"):
        dev_recordings.load_dev_recording("bsn/bvp_rest")


def test_the_table_says_when_no_development_recording_is_installed():
    assert "none installed" in suite_report.text_table(_fixed_shape_only())


def test_without_matplotlib_the_json_is_written_and_the_picture_skipped(tmp_path, monkeypatch, capsys):
    import bridge_edge.export.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "load_bundle", lambda name: name)
    monkeypatch.setattr(suite_report, "run_suite", lambda bundle, **kw: _fixed_shape_only())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    suite_report.run_rhythm_suite_command(
        "b", engine="ort", precision="auto", quick=True, out=str(tmp_path), as_json=False
    )
    assert json.loads((tmp_path / suite_report.SUITE_JSON).read_text())["bundle"] == "b 0"
    assert not (tmp_path / suite_report.SUITE_PNG).exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_the_model_alone_is_reported_beside_what_the_runtime_shows():
    cases = [
        CaseResult("resequenced", "ectopic", v, "rec", 20, 0, 1, None, None, model)
        for v, model in (("as_recorded", 4), ("x0.8", 6))
    ] + [CaseResult("dev_recordings", "sinus", "as_recorded", "rec", 10, 2, 0, None, 0, 1)]
    report = SuiteReport("b 0", "ort", "int8", cases)
    assert report.share("resequenced", "ectopic") == 0.05
    assert report.share("resequenced", "ectopic", model="model_alone") == 0.2
    data = report.as_dict()
    assert data["summary"]["resequenced/ectopic/x0.8"] == {
        "bundle": 0.05,
        "model_alone": 0.3,
        "rr_timing": None,
    }
    assert data["targets"]["resequenced_ectopic_false_af"]["met"] is True
    assert data["targets_model_alone"]["resequenced_ectopic_false_af"]["met"] is False
    assert data["targets_model_alone"]["dev_each_false_af"]["value"] == 0.125  # 1 of 8 scored
    assert "the model alone" in suite_report.text_table(report)
    # without the rule's counts there is no model-alone column to report
    assert _fixed_shape_only().as_dict()["targets_model_alone"] is None
