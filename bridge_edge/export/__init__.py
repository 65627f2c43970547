"""Export: ONNX + parity, fp16, int8 (Q/DQ), TensorRT engines and cache, bundles, deploy."""
