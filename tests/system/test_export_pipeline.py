"""Export end to end on a stand-in composed model: ONNX + parity, fp16, int8 (Q/DQ), bundle, inspect.

The stand-in (tests/fixtures/export_standin.py) has the real composed model's I/O and the op
types int8 must handle (conv, LayerNorm, attention softmax, residual add), so this runs the
whole export in seconds; the smoke-recipe test runs it on a real fit.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from export_standin import standin_source

from bridge_edge.errors import BundleVerificationError, ConfigError
from bridge_edge.export.bundle import load_bundle
from bridge_edge.export.calibration import CalibrationRecipe, WindowSelection
from bridge_edge.export.pipeline import export_bundle


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("export") / "standin"
    recipe = CalibrationRecipe(windows=WindowSelection(count=48))
    source = standin_source()
    manifest = export_bundle(source, out, ("fp32", "fp16", "int8"), recipe, version="0.0.1")
    return out, manifest, source


def test_bundle_layout_and_manifest(exported):
    out, manifest, _ = exported
    names = {p.name for p in out.iterdir()}
    assert {
        "manifest.json",
        "model.fp32.onnx",
        "model.fp16.onnx",
        "model.int8.onnx",
        "golden.npz",
        "calibration.npz",
        "licenses",
    } <= names
    b = load_bundle(out)
    assert b.verified and b.version == "0.0.1" and b.manifest.precisions == ["fp32", "fp16", "int8"]
    assert [t.name for t in b.manifest.onnx.inputs] == ["ppg"]
    assert [t.name for t in b.manifest.onnx.outputs] == ["probs", "bridge"]
    assert b.manifest.onnx.inputs[0].shape == ["batch", 200]
    assert b.manifest.onnx.opset == 18 and b.manifest.onnx.exporter in ("dynamo", "torchscript")
    assert "licenses/standin-NOTICE.txt" in b.manifest.files


def test_export_leaves_the_composed_module_hook_free(exported):
    _, _, source = exported
    assert not source.module.bridge._forward_hooks


def test_parity_recorded_and_golden_reruns_in_plain_onnxruntime(exported):
    out, manifest, source = exported
    assert manifest.parity["max_abs_diff"] <= 1e-4
    b = load_bundle(out)
    g = b.golden()
    assert g.input.shape[0] >= 64 and g.input.dtype == np.float32
    assert set(g.labels.tolist()) == set(source.held_out.labelled()[0].y.tolist())  # every held-out class
    for precision in manifest.precisions:
        sess = ort.InferenceSession(str(b.onnx_path(precision)), providers=["CPUExecutionProvider"])
        got = sess.run(["probs"], {"ppg": g.input})[0]
        assert np.max(np.abs(got - g.outputs[precision])) <= manifest.golden["atol"][precision]
    # fp32 golden equals torch within the parity tolerance
    import torch

    with torch.inference_mode():
        ref = source.module(torch.from_numpy(g.input)).numpy()
    assert np.max(np.abs(ref - g.outputs["fp32"])) <= 1e-4


def test_dynamic_batch(exported):
    out, _, _ = exported
    sess = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    x = np.load(out / "golden.npz")["input"]
    for n in (1, 3, 17):
        assert sess.run(["probs"], {"ppg": x[:n]})[0].shape == (n, 3)


def test_fp16_keeps_fp32_io_and_int8_is_qdq(exported):
    out, manifest, _ = exported
    half = onnx.load(str(out / "model.fp16.onnx"))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    q = onnx.load(str(out / "model.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops
    # what TensorRT's explicit quantization accepts: int8 Q/DQ with zero points 0, no int32 (bias) DQ
    inits = {i.name: i for i in q.graph.initializer}
    for node in (n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")):
        zero_point = onnx.numpy_helper.to_array(inits[node.input[2]])
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        if node.input[0] in inits:
            assert inits[node.input[0]].data_type == onnx.TensorProto.INT8, node.name
    section = manifest.quantization
    assert section.quant_format == "QDQ" and section.activation_type == "QInt8"
    assert {"LayerNormalization", "Softmax", "Add"} <= set(section.op_types_excluded)
    assert "Conv" in section.op_types_quantized and section.attempts[-1]["meets_floor"]
    assert section.calibration_windows == 48
    assert len(np.load(out / "calibration.npz")["input"]) == 48


def test_int8_and_fp16_meet_the_accuracy_floor(exported):
    _, manifest, _ = exported
    fp32 = manifest.metrics["fp32"]
    for p in ("fp16", "int8"):
        m = manifest.metrics[p]
        assert m.agreement_with_fp32 >= 0.98
        assert fp32.macro_f1 - m.macro_f1 <= 0.01 and fp32.macro_auroc - m.macro_auroc <= 0.01
        assert 0.99 <= m.bridge_cosine_with_fp32 <= 1.0 + 1e-9
    assert manifest.metrics["fp32"].macro_f1 > 0.8  # the stand-in learned its task: metrics mean something


def test_inspect_json_and_exit_code_on_tampering(exported, tmp_path):
    out, _, _ = exported
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", "inspect", str(out), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verified"] is True and report["problems"] == [] and report["path"] == str(out)
    assert report["metrics"]["int8"]["agreement_with_fp32"] >= 0.98

    bad = Path(shutil.copytree(out, tmp_path / "bad"))
    data = bytearray((bad / "model.int8.onnx").read_bytes())
    data[100] ^= 0xFF
    (bad / "model.int8.onnx").write_bytes(bytes(data))
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", "inspect", str(bad), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    report = json.loads(proc.stdout)
    assert report["verified"] is False and report["problems"][0].startswith("model.int8.onnx")
    with pytest.raises(BundleVerificationError, match="model.int8.onnx"):
        load_bundle(bad)


def test_failed_export_leaves_the_old_bundle_in_place(exported, tmp_path):
    out, _, source = exported
    target = Path(shutil.copytree(out, tmp_path / "kept"))
    before = (target / "manifest.json").read_text()
    broken = standin_source()
    broken.held_out = broken.held_out.__class__(broken.held_out.x[:0], broken.held_out.y[:0])
    with pytest.raises(ConfigError, match="no labelled held-out windows"):
        export_bundle(broken, target, ("fp32",), CalibrationRecipe())
    assert (target / "manifest.json").read_text() == before
    assert not list(tmp_path.glob(".kept.*"))  # refused before any step: no work directory either


def test_committed_default_bundle_comes_from_the_shipped_default_recipe():
    """The embedded default is the export of `fit recipes/default.toml` (docs/architecture.md): the manifest
    carries the sha256 of the recipe the run was fitted with, and it must be today's recipe."""
    import hashlib

    root = Path(__file__).resolve().parents[2]
    manifest = root / "bridge_edge" / "assets" / "bundles" / "default" / "manifest.json"
    if not manifest.exists():
        pytest.skip("the default bundle is not built in this checkout (bridge_edge/assets/bundles/default)")
    recipe = root / "recipes" / "default.toml"
    expected = hashlib.sha256(recipe.read_bytes()).hexdigest()
    got = json.loads(manifest.read_text())["recipe_hash"]
    assert got == expected, (
        "recipes/default.toml changed since the default bundle was exported: refit and re-export"
    )


def _ort_optimized_ops(path, tmp_path) -> list[str]:
    """Op types of the graph ONNX Runtime actually runs (after its CPU graph optimisations)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / f"{Path(path).stem}.optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]


def test_int8_has_a_tensorrt_file_and_an_ort_cpu_file_named_in_the_manifest(exported, tmp_path):
    out, manifest, _ = exported
    assert manifest.targets == {
        "model.fp32.onnx": "any",
        "model.fp16.onnx": "any",
        "model.int8.onnx": "tensorrt",
        "model.int8.ort-cpu.onnx": "ort-cpu",
    }
    (variant,) = manifest.variants
    assert (variant.precision, variant.target, variant.file) == ("int8", "ort-cpu", "model.int8.ort-cpu.onnx")
    # uint8 asymmetric activations, per-channel int8 weights: the layout ORT's x86 int8 kernels take
    q = onnx.load(str(out / variant.file))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    act_zero_points = [
        inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits
    ]
    assert act_zero_points and all(z.dtype == np.uint8 for z in act_zero_points)
    assert any(
        inits[n.input[1]].size > 1
        for n in q.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    )
    assert variant.quantization.activation_type == "QUInt8" and variant.quantization.per_channel
    assert variant.fusions, "ORT's transformer fusions matched nothing in the stand-in's LayerNorm/attention"
    # what ORT runs: every convolution of the ort-cpu file is an int8 kernel; none is float
    ops = _ort_optimized_ops(out / variant.file, tmp_path)
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops
    # accuracy per file, held to the same floor as the TensorRT file
    fp32 = manifest.metrics["fp32"]
    assert variant.metrics.agreement_with_fp32 >= 0.98
    assert fp32.positive_auroc - variant.metrics.positive_auroc <= 0.01
    assert manifest.golden["atol"]["int8-ort-cpu"] == manifest.golden["atol"]["int8"]


def test_the_ort_engine_runs_the_ort_cpu_file_and_tensorrt_keeps_its_own(exported):
    from bridge_edge.runtime.engines import select_engine

    out, _, _ = exported
    b = load_bundle(out, selftest="all")  # the golden self-test covers the variant too
    assert b.onnx_path("int8", target="ort-cpu").name == "model.int8.ort-cpu.onnx"
    assert b.onnx_path("int8", target="tensorrt").name == "model.int8.onnx"  # what build-engine builds
    assert b.onnx_path("int8").name == "model.int8.onnx"
    assert b.onnx_path("fp32", target="ort-cpu").name == "model.fp32.onnx"  # no variant: the precision's file
    choice = select_engine("ort", b, "int8", threads=1)
    assert "model.int8.ort-cpu.onnx" in choice.engine.description
    g = b.golden()
    got = choice.engine.infer(g.input)
    assert np.max(np.abs(got - g.outputs["int8-ort-cpu"])) <= b.manifest.golden["atol"]["int8"]
    choice.engine.close()


def test_int8_targets_tensorrt_only_makes_no_second_file(tmp_path):
    out = tmp_path / "trt_only"
    recipe = CalibrationRecipe(windows=WindowSelection(count=48))
    manifest = export_bundle(
        standin_source(), out, ("fp32", "int8"), recipe, version="0.0.2", int8_targets=("tensorrt",)
    )
    assert manifest.variants == [] and not (out / "model.int8.ort-cpu.onnx").exists()
    assert manifest.targets["model.int8.onnx"] == "tensorrt"
    assert manifest.torch is None  # a stand-in module has no composition to rebuild it from


def test_requantize_adds_the_ort_cpu_file_to_an_existing_bundle(tmp_path):
    from bridge_edge.export.bundle import sha256_file
    from bridge_edge.export.requantize import requantize_bundle

    old = tmp_path / "old"
    recipe = CalibrationRecipe(windows=WindowSelection(count=48))
    export_bundle(
        standin_source(), old, ("fp32", "int8"), recipe, version="0.0.3", int8_targets=("tensorrt",)
    )
    before = {n: sha256_file(old / n) for n in ("model.fp32.onnx", "model.int8.onnx", "calibration.npz")}
    new = tmp_path / "new"
    manifest = requantize_bundle(old, new, recipe, version="0.0.3-ort")
    b = load_bundle(new, selftest="all")
    assert b.verified and b.version == "0.0.3-ort"
    assert {n: sha256_file(new / n) for n in before} == before  # what was there is untouched
    (variant,) = manifest.variants
    assert variant.file == "model.int8.ort-cpu.onnx" and (new / variant.file).is_file()
    # without --run-dir the accuracy is measured on the golden windows, and says so by its size
    assert variant.metrics.n_windows == len(b.golden().input) and variant.metrics.agreement_with_fp32 >= 0.95
    assert manifest.targets["model.int8.onnx"] == "tensorrt" and manifest.targets[variant.file] == "ort-cpu"


def test_a_failed_int8_step_reruns_alone(tmp_path, monkeypatch):
    """Steps (export.steps): after int8 fails, the same export resumes at int8: the ONNX export
    and fp16 conversion are not run again, and the bundle it then writes verifies."""
    import torch

    from bridge_edge.errors import ModelError
    from bridge_edge.export import fp16, model_steps, onnx_export

    torch.set_num_threads(1)
    out = tmp_path / "resumed"
    recipe = CalibrationRecipe(windows=WindowSelection(count=48))
    source = standin_source()

    def failing_int8(*args, **kwargs):
        raise ModelError("int8 misses the accuracy floor (simulated)", reason="floor")

    with monkeypatch.context() as m:
        m.setattr(model_steps, "int8_within_floor_of", failing_int8)
        with pytest.raises(ModelError, match="simulated"):
            export_bundle(source, out, ("fp32", "fp16", "int8"), recipe, version="0.0.2")
    work = tmp_path / ".resumed.export"
    assert not out.exists() and {p.name for p in (work / "steps").iterdir()} == {"onnx.json", "fp16.json"}

    def never(*args, **kwargs):
        raise AssertionError("a step with an unchanged key ran again")

    monkeypatch.setattr(onnx_export, "export_onnx", never)
    monkeypatch.setattr(fp16, "convert_fp16", never)
    manifest = export_bundle(source, out, ("fp32", "fp16", "int8"), recipe, version="0.0.2")
    b = load_bundle(out)
    assert b.verified and b.manifest.precisions == ["fp32", "fp16", "int8"]
    assert manifest.metrics["int8"].agreement_with_fp32 >= 0.98 and manifest.quantization is not None
    assert not work.exists()  # a finished export leaves only the bundle
