"""int8 export of a tiny run: calibration batches ORT can stack, and floors one window can meet."""

import numpy as np
import pytest
from export_standin import minimal_bundle

from bridge_edge.export.accuracy import floor_for_size
from bridge_edge.export.calibration import AccuracyFloor, QuantSettings
from bridge_edge.export.int8 import even_batch, quantize_int8


@pytest.mark.parametrize("method", ["Percentile", "Entropy", "MinMax"])
def test_histogram_calibration_of_a_window_count_that_is_not_a_batch_multiple(tmp_path, method):
    # 22 windows: the smoke run's whole pair split. In batches of 16 the last one holds 6, and
    # ORT's histogram calibrators failed to stack them ("inhomogeneous shape").
    bundle = minimal_bundle(tmp_path / "mini")
    windows = np.random.default_rng(0).standard_normal((22, 6)).astype(np.float32)
    settings = QuantSettings(calibrate_method=method, exclude_op_types=(), exclude_activation_matmuls=False)
    result = quantize_int8(bundle / "model.fp32.onnx", tmp_path / "int8.onnx", windows, settings)
    assert result.path.is_file() and "MatMul" in result.op_types_quantized


def test_even_batch_splits_the_windows_into_equal_batches():
    for n in (1, 11, 16, 22, 37, 64, 256, 1000):
        b = even_batch(n, 16)
        assert 1 <= b <= 16 and n % b == 0
    assert even_batch(22, 16) == 11 and even_batch(256, 16) == 16


def test_floor_on_eleven_held_out_windows_is_one_window_wide():
    y = np.array([0] * 8 + [3] * 3)  # 8 sinus, 3 afib
    floor = floor_for_size(AccuracyFloor(), y)
    assert floor.min_agreement == pytest.approx(1 - 1 / 11)
    assert floor.max_macro_f1_drop == pytest.approx(1 / 3)
    assert floor.max_auroc_drop == pytest.approx(1 / 3)


def test_floor_on_a_full_held_out_set_is_the_recipe_floor():
    y = np.array([0] * 1200 + [3] * 462)  # the default bundle's held-out windows
    assert floor_for_size(AccuracyFloor(), y) == AccuracyFloor()
