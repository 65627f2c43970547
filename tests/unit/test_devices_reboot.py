"""A framed sensor that reboots mid-stream (issue 17, item 4): its seq and device clock restart.

Before: the restart read as up to 65,535 lost frames (a phantom gap of ~10^6 samples) and the
pipeline predicted windows for time that never existed. Now: a ``clock_reset`` event, and the
outage is what host time says elapsed."""

import numpy as np

from bridge_edge.devices.base import SourceStats
from bridge_edge.devices.frame import encode_frame
from bridge_edge.devices.serial_streams import FrameStream

FS, N = 130.0, 13  # 13 samples per frame at 130 Hz: one frame per 100 ms


def frame(seq, t_us):
    return encode_frame(seq & 0xFFFF, t_us & 0xFFFFFFFF, np.zeros((N, 1)), 1)


def test_a_reboot_is_a_clock_reset_with_no_phantom_gap():
    stats = SourceStats()
    stream = FrameStream(FS, 1, np.array([1.0]), stats)
    t0 = 3_000_000_000  # 50 minutes of device time: the restart at 0 looks like a u32 wrap to a naive unwrap
    host = 10**12
    for k in range(40):
        stream.feed(frame(1000 + k, t0 + k * 100_000), host + k * 100_000_000)
    # rebooted: seq and device time start over, 0.1 s after the last frame (no samples missed)
    (chunk,) = stream.feed(frame(0, 0), host + 40 * 100_000_000)
    assert chunk.gap_before == 0
    resets = [e for e in stats.events if e["kind"] == "clock_reset"]
    assert len(resets) == 1 and resets[0]["previous_seq"] == 1039 and resets[0]["seq"] == 0
    (nxt,) = stream.feed(frame(1, 100_000), host + 41 * 100_000_000)
    assert nxt.gap_before == 0 and nxt.t_device_ns[0] > chunk.t_device_ns[0]


def test_a_reboot_that_took_two_seconds_counts_them_from_host_time():
    stats = SourceStats()
    stream = FrameStream(FS, 1, np.array([1.0]), stats)
    host = 10**12
    for k in range(10):
        stream.feed(frame(500 + k, 7_000_000 + k * 100_000), host + k * 100_000_000)
    (chunk,) = stream.feed(frame(0, 0), host + 9 * 100_000_000 + 2_100_000_000)
    # 2.1 s after the last frame began: 273 sample periods, 13 of them that frame's own samples
    assert chunk.gap_before == round(2.1 * FS) - N
    assert [e["missing_samples"] for e in stats.events if e["kind"] == "clock_reset"] == [chunk.gap_before]


def test_a_true_u32_wrap_is_still_a_wrap():
    stats = SourceStats()
    stream = FrameStream(FS, 1, np.array([1.0]), stats)
    near = 2**32 - 150_000
    chunks = [stream.feed(frame(k, near + k * 100_000), 1)[0] for k in range(4)]
    assert [c.gap_before for c in chunks] == [0, 0, 0, 0]
    assert not [e for e in stats.events if e["kind"] in ("clock_reset", "clock_jump")]
    assert np.all(np.diff([c.t_device_ns[0] for c in chunks]) == 100_000_000)
