from bridge_edge.errors import BridgeEdgeError, BundleVerificationError, SampleRateError


def test_errors_share_one_root_and_carry_structured_fields():
    err = SampleRateError("ppg at 64 Hz, expected 125 Hz", expected_hz=125.0, got_hz=64.0, where="x")
    assert isinstance(err, BridgeEdgeError)
    assert err.expected_hz == 125.0 and err.got_hz == 64.0
    assert str(err) == "ppg at 64 Hz, expected 125 Hz"
    tampered = BundleVerificationError("model.fp32.onnx: sha256 mismatch", file="model.fp32.onnx")
    assert tampered.file == "model.fp32.onnx"
    assert not hasattr(tampered, "nonexistent_field")
