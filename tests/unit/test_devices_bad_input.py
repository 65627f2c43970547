"""Bad input to the device parsers: each case is a typed, counted rejection, never a crash or a stall."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge_edge.devices import frame, pmd
from bridge_edge.devices.base import SourceStats
from bridge_edge.devices.serial_formats import (
    MAX_LINE_BYTES,
    cut_long_lines,
    parse_csv,
)
from bridge_edge.devices.serial_streams import TextStream
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


# -- text formats: long lines ----------------------------------------------------------------------

PATHOLOGICAL = {  # lines that made a backtracking pattern explore every split of a digit run
    "csv": (b"1" * 300 + b",") * 3 + b"\n",
    "sparkfun": b"red=" + b"1" * 600 + b", ir=" + b"2" * 600 + b" x\n",
    "ad8232": b" " * 500 + b"1" * 500 + b" !\n",
    "sparkfun-tail": b"IR=7, BPM=1" + b"\t" * 50_000 + b"\rx\n",  # a free-text tail then blanks
}


@pytest.mark.parametrize("fmt", sorted(PATHOLOGICAL))
def test_a_pathological_line_is_rejected_in_one_pass(fmt):
    # A hang guard, not a timing: the old csv pattern needs hours on this line, the new one a few ms.
    call = {"csv": "parse_csv(line, 3)", "sparkfun": "parse_sparkfun(line)", "ad8232": "parse_ad8232(line)"}
    call["sparkfun-tail"] = call["sparkfun"]
    code = (
        "from bridge_edge.devices.serial_formats import *\n"
        f"line = {PATHOLOGICAL[fmt]!r} * {3 if fmt.endswith('tail') else 20}\n"
        f"parsed = {call[fmt]}\n"
        "assert len(parsed.samples) == 0 and parsed.skipped == line.count(b'\\n'), parsed\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=Path(__file__).parents[2])


def test_csv_issue_repro_parses_to_one_skipped_line():
    parsed = parse_csv((b"1" * 80 + b",") * 3 + b"\n", 3)
    assert parsed.skipped == 1 and len(parsed.samples) == 0


def test_cut_long_lines_drops_only_the_long_ones():
    cut = cut_long_lines(b"12\n" + b"x" * 2000 + b"\n34\n" + b"y" * 1025 + b"\n" + b"z" * 1024 + b"\n")
    assert cut.block == b"12\n34\n" + b"z" * 1024 + b"\n"
    assert cut.lines == 2 and cut.bytes == 2001 + 1026


@pytest.mark.parametrize("fmt, good", [("csv", b"%d,%d\n"), ("sparkfun", b"red=%d, ir=%d\n")])
def test_a_line_without_newline_is_bounded_cut_and_its_samples_counted_as_a_gap(fmt, good):
    stats = SourceStats()
    stream = TextStream(fmt, 100.0, ("red", "ir") if fmt == "sparkfun" else ("a", "b"), stats)
    lines = b"".join(good % (i, i) for i in range(10, 20))  # 6-7 bytes a line
    assert len(stream.feed(lines, 1)[0].samples) == 10
    flood = b"1234567," * 400  # 3,200 bytes without a newline: lost lines, or line noise
    for i in range(0, len(flood), 100):
        assert stream.feed(flood[i : i + 100], 2) == []
        assert len(stream._rest) <= MAX_LINE_BYTES  # the buffer never holds more than one line
    (after,) = stream.feed(b"\n" + lines, 3)
    assert len(after.samples) == 10
    typical = len(lines) / 10
    assert after.gap_before == round((len(flood) + 1) / typical)  # cut bytes / typical line length
    (event,) = [e for e in stats.events if e["kind"] == "corrupt_frames"]
    assert event["count"] == 1 and event["bytes"] == len(flood) + 1
    assert stats.skipped_lines == 1 and stats.corrupt_frames == 1


def test_a_complete_over_long_line_inside_a_block_is_cut_and_counted():
    stats = SourceStats()
    stream = TextStream("ad8232", 250.0, ("ecg",), stats)
    chunks = stream.feed(b"1\n2\n" + b"5" * 2000 + b"\n3\n", 1)
    assert [c.samples.ravel().tolist() for c in chunks] == [[1.0, 2.0, 3.0]]
    assert stats.skipped_lines == 1
    assert [e["samples_lost_estimate"] for e in stats.events if e["kind"] == "corrupt_frames"] == [1000]
