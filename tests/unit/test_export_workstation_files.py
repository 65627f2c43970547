"""Workstation files (docs/bundles.md, "Workstation files"): the torch reference and the int8
calibration windows may be absent, as in a wheel install; where present they are verified by
hash like every other file, and nothing else may be absent or unlisted."""

import fnmatch
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from export_standin import minimal_bundle

from bridge_edge.errors import BundleError, BundleVerificationError
from bridge_edge.export import selftest
from bridge_edge.export.bundle import CALIBRATION_NAME, load_bundle, seal
from bridge_edge.export.manifest import TORCH_SPEC_NAME, TORCH_WEIGHTS_NAME, Manifest, TorchSection
from bridge_edge.runtime.engines import select_engine

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The minimal bundle plus a torch reference (stand-in bytes: only hashes are checked here)."""
    out = minimal_bundle(tmp_path_factory.mktemp("pristine") / "mini")
    (out / "torch").mkdir()
    (out / TORCH_WEIGHTS_NAME).write_bytes(np.arange(256, dtype=np.uint8).tobytes())
    (out / TORCH_SPEC_NAME).write_text('{"composed": {}, "omitted_keys": []}')
    manifest = Manifest.read(out / "manifest.json")
    manifest.torch = TorchSection(TORCH_WEIGHTS_NAME, TORCH_SPEC_NAME, tensors=1, parity_max_abs_diff=0.0)
    seal(out, manifest)
    return out


@pytest.fixture
def bundle_dir(pristine, tmp_path):
    return Path(shutil.copytree(pristine, tmp_path / "mini"))


def test_the_workstation_files_are_the_manifests_names():
    assert set(selftest.WORKSTATION_FILES) == {TORCH_WEIGHTS_NAME, TORCH_SPEC_NAME, CALIBRATION_NAME}


def test_a_complete_bundle_has_nothing_absent(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.verified and b.absent == [] and b.has_torch_weights()
    assert b.calibration().shape == (8, 6)


def test_a_bundle_without_its_workstation_files_verifies_and_says_they_are_absent(bundle_dir, capsys):
    shutil.rmtree(bundle_dir / "torch")
    (bundle_dir / CALIBRATION_NAME).unlink()
    b = load_bundle(bundle_dir, selftest="all")
    assert b.verified
    assert sorted(b.absent) == sorted(selftest.WORKSTATION_FILES)
    assert not b.has_torch_weights()
    with pytest.raises(BundleError, match="calibration.npz but this install leaves it out") as err:
        b.calibration()
    assert err.value.file == CALIBRATION_NAME
    from bridge_edge.export.commands import _inspect

    class Args:
        bundle, json = str(bundle_dir), True

    assert _inspect(Args()) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] and sorted(report["absent"]) == sorted(selftest.WORKSTATION_FILES)


@pytest.mark.parametrize("name", [TORCH_WEIGHTS_NAME, TORCH_SPEC_NAME, CALIBRATION_NAME])
def test_a_present_workstation_file_that_changed_is_refused(bundle_dir, name):
    path = bundle_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleVerificationError) as err:
        load_bundle(bundle_dir)
    assert err.value.file == name and "sha256" in str(err.value)
    report = selftest.run_selftest(bundle_dir)
    assert not report["ok"] and any(p.startswith(f"{name}:") for p in report["problems"])


def test_an_unlisted_file_beside_absent_workstation_files_is_still_refused(bundle_dir):
    shutil.rmtree(bundle_dir / "torch")
    (bundle_dir / "torch").mkdir()
    (bundle_dir / "torch" / "extra.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(
        BundleVerificationError, match="extra.safetensors: present in the bundle but not listed"
    ):
        load_bundle(bundle_dir)


def test_a_dangling_symlink_in_place_of_a_workstation_file_is_not_absent(bundle_dir):
    (bundle_dir / CALIBRATION_NAME).unlink()
    (bundle_dir / CALIBRATION_NAME).symlink_to(bundle_dir / "nowhere.npz")
    with pytest.raises(BundleVerificationError, match="calibration.npz"):
        load_bundle(bundle_dir)


def test_the_standalone_selftest_accepts_absent_workstation_files(bundle_dir):
    shutil.rmtree(bundle_dir / "torch")
    report = selftest.run_selftest(bundle_dir)
    assert report["ok"], report["problems"]
    assert sorted(report["absent"]) == sorted([TORCH_WEIGHTS_NAME, TORCH_SPEC_NAME])


def test_the_torch_engine_without_the_files_falls_back_and_says_why(bundle_dir):
    shutil.rmtree(bundle_dir / "torch")
    choice = select_engine("torch", load_bundle(bundle_dir), "fp32")
    try:
        assert choice.engine.name == "ort"
        assert any("wheel install leaves it out" in f for f in choice.fallbacks)
    finally:
        choice.engine.close()


def test_the_wheel_leaves_out_exactly_the_workstation_files():
    """pyproject.toml's exclude-package-data matches the workstation files of any bundle under
    assets/bundles/ and nothing else the default bundle ships."""
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools_cfg["exclude-package-data"]["bridge_edge"]
    assert setuptools_cfg["packages"]["find"]["namespaces"] is False  # else assets/ subfolders escape it
    default = ROOT / "bridge_edge" / "assets" / "bundles" / "default"
    listed = json.loads((default / "manifest.json").read_text())["files"]

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatch(f"assets/bundles/default/{name}", p) for p in patterns)

    assert sorted(n for n in listed if excluded(n)) == sorted(
        n for n in listed if n in selftest.WORKSTATION_FILES
    )
    assert all(excluded(n) for n in selftest.WORKSTATION_FILES)
