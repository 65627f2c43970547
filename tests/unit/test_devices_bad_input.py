"""Bad input to the device parsers: each case is a typed, counted rejection, never a crash or a stall."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bridge_edge.devices import frame, pmd
from bridge_edge.devices.base import SourceStats
from bridge_edge.devices.serial_streams import FrameStream, TextStream
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


# -- binary frames: a fake header claiming a long payload ------------------------------------------

FAKE_HEADER = frame.MAGIC + frame.HEADER.pack(1, 0, 0, 255, 2, frame.FMT_INT16)  # claims 1020 bytes
NOISE_WITH_MAGIC = b"\xa5\x5a\x01" * 12  # more spurious magic than any fixed look-ahead


def good_frames(seqs, n=10, channels=1):
    return [frame.encode_frame(s, s * 10_000, np.full((n, channels), s), frame.FMT_INT16) for s in seqs]


def test_good_frames_behind_a_stalled_fake_header_are_decoded_without_waiting():
    decoder = frame.FrameDecoder()
    got = decoder.feed(FAKE_HEADER + NOISE_WITH_MAGIC + b"".join(good_frames(range(1, 6))))
    assert [f.seq for f in got] == [1, 2, 3, 4, 5]
    region, frame_len = len(FAKE_HEADER + NOISE_WITH_MAGIC), len(good_frames([1])[0])
    assert decoder.counts.corrupt_frames == -(-region // frame_len)  # charged in frame-sized units
    assert decoder.counts.discarded_bytes == region


def test_unplug_behind_a_fake_header_recovers_the_good_frames_and_counts_the_rest():
    decoder = frame.FrameDecoder()
    tail = good_frames([6])[0][:9]  # cut by the unplug
    stream = FAKE_HEADER + b"".join(good_frames(range(1, 6))) + tail
    got = []
    for i in range(0, len(stream), 7):
        got += decoder.feed(stream[i : i + 7])
    decoder.flush()
    assert [f.seq for f in got] == [1, 2, 3, 4, 5]
    assert decoder.counts.corrupt_frames == 2  # the fake header; the cut frame
    assert decoder.counts.discarded_bytes == len(FAKE_HEADER) + len(tail)
