"""Acceptance test for serial sources (issue 5): a real pty pair, a real recording, real framing.

An emulator thread plays the PPG recording that ships with heartpy (data.csv, 100 Hz, read with
numpy; heartpy itself is not imported), resampled to 1 kHz, as docs/sources.md frames of 10 samples.
It corrupts 1 % of the frames (one flipped byte anywhere in the frame) and unplugs once: the
pty pair is closed, frames due meanwhile are lost, and a new pair appears behind the same
symlink (what /dev/serial/by-id does). `bridge-edge record`'s engine records it; the WFDB file
must hold every valid sample exactly once and in order, every corrupted frame must be counted,
and the outage must be a gap of the right length, reconnected within 2 s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from bridge_edge.devices.base import open_source
from bridge_edge.devices.frame import FMT_INT16, encode_frame
from bridge_edge.devices.recording import read_recording, record_source

FS = 1000
FRAME_N = 10
SECONDS = 6.0
UNPLUG_AT_FRAME = 250  # 2.5 s in
UNPLUG_FRAMES = 60  # 0.6 s without a port


def heartpy_ppg_1khz() -> np.ndarray:
    spec = importlib.util.find_spec("heartpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("heartpy is not installed; its data.csv is the real PPG this test streams")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data.csv"
    ppg_100hz = np.loadtxt(path, dtype=np.float64)
    t_out = np.arange(int(SECONDS * FS)) / FS
    t_in = np.arange(len(ppg_100hz)) / 100.0
    return np.round(np.interp(t_out % t_in[-1], t_in, ppg_100hz)).astype(np.int16)


class PtyEmulator(threading.Thread):
    """Writes frames on an absolute 10 ms schedule into the master side of a pty pair."""

    def __init__(self, samples: np.ndarray, link: Path, source, seed: int = 5):
        super().__init__(daemon=True)
        self.source = source
        self.frames = samples.reshape(-1, FRAME_N, 1)
        self.link = link
        rng = np.random.default_rng(seed)
        # keep corruption away from the unplug: frames near it may be lost with the cable instead
        eligible = [
            i
            for i in range(5, len(self.frames) - 5)
            if not UNPLUG_AT_FRAME - 5 <= i < UNPLUG_AT_FRAME + 3 * UNPLUG_FRAMES
        ]
        self.corrupt = set(rng.choice(eligible, size=len(self.frames) // 100, replace=False).tolist())
        self.rng = rng
        self.delivered: list[int] = []  # frame indices written intact
        self.outage_frames = 0  # frames sampled while no port was open
        self.replugged_ns = 0
        self.error: BaseException | None = None
        self._plug()

    def _plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # the line discipline must not touch bytes before pyserial opens it
        tmp = self.link.with_suffix(".new")
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)

    def _unplug(self) -> None:
        os.unlink(self.link)
        os.close(self.master)
        os.close(self.slave)

    def _has_event(self, kind: str) -> bool:
        return any(e["kind"] == kind for e in list(self.source.stats.events))

    def _wait_for_event(self, kind: str, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._has_event(kind):
            if time.monotonic() > deadline:
                raise TimeoutError(f"source never reported {kind!r}")
            time.sleep(0.002)

    def run(self) -> None:
        try:
            self._wait_for_event("connect")  # pyserial flushes input on open: start after it
            t0 = time.monotonic()
            for i, block in enumerate(self.frames):
                delay = t0 + i * FRAME_N / FS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if i == UNPLUG_AT_FRAME:
                    time.sleep(0.2)  # let the reader drain what it was sent, then pull the cable
                    self._unplug()
                if i == UNPLUG_AT_FRAME + UNPLUG_FRAMES:
                    self._plug()
                    self.replugged_ns = time.monotonic_ns()
                if i >= UNPLUG_AT_FRAME and not self._has_event("reconnect"):
                    self.outage_frames += 1
                    continue  # the device keeps sampling; these frames are lost with the cable
                frame = bytearray(encode_frame(i, i * FRAME_N * 1000, block, FMT_INT16))
                if i in self.corrupt:
                    frame[int(self.rng.integers(len(frame)))] ^= int(self.rng.integers(1, 256))
                else:
                    self.delivered.append(i)
                os.write(self.master, bytes(frame))
            time.sleep(0.5)
        except BaseException as err:  # noqa: BLE001 - surfaced by the test
            self.error = err


def test_pty_stream_with_corruption_and_unplug_records_every_valid_sample(tmp_path):
    samples = heartpy_ppg_1khz()
    link = tmp_path / "serial-by-id-emulator"
    emulator = PtyEmulator(samples, link, None)  # plugged in first: a port missing at open is an error
    source = emulator.source = open_source(f"serial://{link}?format=frame&fs={FS}&channels=ppg&units=adc")
    emulator.start()
    closer = threading.Thread(target=lambda: (emulator.join(), source.close()), daemon=True)
    closer.start()
    out = tmp_path / "rec"
    record_source(source, out)
    closer.join(timeout=5)
    assert emulator.error is None, emulator.error

    recording = read_recording(out)
    frames = emulator.frames.reshape(-1, FRAME_N)
    expected = frames[emulator.delivered].reshape(-1)
    np.testing.assert_array_equal(recording.samples[:, 0], expected.astype(np.float32))  # once, in order
    assert [c["seq"] for c in recording.chunks] == emulator.delivered

    stats = source.stats
    assert stats.corrupt_frames == len(emulator.corrupt)
    assert stats.disconnects == 1 and stats.reconnects == 1
    gaps = np.array([c["gap_before"] for c in recording.chunks])
    assert emulator.outage_frames >= UNPLUG_FRAMES
    assert gaps.max() == emulator.outage_frames * FRAME_N  # the outage, exactly, from device time
    assert gaps.sum() == (emulator.outage_frames + len(emulator.corrupt)) * FRAME_N

    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("disconnect") == 1 and kinds.count("reconnect") == 1
    assert sum(e["count"] for e in events if e["kind"] == "corrupt_frames") == len(emulator.corrupt)
    reconnect = next(e for e in events if e["kind"] == "reconnect")
    print(
        f"samples={len(expected)} corrupted={len(emulator.corrupt)} outage_samples={emulator.outage_frames * FRAME_N}"
        f" reconnect_after_replug_s={(reconnect['t_host_ns'] - emulator.replugged_ns) / 1e9:.3f}"
    )
    assert reconnect["t_host_ns"] - emulator.replugged_ns < 2e9
    header = (out / "signal.hea").read_text()
    assert header.startswith("signal 1 1000")


def test_pty_sparkfun_text_sketch_with_banner_and_unplug(tmp_path):
    """A MAX3010x Example1 sketch over a pty: banner skipped and counted, outage estimated from time."""
    link = tmp_path / "serial-by-id-max30105"
    fs = 100
    master, slave = os.openpty()
    tty.setraw(slave)
    os.symlink(os.ttyname(slave), link)  # plugged in first: a port missing at open is an error
    source = open_source(f"serial://{link}?format=sparkfun&fs={fs}&channels=red,ir")
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(source), daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not any(e["kind"] == "connect" for e in list(source.stats.events)):
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.write(master, b"Initializing...\r\n")
    lines = [f" R[{1000 + i}] IR[{2000 + i}] G[{3000 + i}]\r\n".encode() for i in range(100)]
    for i in range(50):
        os.write(master, lines[i])
        time.sleep(1 / fs)
    time.sleep(0.2)
    os.unlink(link)
    os.close(master)
    os.close(slave)
    time.sleep(0.5)  # the sketch keeps sampling while unplugged: ~50 lines lost
    master, slave = os.openpty()
    tty.setraw(slave)
    os.symlink(os.ttyname(slave), link)
    while not any(e["kind"] == "reconnect" for e in list(source.stats.events)):
        assert time.monotonic() < deadline + 5
        time.sleep(0.002)
    for i in range(50, 100):
        os.write(master, lines[i])
        time.sleep(1 / fs)
    time.sleep(0.3)
    source.close()
    reader.join(5)
    os.close(master)
    os.close(slave)

    samples = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(samples[:, 0], 1000 + np.arange(100))
    np.testing.assert_array_equal(samples[:, 1], 2000 + np.arange(100))
    assert source.stats.skipped_lines == 1 and source.stats.disconnects == 1
    # no device clock: the gap is elapsed time x fs, an estimate of the ~0.7 s without a port
    assert 40 <= source.stats.gap_samples <= 200


def test_pty_record_survives_a_foreign_frame_and_a_fake_header(tmp_path):
    """A CRC-valid 2-channel frame on a 1-channel URL, then a header claiming 1 KB: record goes on."""
    from bridge_edge.devices.frame import HEADER, MAGIC

    link = tmp_path / "serial-by-id-mixed"
    master, slave = os.openpty()
    tty.setraw(slave)
    os.symlink(os.ttyname(slave), link)
    source = open_source(f"serial://{link}?format=frame&fs=1000&channels=ppg")
    good = [encode_frame(i, i * 10_000, np.full((10, 1), i), FMT_INT16) for i in range(12)]
    foreign = encode_frame(4, 40_000, np.full((10, 2), 4), FMT_INT16)
    fake = MAGIC + HEADER.pack(1, 0, 0, 255, 2, FMT_INT16)

    def play():
        deadline = time.monotonic() + 5
        while not any(e["kind"] == "connect" for e in list(source.stats.events)):
            assert time.monotonic() < deadline
            time.sleep(0.002)
        stream = b"".join(good[:4]) + foreign + b"".join(good[5:8]) + fake + b"".join(good[8:])
        for i in range(0, len(stream), 64):
            os.write(master, stream[i : i + 64])
            time.sleep(0.002)
        time.sleep(0.5)
        source.close()

    player = threading.Thread(target=play, daemon=True)
    player.start()
    record_source(source, tmp_path / "rec")
    player.join(5)
    os.close(master)
    os.close(slave)
    recording = read_recording(tmp_path / "rec")
    assert [c["seq"] for c in recording.chunks] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert [c["gap_before"] for c in recording.chunks][4] == 10  # the foreign frame's samples
    assert source.stats.corrupt_frames == 2  # the foreign frame; the fake header
