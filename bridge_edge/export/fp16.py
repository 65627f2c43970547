"""fp32 ONNX -> fp16 ONNX with fp32 I/O (casts at the graph edges).

Uses ONNX Runtime's converter (``onnxruntime.transformers.float16``), so no extra package is
needed. Values beyond the fp16 range are clamped by the converter (65504) and reported by it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Kept in fp32: their fp16 kernels either do not exist on ORT-CPU or lose accuracy in the
# variance/exponent (LayerNorm statistics, Softmax over long sequences). Transpose too: with
# fp16 Transposes, ORT 1.31's ORT_ENABLE_ALL graph optimisation segfaults at session creation
# (seen on attention graphs); a Transpose moves data only, so fp32 costs nothing in accuracy.
FP16_BLOCKED_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Erf", "Transpose")


def convert_fp16(
    fp32_path: Path, fp16_path: Path, blocked_ops: tuple[str, ...] = FP16_BLOCKED_OPS
) -> list[str]:
    """Write the fp16 model; returns the op types left in fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(fp32_path))
    present = {n.op_type for n in model.graph.node}
    blocked = sorted(present & set(blocked_ops))
    # The converter's default block list (ops without fp16 kernels) is extended, not replaced.
    half = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=list(DEFAULT_OP_BLOCK_LIST) + blocked,
    )
    onnx.save(half, str(fp16_path))
    return blocked
