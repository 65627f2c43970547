"""Calibration recipes, stratified window choice, int8 fallback ladder, accuracy floor."""

from pathlib import Path

import numpy as np
import pytest

from bridge_edge.errors import ConfigError, ModelError
from bridge_edge.export import accuracy
from bridge_edge.export.calibration import AccuracyFloor, CalibrationRecipe, load_recipe, stratified_indices
from bridge_edge.export.model_steps import int8_attempts
from bridge_edge.export.pipeline import parse_precisions

ROOT = Path(__file__).resolve().parents[2]


def test_default_recipe_file_equals_the_built_in_default():
    from_file = load_recipe(ROOT / "calibration" / "default.toml")
    assert from_file.windows == CalibrationRecipe().windows
    assert from_file.quantization == CalibrationRecipe().quantization
    assert from_file.floor == CalibrationRecipe().floor


def test_every_committed_recipe_parses():
    for path in sorted((ROOT / "calibration").glob("*.toml")):
        assert load_recipe(path).quantization.quant_format == "QDQ"


@pytest.mark.parametrize(
    "text, key",
    [
        ('[quantization]\ncalibrate_method = "Magic"\n', "quantization.calibrate_method"),
        ("[windows]\ncount = 0\n", "windows.count"),
        ("[windows]\ncuont = 3\n", "windows.cuont"),
        ("[bogus]\n", "bogus"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, text, key):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert err.value.key == key


def test_stratified_selection_covers_every_label_evenly():
    labels = np.array([0] * 500 + [1] * 30 + [2] * 8)
    idx = stratified_indices(labels, 60, seed=1)
    assert len(idx) == 60 and len(set(idx.tolist())) == 60
    counts = np.bincount(labels[idx], minlength=3)
    assert counts[2] == 8 and counts[1] >= 20  # rare labels fully or evenly represented
    np.testing.assert_array_equal(idx, stratified_indices(labels, 60, seed=1))  # deterministic


def test_selection_takes_everything_when_asked_for_more():
    np.testing.assert_array_equal(stratified_indices(np.zeros(5), 10), np.arange(5))


def test_int8_ladder_starts_with_the_recipe_then_per_channel_then_fewer_ops():
    settings = CalibrationRecipe().quantization
    attempts = int8_attempts(settings, {"Conv", "MatMul", "Add", "Relu", "Softmax"})
    labels = [a[0] for a in attempts]
    assert labels[0] == "recipe" and attempts[0][1] == settings
    assert attempts[1][1].per_channel
    assert attempts[2][1].exclude_modules == ("new_model",)
    core = attempts[3][1]
    assert "Relu" in core.exclude_op_types and "Conv" not in core.exclude_op_types
    assert all(a[1].quant_format == "QDQ" for a in attempts)


def test_precision_list_needs_fp32_and_known_names():
    assert parse_precisions("int8,fp32") == ("fp32", "int8")
    for bad in ("fp16,int8", "fp32,int4"):
        with pytest.raises(ConfigError):
            parse_precisions(bad)


def test_metrics_and_floor():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    fp32 = np.eye(3)[y] * 0.8 + 0.1
    m32 = accuracy.precision_metrics(fp32, y, fp32, positive_index=1)
    assert m32.macro_f1 == 1.0 and m32.macro_auroc == 1.0 and m32.agreement_with_fp32 == 1.0
    flipped = fp32.copy()
    flipped[:10] = flipped[:10, ::-1]  # 10 of 200 windows change their prediction (some stay)
    m8 = accuracy.precision_metrics(flipped, y, fp32, positive_index=1)
    assert m8.agreement_with_fp32 < 0.98
    failures = accuracy.floor_failures(m8, m32, AccuracyFloor())
    assert any("agreement" in f for f in failures)
    assert accuracy.floor_failures(m32, m32, AccuracyFloor()) == []


def test_bridge_cosine_is_one_for_identical_and_lower_for_noisy():
    a = np.random.default_rng(0).standard_normal((20, 8, 4))
    p = np.full((20, 2), 0.5)
    y = np.array([0, 1] * 10)
    same = accuracy.precision_metrics(p, y, p, positive_index=None, bridge=a, fp32_bridge=a)
    noisy = accuracy.precision_metrics(p, y, p, positive_index=None, bridge=a + 0.5, fp32_bridge=a)
    assert same.bridge_cosine_with_fp32 == pytest.approx(1.0)
    assert noisy.bridge_cosine_with_fp32 < 0.99


def test_module_exclusion_finds_nodes_by_exporter_scope():
    from onnx import TensorProto, helper

    from bridge_edge.export.int8 import nodes_in_modules

    def node(name, scopes):
        n = helper.make_node("Relu", ["x"], [name], name=name)
        entry = n.metadata_props.add()
        entry.key, entry.value = "pkg.torch.onnx.name_scopes", repr(scopes)
        return n

    graph = helper.make_graph(
        [
            node("enc", ["", "composed", "composed.new_model.basicblock_list.0", "conv"]),
            node("brg", ["", "composed", "composed.bridge", "matmul"]),
            node("new_model_lookalike", ["", "composed", "composed.new_model_2"]),
            helper.make_node("Relu", ["x"], ["ts"], name="/composed/new_model/first_block_conv/Conv"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [],
    )
    assert nodes_in_modules(graph, ("new_model",)) == ["enc", "/composed/new_model/first_block_conv/Conv"]
    assert nodes_in_modules(graph, ()) == []


def _scoped_two_matmul_model(path: Path) -> None:
    """ppg (N, 8) -> MatMul from composed.new_model -> MatMul from composed.old_model -> probs, each node
    carrying the dynamo exporter's scope metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bridge_edge.export.onnx_export import INPUT_NAME

    def matmul(name, inputs, output, scope):
        n = helper.make_node("MatMul", inputs, [output], name=name)
        entry = n.metadata_props.add()
        entry.key, entry.value = (
            "pkg.torch.onnx.name_scopes",
            repr(["", "composed", f"composed.{scope}", name]),
        )
        return n

    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), n) for n in ("w1", "w2"))
    graph = helper.make_graph(
        [
            matmul("mm_new", [INPUT_NAME, "w1"], "h", "new_model"),
            matmul("mm_old", ["h", "w2"], "probs", "old_model"),
        ],
        "g",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 8])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_int8_module_exclusion_keeps_that_module_float_and_refuses_unknown_modules(tmp_path):
    """ORT's pre-processing drops the exporter's scopes, so modules are found in the exported file."""
    import dataclasses

    import onnx

    from bridge_edge.export.int8 import quantize_int8

    fp32 = tmp_path / "m.onnx"
    _scoped_two_matmul_model(fp32)
    windows = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    settings = dataclasses.replace(CalibrationRecipe().quantization, exclude_modules=("new_model",))
    result = quantize_int8(fp32, tmp_path / "m.int8.onnx", windows, settings)
    nodes = {n.name: n for n in onnx.load(str(result.path)).graph.node}
    assert "w1" in nodes["mm_new"].input  # the float weight: not quantized
    assert "w2" not in nodes["mm_old"].input  # the other module's weight went through Q/DQ
    assert result.nodes_excluded >= 1
    with pytest.raises(ModelError, match="match no node") as err:
        quantize_int8(
            fp32,
            tmp_path / "x.onnx",
            windows,
            dataclasses.replace(settings, exclude_modules=("no_such_block",)),
        )
    assert "no_such_block" in err.value.reason


def test_ort_cpu_target_settings_equal_the_ort_cpu_recipe():
    from bridge_edge.export.targets import ORT_CPU_SETTINGS, parse_int8_targets, target_of_settings

    q = load_recipe(ROOT / "calibration" / "ort_cpu.toml").quantization
    keys = ("activation_type", "weight_type", "per_channel", "activation_symmetric", "quant_format")
    assert {k: getattr(q, k) for k in keys} == {k: getattr(ORT_CPU_SETTINGS, k) for k in keys}
    assert target_of_settings(q) == "ort-cpu"
    assert target_of_settings(load_recipe(ROOT / "calibration" / "default.toml").quantization) == "tensorrt"
    assert parse_int8_targets("ort-cpu, tensorrt") == ("ort-cpu", "tensorrt")
    with pytest.raises(ConfigError, match="int8-targets"):
        parse_int8_targets("cuda")


def test_openecg_recipe_is_the_default_with_openecg_transformer_layers_in_float():
    """calibration/openecg.toml, the default bundle's: the shipped int8 files keep every openecg
    transformer layer float (their weight MatMuls read float weights, no DequantizeLinear)."""
    import dataclasses

    import onnx

    from bridge_edge.export.int8 import nodes_in_modules

    recipe = load_recipe(ROOT / "calibration" / "openecg.toml")
    default = CalibrationRecipe()
    assert recipe.quantization.exclude_modules == ("old_model.upper_transformer",)
    assert dataclasses.replace(recipe.quantization, exclude_modules=()) == default.quantization
    assert (recipe.windows, recipe.floor) == (default.windows, default.floor)

    bundle = ROOT / "bridge_edge" / "assets" / "bundles" / "default"
    layer = set(
        nodes_in_modules(
            onnx.load(str(bundle / "model.fp32.onnx")).graph, recipe.quantization.exclude_modules
        )
    )
    assert layer
    for name in ("model.int8.onnx", "model.int8.ort-cpu.onnx"):
        graph = onnx.load(str(bundle / name)).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        weight_matmuls = [n for n in graph.node if n.name in layer and n.op_type in ("MatMul", "Gemm")]
        assert weight_matmuls, name
        assert not [n.name for n in weight_matmuls if dequantized & set(n.input)], name
        assert any(n.op_type == "DequantizeLinear" for n in graph.node), name  # the rest is int8
