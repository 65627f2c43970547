"""Post-export ONNX graph rewrites; each one exact, each one for a named reason.

1. ``zero_pads_before_maxpool_as_concat``: ONNX Runtime (seen in 1.31, every optimisation level
   above DISABLE_ALL) fuses a constant zero ``Pad`` into a following ``MaxPool``'s ``pads``
   attribute. MaxPool pads act as -inf, so a window that covered the zero padding now takes
   the maximum of the real samples only: PaPaGei's 'same'-padded max-pool shortcut on an odd
   length came out up to 1.9 off. The rewrite concatenates explicit zeros instead
   (``0 * slice(x)``), which no optimiser folds into the pool. Values are unchanged.
2. ``name_batch_dim``: both exporters' symbolic batch dims get the one name ``batch``.
"""

from __future__ import annotations

import numpy as np


def _constant_values(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def zero_pads_before_maxpool_as_concat(model) -> int:
    """Rewrite every constant-mode, zero-valued, non-negative Pad that feeds a MaxPool; returns how many."""
    graph = model.graph
    constants = _constant_values(graph)
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    new_nodes, rewritten = [], 0
    for node in graph.node:
        if _is_fusable_zero_pad(node, constants, consumers):
            new_nodes += _pad_as_concat(graph, node, constants[node.input[1]])
            rewritten += 1
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    if rewritten:  # the replaced Pads' constant pads are now unused: drop them (ORT warns otherwise)
        used = {i for n in graph.node for i in n.input}
        unused = [i for i in graph.initializer if i.name not in used]
        for init in unused:
            graph.initializer.remove(init)
    return rewritten


def _is_fusable_zero_pad(node, constants: dict, consumers: dict) -> bool:
    if node.op_type != "Pad" or len(node.input) < 2 or len(node.input) > 3 or node.input[1] not in constants:
        return False
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    value = node.input[2] if len(node.input) > 2 else ""
    zero_value = not value or (value in constants and not np.any(constants[value]))
    feeds_maxpool = any(c.op_type == "MaxPool" for c in consumers.get(node.output[0], []))
    return (
        mode == b"constant" and zero_value and feeds_maxpool and bool(np.all(constants[node.input[1]] >= 0))
    )


def _pad_as_concat(graph, node, pads: np.ndarray) -> list:
    """Nodes computing the same tensor as ``node``: per padded axis, Concat(0*Slice(x), x, 0*Slice(x))."""
    from onnx import helper, numpy_helper

    rank = len(pads) // 2
    nodes, current = [], node.input[0]
    base = node.name or node.output[0]
    zero = numpy_helper.from_array(np.zeros((), np.float32), f"{base}_zero")
    graph.initializer.append(zero)
    for axis in range(rank):
        widths = {"begin": int(pads[axis]), "end": int(pads[axis + rank])}
        zeros = {}
        for side, width in widths.items():
            if width == 0:
                continue
            stem = f"{base}_{side}{axis}"
            ints = [
                numpy_helper.from_array(np.array(v, np.int64), f"{stem}_{k}")
                for k, v in (("starts", [0]), ("ends", [width]), ("axes", [axis]))
            ]
            graph.initializer.extend(ints)
            nodes.append(
                helper.make_node(
                    "Slice", [current, *(t.name for t in ints)], [f"{stem}_slice"], name=f"{stem}_slice"
                )
            )
            nodes.append(
                helper.make_node("Mul", [f"{stem}_slice", zero.name], [f"{stem}_zeros"], name=f"{stem}_mul")
            )
            zeros[side] = f"{stem}_zeros"
        if zeros:
            out = f"{base}_axis{axis}"
            inputs = (
                [zeros[s] for s in ("begin",) if s in zeros]
                + [current]
                + [zeros[s] for s in ("end",) if s in zeros]
            )
            nodes.append(helper.make_node("Concat", inputs, [out], axis=axis, name=out))
            current = out
    nodes.append(helper.make_node("Identity", [current], [node.output[0]], name=f"{base}_as_concat"))
    return nodes


def name_batch_dim(model) -> None:
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_param = "batch"


def strip_build_metadata(model) -> int:
    """Drop the exporter's per-node stack traces: they name source paths of the build machine
    and would ship with every bundle. Computation is untouched. Returns how many were removed."""
    removed = 0
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if "stack_trace" not in p.key]
        removed += len(node.metadata_props) - len(keep)
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
    return removed
