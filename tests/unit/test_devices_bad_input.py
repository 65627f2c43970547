"""Bad input to the device parsers: each case is a typed, counted rejection, never a crash or a stall."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bridge_edge.devices import pmd
from bridge_edge.errors import FrameError


@pytest.mark.parametrize("timestamp", [1 << 62, 1 << 63, (1 << 64) - 1])
def test_pmd_timestamp_beyond_int64_time_is_a_typed_rejection(timestamp):
    data = b"\x00" + struct.pack("<Q", timestamp) + b"\x00" + bytes([1, 2, 3])
    with pytest.raises(FrameError) as err:
        pmd.parse_frame(data, sample_rate_hz=130)
    assert err.value.reason == "timestamp_out_of_range"
    assert pmd.parse_header(data).timestamp_ns == timestamp  # the header itself keeps the u64


def test_pmd_issue_repro_is_a_typed_rejection():
    with pytest.raises(FrameError):
        pmd.parse_frame(bytes.fromhex("00000000000000008000010203"), sample_rate_hz=130)


@pytest.mark.parametrize("width", [33, 62, 63, 64, 255])
def test_pmd_delta_block_wider_than_int32_is_a_typed_rejection(width):
    # compressed ACC type 1: 3 x 16-bit reference, then one block of `width` bits x 1 sample
    block = bytes([width, 1]) + b"\xff" * ((width * 3 + 7) // 8)
    data = b"\x02" + struct.pack("<Q", 10**18) + b"\x81" + b"\x01\x00" * 3 + block
    with pytest.raises(FrameError) as err:
        pmd.parse_frame(data, sample_rate_hz=50)
    assert err.value.reason == "bad_delta_width"


def test_pmd_delta_block_of_32_bits_still_decodes():
    block = bytes([32, 1]) + struct.pack("<3i", 1, -1, 7)
    data = b"\x02" + struct.pack("<Q", 10**18) + b"\x81" + struct.pack("<3h", 10, 20, 30) + block
    frame = pmd.parse_frame(data, sample_rate_hz=50)
    np.testing.assert_array_equal(frame.samples, [[10, 20, 30], [11, 19, 37]])
