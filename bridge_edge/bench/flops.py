"""FLOPs of an ONNX graph, counted from its shapes (ONNX shape inference at a fixed batch).

Counted: the multiply-accumulate operators, 2 FLOPs per MAC — Conv, ConvTranspose, MatMul,
Gemm and their quantized forms (ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul; a Q/DQ
graph keeps plain Conv/MatMul). Element-wise work, normalisation and softmax are left out: they
are a few percent of a conv/transformer network and memory-bound, not compute-bound. Operators
whose shapes cannot be inferred are listed in ``uncounted`` rather than guessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.errors import ModelError

# op type -> (index of the data input, index of the weight input)
CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


@dataclass(frozen=True)
class FlopCount:
    batch: int
    total: int
    by_op: dict[str, int]
    uncounted: list[str] = field(default_factory=list)  # "OpType:node_name" with unknown shapes

    @property
    def per_window(self) -> float:
        return self.total / self.batch


def _fix_batch(model, batch: int) -> None:
    """Give every symbolic input dimension a value (batch for the first, 1 otherwise)."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for i, dim in enumerate(dims):
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch if i == 0 else 1


def _shapes(model) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    graph = model.graph
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def _node_flops(node, shapes: dict[str, tuple[int, ...]]) -> int | None:
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type in CONV_OPS:
        w = shapes.get(node.input[CONV_OPS[node.op_type][1]])
        if out is None or w is None:
            return None
        return 2 * int(np.prod(out)) * int(np.prod(w[1:]))  # each output: C_in/groups × kernel MACs
    if node.op_type == "ConvTranspose":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if x is None or w is None:
            return None
        return 2 * int(np.prod(x)) * int(np.prod(w[1:]))  # each input scattered over C_out/g × kernel
    if node.op_type in MATMUL_OPS:
        a = shapes.get(node.input[MATMUL_OPS[node.op_type][0]])
        if out is None or a is None:
            return None
        return 2 * int(np.prod(out)) * int(a[-1])
    if node.op_type == "Gemm":
        a = shapes.get(node.input[0])
        if out is None or a is None:
            return None
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return 2 * int(np.prod(out)) * int(k)
    return 0


def count_flops(model_path: Path | str, batch: int = 1) -> FlopCount:
    import onnx

    try:
        model = onnx.load(str(model_path))
    except Exception as err:  # noqa: BLE001 - onnx raises several types for unreadable files
        raise ModelError(
            f"cannot read ONNX model {model_path}: {err}", model=str(model_path), reason=str(err)
        ) from err
    _fix_batch(model, batch)
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    by_op: Counter[str] = Counter()
    uncounted: list[str] = []
    for node in model.graph.node:
        flops = _node_flops(node, shapes)
        if flops is None:
            uncounted.append(f"{node.op_type}:{node.name}")
        elif flops:
            by_op[node.op_type] += flops
    return FlopCount(batch=batch, total=int(sum(by_op.values())), by_op=dict(by_op), uncounted=uncounted)
