"""Binary waveform frames: layout the page relies on, round trip, and rejection of bad frames."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bridge_edge.errors import FrameError
from bridge_edge.monitor.frames import HEADER_SIZE, decode_block, encode_block


def test_header_layout_matches_the_page_reader():
    samples = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    frame = encode_block(bed=2, channel=1, t0=1234.5, fs=130.0, samples=samples)
    assert len(frame) == HEADER_SIZE + 4 * 3
    # the offsets monitor.js reads with DataView (little-endian)
    assert frame[0] == 0xBE and frame[1] == 1
    assert struct.unpack_from("<H", frame, 2)[0] == 2
    assert struct.unpack_from("<H", frame, 4)[0] == 1
    assert struct.unpack_from("<d", frame, 8)[0] == 1234.5
    assert struct.unpack_from("<f", frame, 16)[0] == 130.0
    assert struct.unpack_from("<I", frame, 20)[0] == 3
    assert np.array_equal(np.frombuffer(frame, "<f4", offset=24), samples)


def test_round_trip_any_length():
    rng = np.random.default_rng(0)
    for n in (0, 1, 73, 5000):
        x = rng.standard_normal(n).astype(np.float32)
        block = decode_block(encode_block(0, 3, 10.0, 500.0, x))
        assert (block.bed, block.channel, block.t0, block.fs) == (0, 3, 10.0, 500.0)
        assert np.array_equal(block.samples, x)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda f: f[:10], "short"),
        (lambda f: b"\x00" + f[1:], "magic"),
        (lambda f: f[:-4], "length"),
        (lambda f: f + b"\x00\x00\x00\x00", "length"),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(mutate, reason):
    frame = encode_block(0, 0, 0.0, 250.0, np.ones(8, np.float32))
    with pytest.raises(FrameError) as err:
        decode_block(mutate(frame))
    assert err.value.reason == reason


def test_a_block_is_one_channel():
    with pytest.raises(FrameError):
        encode_block(0, 0, 0.0, 250.0, np.ones((8, 2), np.float32))
