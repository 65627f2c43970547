"""The default bundle's pipeline end to end at CI size: `fit recipes/smoke.toml`, then `export`.

Same commands as the committed default bundle (recipes/default.toml, the built-in default
calibration), on the smoke recipe: real openecg old model, self-pretrained PPG encoder, real bridge.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def _smoke_recipe(tmp_path: Path, operating_point: str, bridge_input: str = "pooled") -> Path:
    """recipes/smoke.toml with another [operating_point] method (and [bridge] input)."""
    text = (ROOT / "recipes" / "smoke.toml").read_text()
    assert text.count('method = "old_model_calls"') == 1 and text.count("\n[bridge]\n") == 1
    text = text.replace('method = "old_model_calls"', f'method = "{operating_point}"')
    path = tmp_path / f"smoke_{operating_point}_{bridge_input}.toml"
    path.write_text(text.replace("\n[bridge]\n", f'\n[bridge]\ninput = "{bridge_input}"\n'))
    return path


@pytest.mark.slow
def test_smoke_recipe_fits_exports_and_verifies(tmp_path):
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    # int8 first, as trained: the smoke recipe's operating point (a weight of thousands on a
    # 30-second model) puts the call among near-tied outputs, where int8 noise flips calls and the
    # accuracy floor refuses the file on some fits. The weighted export is checked below.
    fit = _cli("fit", str(_smoke_recipe(tmp_path, "as_trained")), "--out", str(run))
    assert fit.returncode == 0, fit.stderr[-2000:]

    # no --calibration: the built-in default must suit a run of any size (docs/bundles.md)
    export = _cli(
        "export", str(run), "--out", str(bundle), "--precision", "fp32,fp16,int8",
        "--version", "0.0.0-smoke", "--json",
    )  # fmt: skip
    assert export.returncode == 0, export.stderr[-2000:]
    manifest = json.loads(export.stdout)
    assert manifest["name"] == "smoke" and manifest["parity"]["max_abs_diff"] <= 1e-4
    assert manifest["output"]["positive_label"] == "afib" and "licenses/openecg-LICENSE" in manifest["files"]
    assert manifest["output"]["class_weights"] is None  # as trained: nothing reweighed

    inspect = _cli("inspect", str(bundle), "--json")
    assert inspect.returncode == 0, inspect.stderr
    report = json.loads(inspect.stdout)
    assert report["verified"] is True and report["problems"] == []

    golden = np.load(bundle / "golden.npz")
    sess = ort.InferenceSession(str(bundle / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run(["probs"], {"ppg": golden["input"]})[0]
    assert np.max(np.abs(probs - golden["output_fp32"])) <= 1e-4
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    kept = next(a for a in manifest["quantization"]["attempts"] if a["meets_floor"])
    n = report["metrics"]["int8"]["n_windows"]
    assert kept["floor"]["min_agreement"] == pytest.approx(min(0.98, 1 - 1 / n))
    assert report["metrics"]["int8"]["agreement_with_fp32"] >= kept["floor"]["min_agreement"]
    total = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert total <= 20e6

    # the torch fp32 reference: rebuilt from the bundle alone, it reproduces the fp32 golden outputs
    assert manifest["torch"]["parity_max_abs_diff"] <= 1e-4
    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.runtime.engines import select_engine

    b = load_bundle(bundle, selftest="all")
    torch_engine = select_engine("torch", b, "fp32", threads=1).engine
    assert torch_engine.name == "torch" and "rebuilt from" in torch_engine.description
    assert np.max(np.abs(torch_engine.infer(golden["input"]) - golden["output_fp32"])) <= 1e-4
    # the exported head runs at the token rate (models.exact_rewrites): no Resize. The torch module
    # as written runs openecg's refine.0 and refine.2 (128 -> 128, 5 taps) and the 128 -> 6 head at
    # 5000 samples; the graph runs refine.0 on 500 tokens x 5 distinct phases (3 taps), refine.2 folded into
    # the head (128 -> 6, 5 taps) and the residual's head once per token. MACs x 2 FLOPs:
    import onnx

    assert "Resize" not in {n.op_type for n in onnx.load(str(bundle / "model.fp32.onnx")).graph.node}
    as_written = 128 * 128 * 5 * 5000 * 2 + 5000 * 128 * 6
    rewritten = 5 * 128 * 128 * 3 * 500 + 6 * 128 * 5 * 5000 + 500 * 128 * 6
    assert torch_engine.flops_beyond_export(golden["input"].shape[1]) == 2 * (as_written - rewritten)
    # per-target int8: the TensorRT layout and, where it met the floor, the ORT-CPU file ORT runs
    assert manifest["targets"]["model.int8.onnx"] == "tensorrt"
    for variant in manifest["variants"]:
        assert manifest["targets"][variant["file"]] == "ort-cpu" and (bundle / variant["file"]).is_file()
        assert variant["metrics"]["agreement_with_fp32"] >= kept["floor"]["min_agreement"]

    # the smoke recipe's own operating point: only that stage reruns; the weights are inside the
    # model files (the golden outputs are weighed) and the manifest and the torch rebuild carry them
    weighted = tmp_path / "weighted"
    fit = _cli("fit", str(ROOT / "recipes" / "smoke.toml"), "--out", str(run))
    assert fit.returncode == 0, fit.stderr[-2000:]
    export = _cli(
        "export",
        str(run),
        "--out",
        str(weighted),
        "--precision",
        "fp32",
        "--version",
        "0.0.1-smoke",
        "--json",
    )
    assert export.returncode == 0, export.stderr[-2000:]
    manifest = json.loads(export.stdout)
    spec = json.loads((run / "composed.json").read_text())
    assert manifest["output"]["class_weights"] == spec["class_weights"] != [1.0] * len(spec["labels"])
    golden_weighted = np.load(weighted / "golden.npz")
    assert not np.allclose(golden_weighted["output_fp32"], golden["output_fp32"], atol=1e-3)
    b = load_bundle(weighted, selftest="all")
    torch_engine = select_engine("torch", b, "fp32", threads=1).engine
    assert (
        np.max(np.abs(torch_engine.infer(golden_weighted["input"]) - golden_weighted["output_fp32"])) <= 1e-4
    )

    # a bridge that reads the encoder's tokens: the stages from select on rerun, and the bundle
    # carries it through ONNX and the torch rebuild alike
    tokens = tmp_path / "tokens"
    fit = _cli("fit", str(_smoke_recipe(tmp_path, "old_model_calls", "tokens")), "--out", str(run))
    assert fit.returncode == 0, fit.stderr[-2000:]
    spec = json.loads((run / "composed.json").read_text())
    assert spec["bridge"]["input"] == "tokens" and spec["bridge"]["t_in"] > 1
    export = _cli(
        "export", str(run), "--out", str(tokens), "--precision", "fp32", "--version", "0.0.2-smoke", "--json"
    )
    assert export.returncode == 0, export.stderr[-2000:]
    manifest = json.loads(export.stdout)
    assert manifest["parity"]["max_abs_diff"] <= 1e-4 and manifest["torch"]["parity_max_abs_diff"] <= 1e-4
    golden_tokens = np.load(tokens / "golden.npz")
    assert not np.allclose(golden_tokens["output_fp32"], golden_weighted["output_fp32"], atol=1e-4)
    torch_engine = select_engine("torch", load_bundle(tokens, selftest="all"), "fp32", threads=1).engine
    assert np.max(np.abs(torch_engine.infer(golden_tokens["input"]) - golden_tokens["output_fp32"])) <= 1e-4
