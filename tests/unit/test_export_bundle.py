"""Bundle loading refuses every changed, truncated, missing or mislabelled file, by name."""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from export_standin import minimal_bundle

from bridge_edge.errors import BundleError, BundleVerificationError
from bridge_edge.export.bundle import extract_tar, inspect_bundle, load_bundle, write_tar
from bridge_edge.export.manifest import Manifest


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return minimal_bundle(tmp_path_factory.mktemp("pristine") / "mini")


@pytest.fixture
def bundle_dir(pristine, tmp_path):
    return Path(shutil.copytree(pristine, tmp_path / "mini"))


def test_intact_bundle_loads_verified_with_typed_manifest(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.verified and b.name == "mini" and b.version == "1"
    assert b.manifest.onnx.inputs[0].name == "ppg"
    assert b.onnx_path("fp32").is_file()
    g = b.golden()
    assert g.input.shape == (64, 6) and g.outputs["fp32"].shape == (64, 3)
    assert set(b.manifest.files) == {"model.fp32.onnx", "golden.npz", "calibration.npz"}


@pytest.mark.parametrize("name", ["model.fp32.onnx", "golden.npz", "calibration.npz"])
def test_one_byte_change_is_refused_naming_the_file(bundle_dir, name):
    path = bundle_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleVerificationError) as err:
        load_bundle(bundle_dir)
    assert err.value.file == name
    assert name in str(err.value) and "sha256" in str(err.value)


@pytest.mark.parametrize("name", ["model.fp32.onnx", "golden.npz"])
def test_truncated_file_is_refused_as_truncated(bundle_dir, name):
    path = bundle_dir / name
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(BundleVerificationError, match=f"{name}: truncated"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("name", ["model.fp32.onnx", "golden.npz"])
def test_missing_file_is_named(bundle_dir, name):
    # (calibration.npz may be absent: tests/unit/test_export_workstation_files.py)
    (bundle_dir / name).unlink()
    with pytest.raises(BundleVerificationError, match=f"{name}: missing"):
        load_bundle(bundle_dir)


def test_onnx_io_must_match_the_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["onnx"]["inputs"][0]["name"] = "ecg"
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleVerificationError, match="model.fp32.onnx: ONNX inputs"):
        load_bundle(bundle_dir)
    assert not inspect_bundle(bundle_dir).verified


def test_malformed_manifest_is_a_bundle_error(bundle_dir):
    (bundle_dir / "manifest.json").write_text('{"schema_version": 1, "name": "x"}')
    with pytest.raises(BundleError, match="malformed manifest"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    "key, value", [("weights", ["a"]), ("spec", {"a": 1}), ("tensors", "3"), ("parity_max_abs_diff", None)]
)
def test_torch_section_of_the_wrong_type_is_a_bundle_error(bundle_dir, key, value):
    # found by scripts/fuzz.py: a list as torch.weights raised TypeError in manifest_problems
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    raw["torch"] = {"weights": "torch/w", "spec": "torch/s", "tensors": 1, "parity_max_abs_diff": 0.0}
    assert Manifest.from_dict(raw).torch.weights == "torch/w"
    raw["torch"][key] = value
    with pytest.raises(BundleError, match=f"torch.{key} is"):
        Manifest.from_dict(raw)


def test_manifest_round_trips_and_keeps_unknown_keys(bundle_dir):
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    raw["future_field"] = {"a": 1}
    m = Manifest.from_dict(raw)
    assert m.to_dict() == raw


def test_tar_bundle_extracts_and_verifies(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tar = write_tar(bundle_dir, tmp_path / "mini.tar")
    b = load_bundle(tar)
    assert b.verified and b.path.is_relative_to(tmp_path / "cache")
    np.testing.assert_array_equal(b.golden().input, load_bundle(bundle_dir).golden().input)


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "mini/../../evil.txt"])
def test_tar_with_path_traversal_is_refused(tmp_path, member):
    import io

    tar_path = tmp_path / "evil.tar"
    info = tarfile.TarInfo(member)  # set by hand: tar.add() would strip a leading "/"
    info.size = 1
    with tarfile.open(tar_path, "w") as tar:
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BundleError, match="refusing tar member"):
        extract_tar(tar_path, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_with_symlink_is_refused(tmp_path):
    tar_path = tmp_path / "link.tar"
    info = tarfile.TarInfo("mini/manifest.json")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with tarfile.open(tar_path, "w") as tar:
        tar.addfile(info)
    with pytest.raises(BundleError, match="refusing tar member"):
        extract_tar(tar_path, tmp_path / "out")


def test_not_a_bundle_says_what_was_expected(tmp_path):
    with pytest.raises(BundleError, match="expected a directory with manifest.json"):
        load_bundle(tmp_path)


def test_missing_precision_is_named(bundle_dir):
    with pytest.raises(BundleError, match="no int8 model"):
        load_bundle(bundle_dir).onnx_path("int8")


def test_inspect_prints_a_summary_and_fails_on_problems(bundle_dir, capsys):
    from bridge_edge.cli import main

    assert main(["inspect", str(bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert "mini 1" in out and "verified" in out and "ppg float32" in out
    (bundle_dir / "golden.npz").write_bytes(b"")
    assert main(["inspect", str(bundle_dir)]) != 0
    assert "NOT VERIFIED" in capsys.readouterr().out
