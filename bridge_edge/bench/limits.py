"""Compute limits per precision, measured in the same run at the model's own shapes.

A "% of limit" is only honest against the limit of the arithmetic the engine actually does:
int8 convolutions on a CPU with VNNI/AMX run several times faster than its fp32 sgemm, so
dividing int8 work by the fp32 limit printed 154-222 % (docs/benchmarks.md). Here each
precision gets its own limit, the best of:

- fp32: numpy/torch sgemm (``roofline``) and ORT's float Conv and MatMul kernels at the
  model's heaviest Conv and MatMul shapes (single-operator graphs, same thread count);
- int8: ORT's QLinearConv (uint8 activations, per-channel int8 weights) and MatMulInteger
  (uint8 x int8) at the same shapes — the kernels the ``ort-cpu`` int8 file runs.

fp16 rows are held to the fp32 limit: ORT's CPU provider has no fp16 Conv/GEMM kernels on x86,
so an fp16 graph computes in fp32 behind Casts. The shapes come from the fp32 ONNX graph after
shape inference at batch 1 (``flops``), so the limit is what this CPU does with this model's
operators, not a textbook peak.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class KernelLimit:
    precision: str  # "fp32" | "int8"
    kernel: str  # "ort Conv", "ort QLinearConv", "ort MatMul", "ort MatMulInteger"
    shape: str  # human-readable operator shape
    threads: int
    gflops: float  # G(FL)OP/s, 2 per multiply-accumulate


@dataclass(frozen=True)
class ConvShape:
    c_in: int
    c_out: int
    length: int  # input length
    kernel: int
    group: int
    pads: tuple[int, int]
    stride: int
    dilation: int
    flops: int

    def describe(self) -> str:
        return f"Conv1d {self.c_in}->{self.c_out} k{self.kernel} L{self.length}" + (
            f" g{self.group}" if self.group > 1 else ""
        )


@dataclass(frozen=True)
class MatMulShape:
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    def describe(self) -> str:
        return f"MatMul {self.m}x{self.k} @ {self.k}x{self.n}"


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return list(a.ints) if a.ints else a.i
    return default


def heaviest_shapes(fp32_path: Path | str) -> tuple[ConvShape | None, MatMulShape | None]:
    """The Conv and the weight MatMul with the most FLOPs in the graph (batch 1)."""
    import onnx

    from bridge_edge.bench.flops import _fix_batch, _node_flops, _shapes

    model = onnx.load(str(fp32_path))
    _fix_batch(model, 1)
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    initializers = {i.name for i in model.graph.initializer}
    best_conv, best_mm = None, None
    for node in model.graph.node:
        flops = _node_flops(node, shapes) or 0
        if node.op_type == "Conv":
            x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
            if x is None or w is None or len(x) != 3 or (best_conv and best_conv.flops >= flops):
                continue
            pads = _attr(node, "pads", [0, 0])
            best_conv = ConvShape(
                c_in=x[1],
                c_out=w[0],
                length=x[2],
                kernel=w[2],
                group=_attr(node, "group", 1),
                pads=(pads[0], pads[-1]),
                stride=(_attr(node, "strides", [1]) or [1])[0],
                dilation=(_attr(node, "dilations", [1]) or [1])[0],
                flops=flops,
            )
        elif node.op_type == "MatMul" and node.input[1] in initializers:
            a, w = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a is None or w is None or len(w) != 2:
                continue
            shape = MatMulShape(m=int(np.prod(a[:-1])), k=w[0], n=w[1])
            if best_mm is None or shape.flops > best_mm.flops:
                best_mm = shape
    return best_conv, best_mm


def _conv_model(s: ConvShape, int8: bool):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w_shape = (s.c_out, s.c_in // s.group, s.kernel)
    attrs = {
        "group": s.group,
        "pads": list(s.pads),
        "strides": [s.stride],
        "dilations": [s.dilation],
        "kernel_shape": [s.kernel],
    }
    x_shape = [1, s.c_in, s.length]
    if not int8:
        w = numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w")
        b = numpy_helper.from_array(np.zeros(s.c_out, np.float32), "b")
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
        x_type = TensorProto.FLOAT
        inits = [w, b]
    else:
        inits = [
            numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
            numpy_helper.from_array(np.array(128, np.uint8), "xz"),
            numpy_helper.from_array(rng.integers(-127, 128, w_shape).astype(np.int8), "w"),
            numpy_helper.from_array(np.full(s.c_out, 0.01, np.float32), "ws"),
            numpy_helper.from_array(np.zeros(s.c_out, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.1, np.float32), "ys"),
            numpy_helper.from_array(np.array(128, np.uint8), "yz"),
            numpy_helper.from_array(np.zeros(s.c_out, np.int32), "b"),
        ]
        node = helper.make_node(
            "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs
        )
        x_type = TensorProto.UINT8
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", x_type, x_shape)],
        [helper.make_tensor_value_info("y", x_type, None)],
        inits,
    )
    feed = (
        rng.standard_normal(x_shape).astype(np.float32)
        if not int8
        else rng.integers(0, 256, x_shape).astype(np.uint8)
    )
    return _probe_model(graph), feed


def _matmul_model(s: MatMulShape, int8: bool):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if not int8:
        inits = [numpy_helper.from_array(rng.standard_normal((s.k, s.n)).astype(np.float32), "w")]
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        feed = rng.standard_normal((s.m, s.k)).astype(np.float32)
    else:
        inits = [
            numpy_helper.from_array(rng.integers(-127, 128, (s.k, s.n)).astype(np.int8), "w"),
            numpy_helper.from_array(np.array(128, np.uint8), "xz"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
        ]
        node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"])
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
        feed = rng.integers(0, 256, (s.m, s.k)).astype(np.uint8)
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("x", x_type, [s.m, s.k])],
        [helper.make_tensor_value_info("y", y_type, None)],
        inits,
    )
    return _probe_model(graph), feed


# The probes' opset and the IR version that came with it (onnx 1.13). onnx's own default IR is
# its newest, which older ONNX Runtime rejects: ORT 1.30 refused onnx 1.23's IR 14 on a GPU
# machine, and every kernel limit went unmeasured. IR 8 reads on every ORT the extras allow.
PROBE_OPSET, PROBE_IR_VERSION = 18, 8


def _probe_model(graph):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", PROBE_OPSET)])
    model.ir_version = PROBE_IR_VERSION
    return model


def _best_rate(model, feed: np.ndarray, flops: int, threads: int, seconds: float) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": feed})  # warm-up
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        sess.run(None, {"x": feed})
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def measure_kernels(fp32_path: Path | str, threads: int, seconds: float = 0.5) -> list[KernelLimit]:
    """ORT float and int8 kernels at the model's heaviest Conv and MatMul shapes."""
    conv, mm = heaviest_shapes(fp32_path)
    cases = []
    if conv is not None:
        cases += [("fp32", "ort Conv", conv, False), ("int8", "ort QLinearConv", conv, True)]
    if mm is not None:
        cases += [("fp32", "ort MatMul", mm, False), ("int8", "ort MatMulInteger", mm, True)]
    out = []
    for precision, kernel, shape, int8 in cases:
        model, feed = (_conv_model if isinstance(shape, ConvShape) else _matmul_model)(shape, int8)
        rate = _best_rate(model, feed, shape.flops, threads, seconds / max(len(cases), 1))
        out.append(KernelLimit(precision, kernel, shape.describe(), threads, round(rate, 2)))
    return out


def limits_by_precision(sgemm_gflops: float | None, kernels: list[KernelLimit]) -> dict[str, float | None]:
    """precision -> the limit its rows are held to (fp16 -> the fp32 one; see the module doc)."""
    fp32 = [k.gflops for k in kernels if k.precision == "fp32"] + ([sgemm_gflops] if sgemm_gflops else [])
    int8 = [k.gflops for k in kernels if k.precision == "int8"]
    limit32 = max(fp32) if fp32 else None
    return {"fp32": limit32, "fp16": limit32, "int8": max(int8) if int8 else None}
