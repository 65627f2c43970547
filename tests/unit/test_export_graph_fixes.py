"""The exported graph computes what torch computes, also where ONNX Runtime's pad fusion would not."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from bridge_edge.export.graph_fixes import zero_pads_before_maxpool_as_concat
from bridge_edge.export.onnx_export import export_onnx


class SamePadMaxPool(torch.nn.Module):
    """PaPaGei's shortcut: zero 'same' padding, then max-pool; plus a bridge so both outputs exist."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool1d(F.pad(x[:, None, :], (1, 2)), 2)
        return torch.softmax(self.bridge(h).mean(dim=1), dim=-1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    path = Path(tmp_path_factory.mktemp("fix")) / "m.onnx"
    x = -np.abs(np.random.default_rng(0).standard_normal((4, 25))).astype(np.float32)  # all < 0: pad wins
    export_onnx(SamePadMaxPool().eval(), x, path)
    return path, x


def test_zero_pad_before_maxpool_keeps_torch_semantics_under_full_optimisation(exported):
    path, x = exported
    with torch.inference_mode():
        want = SamePadMaxPool()(torch.from_numpy(x)).numpy()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {"ppg": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Pad" not in ops and "Concat" in ops and "MaxPool" in ops


def test_rewrite_leaves_other_pads_alone():
    from onnx import TensorProto, helper, numpy_helper

    pads = numpy_helper.from_array(np.array([0, 1, 0, 1], np.int64), "pads")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["p"]), helper.make_node("Relu", ["p"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])],
        [pads],
    )
    model = helper.make_model(graph)
    assert zero_pads_before_maxpool_as_concat(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Pad", "Relu"]


def test_build_metadata_is_stripped_and_nothing_else():
    from onnx import StringStringEntryProto, helper

    from bridge_edge.export.graph_fixes import strip_build_metadata

    node = helper.make_node("Relu", ["x"], ["y"])
    node.metadata_props.extend(
        [
            StringStringEntryProto(key="pkg.torch.onnx.stack_trace", value='File "/home/me/model.py"'),
            StringStringEntryProto(key="namespace", value="encoder.block0"),
        ]
    )
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    assert strip_build_metadata(model) == 1
    assert [p.key for p in model.graph.node[0].metadata_props] == ["namespace"]
