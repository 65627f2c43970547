"""Issue 17, item 12: bad input on the command line is one typed line and a non-zero exit, never
a traceback; options out of range are refused; failed commands leave no empty directory."""

import json
import subprocess
import sys

import pytest

from bridge_edge.cli import main
from bridge_edge.errors import SourceURLError
from bridge_edge.outdirs import removed_on_failure


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("bridge-edge: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "url", ["sim://ppg?fs=inf", "sim://ppg?fs=nan", "sim://ppg?fs=-1", "sim://ppg?speed=inf"]
)
def test_a_non_finite_or_non_positive_rate_is_one_line(url, capsys):
    assert main(["run", "--source", url]) == 2
    assert "must be" in one_error_line(capsys.readouterr().err)


def test_debug_works_after_the_subcommand_too():
    with pytest.raises(SourceURLError):  # --debug re-raises: the traceback is shown
        main(["run", "--debug", "--source", "sim://ppg?fs=inf"])
    with pytest.raises(SourceURLError):
        main(["run", "--source", "sim://ppg?fs=inf", "--debug"])


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--source", "sim://ppg", "--seconds", "-1"],
        ["run", "--source", "sim://ppg", "--seconds", "0"],
        ["run", "--source", "sim://ppg", "--seconds", "nan"],
        ["run", "--source", "sim://ppg", "--threads", "0"],
        ["bench", "latency", "--engines", "foo"],
        ["bench", "latency", "--precisions", "fp8"],
        ["bench", "latency", "--batches", "0"],
        ["bench", "streams", "--threads", "0"],
    ],
)
def test_out_of_range_options_are_refused_before_anything_runs(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error: argument" in err and "Traceback" not in err


def test_the_torch_engine_without_a_run_dir_says_why(capsys):
    assert main(["run", "--source", "sim://ppg", "--engine", "torch"]) == 2
    assert "--run-dir" in one_error_line(capsys.readouterr().err)


def test_simulate_names_the_splits_it_leaves_empty(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "one"), "--subjects", "1", "--minutes", "0.1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["empty_splits"] == ["val", "pair", "test"]
    assert "splits val, pair, test are empty" in err
    assert main(["simulate", str(tmp_path / "none"), "--subjects", "0"]) == 2
    assert not (tmp_path / "none").exists()


def test_evaluate_on_an_empty_test_split_is_one_line(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the tiny bundle is written with the onnx package")
    pytest.importorskip("torch", reason="evaluate still imports the torch side (issue #18)")
    from tiny_bundle import make_tiny_bundle

    make_tiny_bundle(tmp_path / "bundle")
    assert main(["simulate", str(tmp_path / "one"), "--subjects", "1", "--minutes", "0.2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "bundle"), "--data", str(tmp_path / "one")]) == 2
    assert "split 'test'" in one_error_line(capsys.readouterr().err)


def test_a_failed_fit_or_record_removes_the_directory_it_created(tmp_path, capsys):
    pytest.importorskip("torch", reason="fit is the workstation side (the train extra)")
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n")
    assert main(["fit", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    assert main(["fit", str(bad), "--out", str(kept)]) == 2
    assert kept.is_dir()  # not created by the command: never removed
    # /dev/null exists but is no serial port: opening fails after the recording directory was made
    cmd = [
        sys.executable,
        "-m",
        "bridge_edge.cli",
        "record",
        "--source",
        "serial:///dev/null?format=csv&fs=100",
    ]
    r = subprocess.run(
        [*cmd, "--out", str(tmp_path / "rec"), "--seconds", "1"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "cannot open serial port /dev/null" in one_error_line(r.stderr)
    assert not (tmp_path / "rec").exists()


def test_a_directory_with_results_is_kept(tmp_path):
    with pytest.raises(RuntimeError), removed_on_failure(tmp_path / "a", has_results=lambda d: True) as d:
        d.mkdir()
        raise RuntimeError("late failure")
    assert (tmp_path / "a").is_dir()
    with pytest.raises(RuntimeError), removed_on_failure(tmp_path / "b") as d:
        d.mkdir()
        (d / "partial.txt").write_text("x")
        raise RuntimeError("early failure")
    assert not (tmp_path / "b").exists()
