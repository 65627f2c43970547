"""Text formats (csv, SparkFun MAX3010x, AD8232) and the byte -> chunk streams, with bytes only."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_edge.devices.base import SourceStats
from bridge_edge.devices.frame import encode_frame
from bridge_edge.devices.serial_formats import parse_ad8232, parse_csv, parse_sparkfun, split_lines
from bridge_edge.devices.serial_source import SerialConfig
from bridge_edge.devices.serial_streams import FrameStream, TextStream
from bridge_edge.errors import SourceURLError


def test_csv_comma_tab_and_spaces_with_header_and_garbage_counted():
    parsed = parse_csv(b"ppg,ecg\r\n1,2\r\n3\t4\n 5 , -6.5e-1\nbad line\n7,8,9\n\n", 2)
    np.testing.assert_array_equal(parsed.samples, [[1, 2], [3, 4], [5, -0.65]])
    assert parsed.skipped == 3  # header, garbage, wrong column count; blank lines are not counted


def test_sparkfun_every_example_output_and_banners():
    block = (
        b"Initializing...\r\n"
        b" R[100] IR[200] G[300]\r\n"  # Example1
        b"red=5, ir=6, HR=70, HRvalid=1, SPO2=98, SPO2Valid=1\r\n"  # Example8
        b"red=7, ir=8\r\n"
        b"IR=77, BPM=60.50, Avg BPM=61 No finger?\r\n"  # Example5
        b"12345\r\n"  # Example4
        b"MAX30105 was not found. Please check wiring/power.\r\n"
    )
    ir = parse_sparkfun(block, ("ir",))
    np.testing.assert_array_equal(ir.samples.ravel(), [200, 6, 8, 77, 12345])
    assert ir.skipped == 2
    red_ir = parse_sparkfun(block, ("red", "ir"))
    np.testing.assert_array_equal(red_ir.samples, [[100, 200], [5, 6], [7, 8]])
    assert red_ir.skipped == 4  # lines without red cannot fill the red channel
    green = parse_sparkfun(block, ("green",))
    np.testing.assert_array_equal(green.samples.ravel(), [300])


def test_ad8232_lead_off_markers_become_gaps():
    parsed = parse_ad8232(b"512\n!\n!\n500\n501\n?\n!\n")
    np.testing.assert_array_equal(parsed.samples.ravel(), [512, 500, 501])
    assert parsed.lead_off == 3 and parsed.skipped == 1
    assert parsed.segments == ((0, 1, 0), (1, 3, 2), (3, 3, 1))  # trailing marker carried forward


def test_split_lines_keeps_the_unfinished_rest():
    assert split_lines(b"1\n2\n3") == (b"1\n2\n", b"3")
    assert split_lines(b"12") == (b"", b"12")


def test_text_stream_counts_lead_off_and_skipped_and_carries_gaps():
    stats = SourceStats()
    stream = TextStream("ad8232", 250.0, ("ecg",), stats)
    chunks = stream.feed(b"Booting\n512\n!\n", 1) + stream.feed(b"!\n600\n601\n", 2)
    assert [c.samples.ravel().tolist() for c in chunks] == [[512.0], [600.0, 601.0]]
    assert [c.gap_before for c in chunks] == [0, 2]
    assert stats.lead_off == 2 and stats.skipped_lines == 1 and stats.corrupt_frames == 1


def test_text_stream_outage_is_estimated_from_elapsed_time():
    stats = SourceStats()
    stream = TextStream("csv", 100.0, ("ppg",), stats)
    stream.feed(b"1\n2\n", 1_000_000_000)
    stream.on_disconnect()
    stream.on_reconnect(500_000_000)
    (chunk,) = stream.feed(b"3\n4\n", 1_500_000_000)  # 0.5 s later at 100 Hz: 50 periods, 2 arrived
    assert chunk.gap_before == 48


def frames(seqs, n=10, t_step_us=10_000):
    return b"".join(
        encode_frame(s & 0xFFFF, (s * t_step_us) & 0xFFFFFFFF, np.full((n, 1), s), 1) for s in seqs
    )


def test_frame_stream_gaps_from_seq_and_device_time_and_scale():
    stats = SourceStats()
    stream = FrameStream(1000.0, 1, np.array([0.5]), stats)
    chunks = stream.feed(frames([0, 1, 4, 5]), 7)
    assert [c.gap_before for c in chunks] == [0, 0, 20, 0]
    assert chunks[0].samples.dtype == np.float32 and chunks[2].samples[0, 0] == 2.0
    assert chunks[1].t_device_ns[0] == 10_000_000 and chunks[1].t_device_ns[1] == 11_000_000
    long_outage = stream.feed(frames([70_000]), 8)  # seq wrapped: device time tells the truth
    assert long_outage[0].gap_before == (70_000 - 5 - 1) * 10


def test_frame_stream_device_clock_wrap_and_backwards_jump():
    stats = SourceStats()
    stream = FrameStream(100.0, 1, np.array([1.0]), stats)
    near_wrap = 2**32 - 100_000
    data = b"".join(
        encode_frame(i, (near_wrap + i * 100_000) & 0xFFFFFFFF, np.zeros((10, 1)), 1) for i in range(3)
    )
    chunks = stream.feed(data, 1)
    assert [c.gap_before for c in chunks] == [0, 0, 0]
    assert chunks[2].t_device_ns[0] == (near_wrap + 200_000) * 1000  # unwrapped, monotonic
    stream.feed(encode_frame(3, 5, np.zeros((10, 1)), 1), 2)  # device reset
    assert any(e["kind"] == "clock_reset" for e in stats.events)


def test_frame_stream_skips_and_counts_a_channel_count_the_url_did_not_declare():
    stats = SourceStats()
    stream = FrameStream(100.0, 2, np.array([1.0, 1.0]), stats)
    two = b"".join(encode_frame(s, s * 100_000, np.full((10, 2), s), 1) for s in (0, 2))
    chunks = stream.feed(two[: len(two) // 2] + frames([1]) + two[len(two) // 2 :], 1)
    assert [c.seq for c in chunks] == [0, 2]
    assert chunks[1].gap_before == 10  # the skipped frame's samples, from seq and device time
    assert stats.corrupt_frames == 1
    (event,) = [e for e in stats.events if e["kind"] == "corrupt_frames"]
    assert "declares 2" in event["reason"] and event["samples"] == 10


@pytest.mark.parametrize(
    "url, message",
    [
        ("serial://?format=csv&fs=100", "missing device path"),
        ("serial:///dev/ttyUSB0?fs=100", "missing format"),
        ("serial:///dev/ttyUSB0?format=xml&fs=100", "not one of csv|sparkfun|ad8232|frame"),
        ("serial:///dev/ttyUSB0?format=csv", "missing fs"),
        ("serial:///dev/ttyUSB0?format=csv&fs=-3", "must be > 0"),
        ("serial:///dev/ttyUSB0?format=csv&fs=100&baud=fast", "baud='fast'"),
        ("serial:///dev/ttyUSB0?format=sparkfun&fs=100&channels=ecg", "sparkfun channels"),
        ("serial:///dev/ttyUSB0?format=csv&fs=100&vid=2341", "vid and pid go together"),
        ("serial:///dev/ttyUSB0?format=csv&fs=100&parity=E", "unknown option 'parity'"),
    ],
)
def test_serial_url_errors_restate_the_grammar(url, message):
    with pytest.raises(SourceURLError, match=message) as err:
        SerialConfig.from_url(url)
    assert "serial://<path>?format=csv|sparkfun|ad8232|frame&fs=<Hz>" in str(err.value)


def test_serial_url_full():
    config = SerialConfig.from_url(
        "serial:///dev/serial/by-id/usb-x?format=frame&fs=250&channels=ppg,ecg"
        "&scale=0.5,0.001&units=a.u.,mV&vid=2341&pid=0043&dtr=1"
    )
    assert (
        config.channels == ("ppg", "ecg") and config.scale == (0.5, 0.001) and config.dtr and not config.rts
    )
    assert (config.identity.vid, config.identity.pid) == (0x2341, 0x43)


def test_port_identity_finds_the_sensor_by_vid_pid_serial_after_it_moves(monkeypatch):
    from types import SimpleNamespace

    from serial.tools import list_ports

    from bridge_edge.devices.serial_source import PortIdentity

    ports = [
        SimpleNamespace(device="/dev/ttyACM0", vid=0x2341, pid=0x43, serial_number="OTHER"),
        SimpleNamespace(device="/dev/ttyACM3", vid=0x2341, pid=0x43, serial_number="A1"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert PortIdentity("/dev/ttyACM0", 0x2341, 0x43, "A1").locate() == "/dev/ttyACM3"
    assert PortIdentity("/dev/ttyACM0", 0x10C4, 0xEA60).locate() is None
    assert PortIdentity("/definitely/not/here").locate() is None
