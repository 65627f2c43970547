"""The Polar/HRS client against a scripted peripheral on the BleTransport interface.

BlueZ cannot run here, so the peripheral below plays the sensor: it answers the control point,
streams REAL frame bytes from Polar's SDK vectors (tests/fixtures/polar_pmd.json), re-stamped
with advancing device time, and injects disconnects, silence and clock resets.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from ctrl_c import sigint_raises_keyboard_interrupt

from bridge_edge.devices import ble, polar
from bridge_edge.devices.base import SourceStats
from bridge_edge.devices.hrs import HRS_MEASUREMENT_UUID

VECTORS = {
    f["id"]: f
    for f in json.loads((Path(__file__).parents[1] / "fixtures" / "polar_pmd.json").read_text())["frames"]
}
H10_FRAME = bytes.fromhex(VECTORS["ecg-raw-t0"]["frame_hex"])  # 2 samples, 3-byte µV
VERITY_FRAME = bytes.fromhex(VECTORS["ppg-delta-t0"]["frame_hex"])  # 42 samples, delta compressed
EPOCH_2024 = 757_382_400_000_000_000  # device ns since 2000
H10_RESET_2019 = 599_616_000_000_000_000
HRS_PACKET = bytes([0x10, 62, 0x00, 0x04, 0x00, 0x03])  # HR 62, RR 1024 and 768 (1/1024 s)


@dataclass
class Incident:
    kind: str  # "disconnect" | "silence" | "clock_reset"
    at_frame: int
    duration_s: float = 0.0


@dataclass
class World:
    """The sensor and the air around it, shared by every connection attempt."""

    frame: bytes = H10_FRAME
    features: bytes = b"\x0f\x05"
    fs: float = 130.0
    frames_per_tick: int = 1
    tick_s: float = 0.01
    start_reply: bytes | None = b"\xf0\x02\x00\x00\x00"
    incidents: list[Incident] = field(default_factory=list)
    log: list[tuple] = field(default_factory=list)
    connections: int = 0
    available_at: float = 0.0
    emitted: list[int] = field(default_factory=list)
    current: object = None
    streaming: bool = False
    silent_until: float = 0.0
    base_ns: int = EPOCH_2024
    _task: object = None

    @property
    def n(self) -> int:
        return 2 if self.frame is H10_FRAME else 42

    def frame_bytes(self, k: int) -> bytes:
        ts = self.base_ns + round((k + 1) * self.n * 1e9 / self.fs)
        return self.frame[:1] + struct.pack("<Q", ts) + self.frame[9:]

    async def stream(self) -> None:
        k, t0 = 0, time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, t0 + (k // self.frames_per_tick) * self.tick_s - time.monotonic()))
            for incident in self.incidents:
                if incident.at_frame == k:
                    self.happen(incident)
            link = self.current
            if link is not None and self.streaming and time.monotonic() >= self.silent_until:
                callback = link.callbacks.get(HRS_MEASUREMENT_UUID if link.hrs else polar.PMD_DATA_UUID)
                callback(None, bytearray(HRS_PACKET if link.hrs else self.frame_bytes(k)))
                self.emitted.append(k)
            k += 1

    def happen(self, incident: Incident) -> None:
        self.log.append(("incident", incident.kind))
        if incident.kind == "disconnect" and self.current is not None:
            link, self.current, self.streaming = self.current, None, False
            self.available_at = time.monotonic() + incident.duration_s
            link.on_disconnect()
        elif incident.kind == "silence":
            self.silent_until = time.monotonic() + incident.duration_s
        elif incident.kind == "clock_reset":
            self.base_ns = H10_RESET_2019


class ScriptedTransport:
    def __init__(self, world: World):
        self.world = world
        self.callbacks: dict = {}
        self.hrs = False
        self.on_disconnect = None

    async def scan(self, target, timeout):
        self.world.log.append(("scan", target))
        return target if time.monotonic() >= self.world.available_at else None

    async def connect(self, device, on_disconnect):
        self.world.connections += 1
        self.world.log.append(("connect", self.world.connections))
        self.world.current, self.on_disconnect = self, on_disconnect
        if self.world._task is None:
            self.world._task = asyncio.ensure_future(self.world.stream())

    async def start_notify(self, uuid, callback):
        self.world.log.append(("start_notify", uuid))
        self.callbacks[uuid] = callback
        if uuid == HRS_MEASUREMENT_UUID:
            self.hrs, self.world.streaming = True, True

    async def read(self, uuid):
        self.world.log.append(("read", uuid))
        return self.world.features

    async def write(self, uuid, data):
        self.world.log.append(("write", bytes(data).hex()))
        if self.world.current is not self:
            raise OSError("not connected")
        cp = self.callbacks[polar.PMD_CP_UUID]
        loop = asyncio.get_running_loop()
        if data[0] == 2:
            if self.world.start_reply is not None:
                loop.call_soon(cp, None, bytearray(self.world.start_reply))
            self.world.streaming = True
        elif data[0] == 3:
            loop.call_soon(cp, None, bytearray(b"\xf0\x03" + bytes(data[1:2]) + b"\x00\x00"))
            self.world.streaming = False

    async def disconnect(self):
        self.world.log.append(("disconnect",))
        if self.world.current is self:
            self.world.current, self.world.streaming = None, False


# a loaded CI machine can stall the event loop for a few tenths of a second: only the silence test
# wants a watchdog that short
FAST = {"watchdog_s": 1.0, "first_data_timeout_s": 1.0, "backoff_start_s": 0.05, "backoff_cap_s": 0.4}


def run_streamer(world: World, profile="polar-h10", seconds=1.0, **overrides):
    stats, chunks = SourceStats(), []
    config = polar.StreamerConfig("AA:BB:CC:DD:EE:FF", polar.PROFILES[profile], **{**FAST, **overrides})
    streamer = polar.PolarStreamer(lambda: ScriptedTransport(world), config, stats, chunks.append)

    async def main():
        task = asyncio.ensure_future(streamer.run())
        await asyncio.sleep(seconds)
        streamer.request_stop()
        await asyncio.wait_for(task, 5)
        if world._task is not None:
            world._task.cancel()

    asyncio.run(main())
    return streamer, stats, chunks


def writes(world: World) -> list[str]:
    return [entry[1] for entry in world.log if entry[0] == "write"]


def test_h10_session_order_bytes_and_values():
    world = World()
    _streamer, stats, chunks = run_streamer(world, seconds=0.5)
    kinds = [
        e[0] if e[0] != "start_notify" else f"notify {e[1][:8]}" for e in world.log if e[0] != "incident"
    ]
    # indications on the CP and data notifications before the first CP write; features read first
    assert kinds[:6] == ["scan", "connect", "notify fb005c81", "notify fb005c82", "read", "write"]
    assert writes(world)[0] == "02000001820001010e00"
    assert writes(world)[-1] == "0300"  # always stopped
    assert world.log[-1] == ("disconnect",)
    samples = np.concatenate([c.samples for c in chunks])
    expected = np.array(VECTORS["ecg-raw-t0"]["expected"]["samples"], np.float32).ravel() * np.float32(1e-3)
    np.testing.assert_allclose(samples[:2, 0], expected, rtol=1e-6)
    assert stats.samples == 2 * len(world.emitted) and stats.gap_samples == 0
    times = np.concatenate([c.t_device_ns for c in chunks])
    assert np.all(np.diff(times) > 0)


def test_disconnect_rescans_new_client_resubscribes_and_reports_the_gap():
    world = World(incidents=[Incident("disconnect", at_frame=20, duration_s=0.25)])
    streamer, stats, chunks = run_streamer(world, seconds=1.2)
    assert world.connections == 2 and stats.disconnects == 1 and stats.reconnects == 1
    assert [e[1] for e in world.log if e[0] == "start_notify"].count(polar.PMD_DATA_UUID) == 2
    assert writes(world).count("02000001820001010e00") == 2
    assert sum(1 for e in world.log if e[0] == "scan") >= 3  # rescans while the sensor is away
    lost = (world.emitted[-1] - world.emitted[0] + 1 - len(world.emitted)) * world.n
    assert lost > 0 and stats.gap_samples == lost  # the outage, exactly, from device time
    assert max(c.gap_before for c in chunks) == lost
    kinds = [e["kind"] for e in stats.events]
    assert kinds.index("disconnect") < kinds.index("reconnect")
    assert streamer.backoff_delays[:2] == [0.05, 0.1]


def test_silence_trips_the_watchdog_without_any_disconnect_callback():
    world = World(incidents=[Incident("silence", at_frame=20, duration_s=0.8)])
    _streamer, stats, _chunks = run_streamer(world, seconds=1.6, watchdog_s=0.3)
    reasons = [e["reason"] for e in stats.events if e["kind"] == "disconnect"]
    assert reasons and "watchdog" in reasons[0]
    assert world.connections >= 2 and stats.reconnects >= 1
    assert writes(world).count("0300") >= 1  # the silent session was stopped before reconnecting
    assert stats.gap_samples > 0


def test_backoff_is_exponential_and_capped_while_the_sensor_is_away():
    world = World(available_at=time.monotonic() + 60)
    streamer, stats, _ = run_streamer(world, seconds=1.5, backoff_start_s=0.02, backoff_cap_s=0.16)
    assert streamer.backoff_delays[:5] == [0.02, 0.04, 0.08, 0.16, 0.16]
    assert world.connections == 0 and all(e["kind"] == "session_error" for e in stats.events)


def test_start_error_status_is_named_and_stop_is_still_sent():
    world = World(start_reply=b"\xf0\x02\x00\x0c\x00")
    _streamer, stats, chunks = run_streamer(world, seconds=0.3)
    errors = [e["reason"] for e in stats.events if e["kind"] == "session_error"]
    assert errors and "ERROR_INVALID_STATE" in errors[0]
    assert "0300" in writes(world) and not chunks


def test_control_point_timeout(monkeypatch):
    monkeypatch.setattr(polar, "CP_TIMEOUT_S", 0.1)
    world = World(start_reply=None)
    _, stats, _ = run_streamer(world, seconds=0.4)
    errors = [e["reason"] for e in stats.events if e["kind"] == "session_error"]
    assert errors and "no control-point response" in errors[0]


def test_device_clock_reset_becomes_a_clock_event():
    world = World(incidents=[Incident("clock_reset", at_frame=15)])
    _, stats, chunks = run_streamer(world, seconds=0.5)
    jumps = [e for e in stats.events if e["kind"] == "clock_reset"]
    assert jumps and jumps[0]["now_ns"] < jumps[0]["previous_ns"]
    assert any(int(c.t_device_ns[0]) < H10_RESET_2019 + 10**10 for c in chunks)  # passed through, flagged


def test_verity_compressed_ppg_decodes_the_sdk_vector():
    world = World(frame=VERITY_FRAME, features=b"\x0f\x02", fs=55.0, start_reply=b"\xf0\x02\x01\x00\x00")
    _, _stats, chunks = run_streamer(world, profile="polar-verity", seconds=0.3)
    assert writes(world)[0] == "0201000137000101160004010" + "4"
    expected = np.array(VECTORS["ppg-delta-t0"]["expected"]["samples"], np.float32)
    np.testing.assert_array_equal(chunks[0].samples, expected)


def test_falls_back_to_heart_rate_service_without_pmd_ecg():
    world = World(features=b"\x0f\x04")  # ACC only
    streamer, stats, chunks = run_streamer(world, seconds=0.4)
    assert streamer.fell_back_to_hrs and any(e["kind"] == "fallback" for e in stats.events)
    rows = np.concatenate([c.samples for c in chunks])
    np.testing.assert_allclose(rows[:2], [[1000.0, 62.0], [750.0, 62.0]])


def test_h10_rate_is_estimated_from_device_time_and_kept():
    world = World(fs=129.0, frames_per_tick=40)  # a real H10 runs at 128-131 Hz, not 130
    streamer, _stats, _ = run_streamer(world, seconds=1.0)
    assert streamer.rate.measured_hz == pytest.approx(129.0, rel=1e-4)


def test_an_outage_sized_from_the_declared_rate_does_not_pull_the_estimate_towards_it():
    # the outage is sized at the declared 130 Hz; counted as samples it would bias the estimate up
    world = World(
        fs=129.0, frames_per_tick=40, incidents=[Incident("disconnect", at_frame=40, duration_s=0.5)]
    )
    streamer, stats, _ = run_streamer(world, seconds=1.5)
    assert stats.reconnects >= 1 and stats.gap_samples > 0
    assert streamer.rate.measured_hz == pytest.approx(129.0, rel=1e-4)


def test_notification_callback_only_enqueues():
    queue = asyncio.Queue()
    callback = polar._enqueuer(queue)
    assert not inspect.iscoroutinefunction(callback)
    callback(None, bytearray(b"\xff garbage that is not a frame"))  # no decoding, so no error
    data, t_host = queue.get_nowait()
    assert data == b"\xff garbage that is not a frame" and isinstance(t_host, int)


def test_ctrl_c_in_the_consumer_still_stops_the_h10():
    world = World()
    config = polar.StreamerConfig("AA:BB", polar.PROFILES["polar-h10"], **FAST)
    source = ble.BleSource(config, transport_factory=lambda: ScriptedTransport(world))
    received = 0
    with sigint_raises_keyboard_interrupt(), pytest.raises(KeyboardInterrupt):
        for _chunk in source:
            received += 1
            if received == 5:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to this thread
                time.sleep(1)  # KeyboardInterrupt is raised while we wait here
    assert writes(world)[-1] == "0300" and ("disconnect",) in world.log
    assert not source._thread.is_alive()


def test_ble_url_grammar_errors_restate_it():
    from bridge_edge.errors import SourceURLError

    with pytest.raises(SourceURLError, match="profile=polar-h10"):
        ble.config_from_url("ble://AA:BB?profile=garmin")
    with pytest.raises(SourceURLError, match="streams ecg, not ppg"):
        ble.config_from_url("ble://AA:BB?profile=polar-h10&stream=ppg")
    config = ble.config_from_url("ble://Polar%20H10%20ABCD?profile=polar-h10&watchdog=3")
    assert config.target == "Polar H10 ABCD" and config.watchdog_s == 3.0


def test_bleak_transport_calls_the_real_bleak_api(monkeypatch):
    """BlueZ is absent here: swap bleak's client and scanner for recorders and check the calls."""
    bleak = pytest.importorskip("bleak", reason="bleak is not installed")
    calls = []

    class RecordingClient:
        def __init__(self, device, disconnected_callback=None, timeout=None):
            calls.append(("client", device, timeout))
            self.disconnected_callback = disconnected_callback

        async def connect(self):
            calls.append(("connect",))

        async def start_notify(self, uuid, callback):
            calls.append(("start_notify", uuid))

        async def read_gatt_char(self, uuid):
            return bytearray(b"\x0f\x05")

        async def write_gatt_char(self, uuid, data, response):
            calls.append(("write", uuid, bytes(data), response))
            raise bleak.exc.BleakError("Not connected")

        async def disconnect(self):
            calls.append(("disconnect",))

    class RecordingScanner:
        @staticmethod
        async def find_device_by_address(address, timeout):
            calls.append(("find_by_address", address, timeout))
            return "device"

    monkeypatch.setattr(bleak, "BleakClient", RecordingClient)
    monkeypatch.setattr(bleak, "BleakScanner", RecordingScanner)
    from bridge_edge.errors import DeviceError

    async def session():
        transport = ble.BleakTransport()
        device = await transport.scan("AA:BB:CC:DD:EE:FF", 10.0)
        lost = []
        await transport.connect(device, lambda: lost.append(True))
        transport._client.disconnected_callback(transport._client)  # bleak passes the client
        await transport.start_notify(polar.PMD_DATA_UUID, lambda c, d: None)
        assert await transport.read(polar.PMD_CP_UUID) == b"\x0f\x05"
        with pytest.raises(DeviceError, match="Not connected"):
            await transport.write(polar.PMD_CP_UUID, b"\x03\x00")
        await transport.disconnect()
        return lost

    assert asyncio.run(session()) == [True]
    assert ("write", polar.PMD_CP_UUID, b"\x03\x00", True) in calls
    assert calls[0] == ("find_by_address", "AA:BB:CC:DD:EE:FF", 10.0) and calls[-1] == ("disconnect",)


@dataclass
class PoisonedWorld(World):
    """Frames at these indices arrive corrupt: a u64 timestamp >= 2^63, or a 63-bit delta block."""

    poisoned: tuple[int, ...] = ()

    def frame_timestamp(self, k: int) -> int:
        return struct.unpack_from("<Q", super().frame_bytes(k), 1)[0]

    def frame_bytes(self, k: int) -> bytes:
        good = super().frame_bytes(k)
        if k not in self.poisoned:
            return good
        if self.frame is H10_FRAME:
            return good[:1] + struct.pack("<Q", 1 << 63) + good[9:]
        # compressed PPG: 4 reference samples x 3 bytes, then the first block's width byte
        return good[:22] + bytes([63]) + good[23:]


@pytest.mark.parametrize("frame", ["h10", "verity"])
def test_an_overflowing_notification_is_one_corrupt_frame_and_the_session_goes_on(frame):
    h10 = frame == "h10"
    world = PoisonedWorld(poisoned=(5, 6), tick_s=0.01)
    if not h10:
        world.frame, world.features, world.fs = VERITY_FRAME, b"\x0f\x02", 55.0
        world.start_reply = b"\xf0\x02\x01\x00\x00"
    _, stats, chunks = run_streamer(world, profile="polar-h10" if h10 else "polar-verity", seconds=0.5)
    assert stats.corrupt_frames == 2
    reasons = [e["reason"] for e in stats.events if e["kind"] == "corrupt_frames"]
    assert all(("2^62" if h10 else "delta block width 63") in r for r in reasons)
    assert not [e for e in stats.events if e["kind"] == "session_error"]  # nothing ended the session
    # the frame after the two poisoned ones arrives in the same session, its gap the lost frames
    (after,) = [c for c in chunks if int(c.t_device_ns[-1]) == world.frame_timestamp(7)]
    assert after.gap_before == 2 * world.n
    assert len(chunks) > 8
