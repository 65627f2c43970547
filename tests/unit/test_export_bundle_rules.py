"""Bundle verification beyond hashes: names, paths, listed files, shapes, the golden self-test,
tar bombs and TensorRT engine cache hashes. Each case is a bundle `run` could not use safely."""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from export_standin import minimal_bundle

from bridge_edge.errors import BundleError, BundleVerificationError
from bridge_edge.export.bundle import extract_tar, inspect_bundle, load_bundle, seal, sha256_file
from bridge_edge.export.manifest import Manifest


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return minimal_bundle(tmp_path_factory.mktemp("pristine") / "mini")


@pytest.fixture
def bundle_dir(pristine, tmp_path):
    return Path(shutil.copytree(pristine, tmp_path / "mini"))


def edit_manifest(bundle_dir: Path, change, reseal: bool = True) -> None:
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    change(raw)
    manifest = Manifest.from_dict(raw)
    if reseal:  # hashes made to match: only the new rules can catch it
        seal(bundle_dir, manifest)
    else:
        (bundle_dir / "manifest.json").write_text(manifest.to_json())


def problems_of(bundle_dir: Path) -> list[str]:
    inspected = inspect_bundle(bundle_dir)
    assert not inspected.verified
    with pytest.raises(BundleVerificationError):
        load_bundle(bundle_dir)
    return inspected.problems


def test_intact_minimal_bundle_passes_every_rule_and_the_golden_self_test(bundle_dir):
    assert inspect_bundle(bundle_dir).problems == []


def test_a_file_not_listed_in_the_manifest_is_refused(bundle_dir):
    (bundle_dir / "evil.py").write_text("import os\n")
    assert "evil.py: present in the bundle but not listed in the manifest" in problems_of(bundle_dir)


@pytest.mark.parametrize("entry", ["../../../etc/passwd", "/etc/passwd", "licenses/../../x", ".hidden"])
def test_a_files_entry_outside_the_bundle_is_refused_and_never_read(bundle_dir, entry):
    def add(raw):
        raw["files"][entry] = sha256_file(Path("/etc/hostname")) if Path("/etc/hostname").exists() else "0"
        raw["sizes"][entry] = 1

    edit_manifest(bundle_dir, add, reseal=False)
    problems = problems_of(bundle_dir)
    assert any(f"files entry {entry!r} is not a path inside the bundle" in p for p in problems)
    assert not any(p.startswith(f"{entry}: ") for p in problems)  # no hash or size check: not opened


def test_a_listed_symlink_leading_out_of_the_bundle_is_refused(bundle_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    (bundle_dir / "notes.txt").symlink_to(secret)
    edit_manifest(bundle_dir, lambda raw: None)  # seal hashes the link target: hashes agree
    assert "notes.txt: leads outside the bundle (symlink)" in problems_of(bundle_dir)


def test_labels_that_do_not_match_the_onnx_output_are_refused(bundle_dir):
    edit_manifest(bundle_dir, lambda raw: raw["output"]["labels"].pop())
    assert "output.labels has 2 labels but the ONNX output has 3 columns" in problems_of(bundle_dir)


@pytest.mark.parametrize(
    "weights", [[1.0, 2.0], [1.0, 0.0, 1.0], [1.0, -3.0, 1.0], [1.0, "2", 1.0], [1.0, True, 1.0]]
)
def test_class_weights_that_do_not_fit_the_labels_are_refused(bundle_dir, weights):
    edit_manifest(bundle_dir, lambda raw: raw["output"].update(class_weights=weights))
    assert any("expected one finite weight > 0 per label" in p for p in problems_of(bundle_dir))


def test_inspect_shows_the_operating_point_the_model_files_apply(bundle_dir, capsys):
    from bridge_edge.cli import main

    labels = json.loads((bundle_dir / "manifest.json").read_text())["output"]["labels"]
    weights = [0.25 if i == 1 else 1.0 for i in range(len(labels))]
    edit_manifest(bundle_dir, lambda raw: raw["output"].update(class_weights=weights))
    assert inspect_bundle(bundle_dir).problems == []
    assert main(["inspect", str(bundle_dir)]) == 0
    assert f"operating point: {labels[1]} x0.25 (applied inside the model files)" in capsys.readouterr().out


def test_golden_npz_must_be_listed(bundle_dir):
    def unlist(raw):
        del raw["files"]["golden.npz"], raw["sizes"]["golden.npz"]

    edit_manifest(bundle_dir, unlist, reseal=False)
    problems = problems_of(bundle_dir)
    assert any(p.startswith("golden.npz: not listed") for p in problems)
    assert "golden.npz: present in the bundle but not listed in the manifest" in problems


def test_a_changed_and_rehashed_golden_fails_the_self_test(bundle_dir):
    with np.load(bundle_dir / "golden.npz") as z:
        arrays = dict(z)
    arrays["output_fp32"] = arrays["output_fp32"][:, ::-1].copy()
    np.savez(bundle_dir / "golden.npz", **arrays)
    edit_manifest(bundle_dir, lambda raw: None)
    (problem,) = problems_of(bundle_dir)
    assert problem.startswith("model.fp32.onnx: golden self-test max |diff|")


def test_fp32_model_swapped_for_int8_and_rehashed_fails_the_self_test(bundle_dir, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(bundle_dir / "model.fp32.onnx", tmp_path / "int8.onnx", weight_type=QuantType.QInt8)
    shutil.copy(tmp_path / "int8.onnx", bundle_dir / "model.fp32.onnx")
    edit_manifest(bundle_dir, lambda raw: None)
    (problem,) = problems_of(bundle_dir)
    assert "golden self-test" in problem and "not the one the golden outputs came from" in problem


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("window_s", 5.0, "ONNX input ppg takes 6 samples but fs x window_s = 5"),
        ("window_s", 6.5, "= 6.5 samples; expected a whole number"),
        ("hop_s", 0.0, "input.hop_s is 0.0; expected a finite number > 0"),
        ("hop_s", 7.0, "expected 1 sample to window_s 6 s"),
        ("fs", float("nan"), "input.fs is nan"),
        ("fs", 2.0, "preprocess.fs_out 1 Hz differs from input.fs 2 Hz"),
    ],
)
def test_input_settings_run_would_crash_on_are_refused(bundle_dir, key, value, expected):
    edit_manifest(bundle_dir, lambda raw: raw["input"].__setitem__(key, value))
    assert any(expected in p for p in problems_of(bundle_dir))


@pytest.mark.parametrize(
    "precisions, expected",
    [
        ([], "expected a non-empty list"),
        (["fp32", "int4"], "precision 'int4' is unknown"),
        (["fp32", "fp32"], "without repeats"),
    ],
)
def test_bad_precision_lists_are_refused(bundle_dir, precisions, expected):
    edit_manifest(bundle_dir, lambda raw: raw.__setitem__("precisions", precisions))
    assert any(expected in p for p in problems_of(bundle_dir))


def test_inspect_cli_does_not_say_verified_for_a_bundle_run_would_crash_on(bundle_dir, capsys):
    from bridge_edge.cli import main

    edit_manifest(bundle_dir, lambda raw: raw["input"].__setitem__("window_s", 5.0))
    assert main(["inspect", str(bundle_dir)]) == 4
    out = capsys.readouterr().out
    assert "NOT VERIFIED" in out and "takes 6 samples" in out


@pytest.mark.parametrize("name", ["../../escaped", "-rf", ".hidden", "a b", "1.0`touch x`", "", "a/b"])
@pytest.mark.parametrize("field", ["name", "version"])
def test_unsafe_name_or_version_is_refused_at_load(bundle_dir, field, name):
    edit_manifest(bundle_dir, lambda raw: raw.__setitem__(field, name))
    assert any(p.startswith(f"{field} {name!r} is not a safe name") for p in problems_of(bundle_dir))


# -- tar ------------------------------------------------------------------------------------------


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_tar_gz_bomb_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_EDGE_MAX_BUNDLE_MB", "2")
    bomb = _tar_gz(tmp_path / "bomb.tar.gz", {"mini/manifest.json": b"{}", "mini/zeros.bin": bytes(3 << 20)})
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(BundleError, match="extracts to over 2097152 bytes"):
        extract_tar(bomb, tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("*.bin"))
    assert not any(p.name != "cache" for p in (tmp_path / "cache").iterdir())  # no half extraction


def test_a_tar_with_too_many_members_is_refused(tmp_path):
    many = _tar_gz(tmp_path / "many.tar.gz", {f"mini/f{i}": b"x" for i in range(300)})
    with pytest.raises(BundleError, match="more than 256 members"):
        extract_tar(many, tmp_path / "cache")


def test_a_corrupt_tar_gz_is_one_bundle_error(tmp_path):
    good = _tar_gz(tmp_path / "ok.tar.gz", {"mini/a": os.urandom(4096)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(BundleError, match="cannot extract the bundle tar"):
        extract_tar(cut, tmp_path / "cache")


def test_inspect_shows_the_positive_label_auroc_named_as_such(bundle_dir, capsys):
    """An older manifest's keys (``auroc`` the macro, ``auroc_positive``), read as the new names."""
    from bridge_edge.cli import main

    def metrics(raw):
        for key in ("positive_auroc", "macro_auroc"):
            raw["metrics"]["fp32"].pop(key)
        raw["metrics"]["fp32"].update(auroc=0.5, auroc_positive=0.746)

    edit_manifest(bundle_dir, metrics)
    assert main(["inspect", str(bundle_dir)]) == 0
    header, row = capsys.readouterr().out.splitlines()[-3:-1]
    assert "afib AUROC" in header and "macro AUROC" in header
    cells = dict(zip(["precision", "target", "size", "f1", "pos", "macro"], row.split()))
    assert cells["pos"] == "0.7460" and cells["macro"] == "0.5000" and cells["target"] == "any"
    assert header.index("afib AUROC") < header.index("macro AUROC")


def _with_variant(bundle_dir: Path) -> None:
    """A per-target variant of fp32 (the same graph under the variant's name) with its golden output."""
    shutil.copy(bundle_dir / "model.fp32.onnx", bundle_dir / "model.fp32.ort-cpu.onnx")
    with np.load(bundle_dir / "golden.npz") as z:
        arrays = dict(z)
    np.savez(bundle_dir / "golden.npz", **arrays, **{"output_fp32-ort-cpu": arrays["output_fp32"]})

    def change(raw):
        metrics = raw["metrics"]["fp32"]
        raw["variants"] = [
            {"precision": "fp32", "target": "ort-cpu", "file": "model.fp32.ort-cpu.onnx", "metrics": metrics}
        ]
        raw["targets"] = {"model.fp32.onnx": "any", "model.fp32.ort-cpu.onnx": "ort-cpu"}
        raw["golden"]["atol"]["fp32-ort-cpu"] = 1e-4

    edit_manifest(bundle_dir, change)


def test_a_per_target_variant_is_verified_and_self_tested(bundle_dir):
    _with_variant(bundle_dir)
    b = load_bundle(bundle_dir, selftest="all")
    assert b.verified and b.manifest.model_files() == {
        "fp32": "model.fp32.onnx",
        "fp32-ort-cpu": "model.fp32.ort-cpu.onnx",
    }
    assert b.manifest.target_of("model.fp32.ort-cpu.onnx") == "ort-cpu"
    # a changed variant whose golden output no longer matches is caught by the self-test
    with np.load(bundle_dir / "golden.npz") as z:
        arrays = dict(z)
    arrays["output_fp32-ort-cpu"] = arrays["output_fp32-ort-cpu"][:, ::-1].copy()
    np.savez(bundle_dir / "golden.npz", **arrays)
    edit_manifest(bundle_dir, lambda raw: None)  # re-hashed: only the self-test can tell
    assert any("model.fp32.ort-cpu.onnx: golden self-test" in p for p in problems_of(bundle_dir))


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda raw: raw["variants"][0].update(target="cuda"), "target 'cuda'"),
        (lambda raw: raw["variants"][0].update(precision="int8"), "precision 'int8' is not one of"),
        (lambda raw: raw["golden"]["atol"].pop("fp32-ort-cpu"), "golden.atol['fp32-ort-cpu']"),
        (lambda raw: raw["targets"].update({"model.gone.onnx": "any"}), "targets['model.gone.onnx']"),
        (
            lambda raw: raw.update(
                torch={
                    "weights": "torch/w.safetensors",
                    "spec": "torch/s.json",
                    "tensors": 1,
                    "parity_max_abs_diff": 0.0,
                }
            ),
            "torch/w.safetensors: the torch reference",
        ),
    ],
)
def test_variant_and_target_rules(bundle_dir, change, expected):
    _with_variant(bundle_dir)
    edit_manifest(bundle_dir, change)
    assert any(expected in p for p in problems_of(bundle_dir)), problems_of(bundle_dir)


def test_a_bundle_without_targets_reads_as_before(bundle_dir):
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    for key in ("targets", "variants", "torch"):
        raw.pop(key, None)
    m = Manifest.from_dict(raw)
    assert m.variants == [] and m.torch is None and m.target_of("model.fp32.onnx") == "any"
    assert load_bundle(bundle_dir).verified


def test_inspect_reads_the_metric_names_new_manifests_write(bundle_dir, capsys):
    from bridge_edge.cli import main

    def metrics(raw):
        raw["metrics"]["fp32"].update(positive_auroc=0.746, macro_auroc=0.5)

    edit_manifest(bundle_dir, metrics)
    written = json.loads((bundle_dir / "manifest.json").read_text())["metrics"]["fp32"]
    assert written["positive_auroc"] == 0.746 and "auroc_positive" not in written and "auroc" not in written
    assert main(["inspect", str(bundle_dir)]) == 0
    row = capsys.readouterr().out.splitlines()[-2].split()
    assert row[4:6] == ["0.7460", "0.5000"]


def test_the_shipped_bundle_writes_the_one_metric_vocabulary_and_round_trips():
    raw = json.loads((load_bundle("default").path / "manifest.json").read_text())
    written = raw["metrics"]["fp32"]
    assert "auroc_positive" not in written and "auroc" not in written  # 0.7.0 on: the new names only
    m = load_bundle("default").manifest.metrics["fp32"]
    assert m.positive_auroc == written["positive_auroc"] and m.macro_auroc == written["macro_auroc"]
    again = Manifest.from_dict(json.loads(load_bundle("default").manifest.to_json()))
    assert again.metrics == load_bundle("default").manifest.metrics
    assert again.variants == load_bundle("default").manifest.variants
