"""Polar sensors over BLE: PMD streaming (H10 ECG, Verity Sense / OH1 PPG) and the Heart Rate
Service fallback, written against the small ``BleTransport`` interface (below; ble.py is bleak's) so it runs
the same over bleak or over a scripted peripheral in tests.

One session (docs/sources.md): subscribe to control-point indications and data notifications
first (the CP answers nothing before), read the feature bitmap, send the start command, wait
up to 10 s for its 0xF0 response, then decode frames. The notification callbacks only enqueue
``(bytes, monotonic_ns)``; all decoding happens in the session loop. The stream is ALWAYS
stopped (``03 <type>``) when a session ends, also on Ctrl-C: an H10 left streaming drains its
battery.

Reconnect: a sample-arrival watchdog (not only the OS disconnect callback) ends a silent
session; the streamer then rescans, makes a new client, re-subscribes everything, with capped
exponential backoff (1 -> 30 s). The disconnect callback only enqueues a marker; it never
reconnects itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bridge_edge.devices import pmd, pmd_control
from bridge_edge.devices.base import Chunk, SourceStats
from bridge_edge.devices.hrs import HRS_MEASUREMENT_UUID, parse_heart_rate
from bridge_edge.devices.ratecheck import RateCheck
from bridge_edge.errors import DeviceError, DeviceTimeoutError, FrameError

log = logging.getLogger(__name__)

PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CP_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
CP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
LINK_LOST = b""  # queue marker from the disconnect callback (real notifications are never empty)


class BleTransport(Protocol):
    """The slice of a BLE client the Polar logic needs. One instance = one connection attempt."""

    async def scan(self, target: str, timeout: float) -> object | None: ...  # device handle or None

    async def connect(self, device: object, on_disconnect: Callable[[], None]) -> None: ...

    async def start_notify(self, uuid: str, callback: Callable[[object, bytearray], None]) -> None: ...

    async def read(self, uuid: str) -> bytes: ...

    async def write(self, uuid: str, data: bytes) -> None: ...

    async def disconnect(self) -> None: ...


@dataclass(frozen=True)
class PolarProfile:
    name: str
    measurement: str  # "ecg", "ppg" or "hrs"
    settings: dict[str, int]
    fs: float
    channels: tuple[str, ...]
    units: tuple[str, ...]
    scale: float  # sensor unit -> physical unit (µV -> mV for ECG)


PROFILES = {
    "polar-h10": PolarProfile(
        "polar-h10", "ecg", dict(pmd_control.H10_ECG_SETTINGS), 130.0, ("ecg",), ("mV",), 1e-3
    ),
    "polar-verity": PolarProfile(
        "polar-verity",
        "ppg",
        {"sample_rate": 55, "resolution": 22, "channels": 4},
        55.0,
        ("ppg0", "ppg1", "ppg2", "ambient"),
        ("a.u.",) * 4,
        1.0,
    ),
    # OH1 firmware reports 130 Hz but samples at 135 Hz (KnownIssues.md); the rate check will say so.
    "polar-oh1": PolarProfile(
        "polar-oh1",
        "ppg",
        {"sample_rate": 130, "resolution": 22},
        135.0,
        ("ppg0", "ppg1", "ppg2", "ambient"),
        ("a.u.",) * 4,
        1.0,
    ),
    "hrs": PolarProfile("hrs", "hrs", {}, 1.0, ("rr_ms", "hr_bpm"), ("ms", "bpm"), 1.0),
}


@dataclass
class StreamerConfig:
    target: str  # address or name
    profile: PolarProfile
    scan_timeout_s: float = 10.0
    watchdog_s: float = 5.0  # no samples for this long = link dead, even without a disconnect callback
    first_data_timeout_s: float = 15.0  # the first frame may come late after a start
    backoff_start_s: float = 1.0
    backoff_cap_s: float = 30.0


@dataclass
class _Session:
    cp: asyncio.Queue
    data: asyncio.Queue
    started: str | None = None  # measurement we sent start for (stop is owed)
    factor: float = 1.0
    chain: pmd.PreviousTimestamps = field(default_factory=pmd.PreviousTimestamps)


class PolarStreamer:
    """Runs sessions on one asyncio loop until stopped; emits chunks through `emit`."""

    def __init__(
        self,
        transport_factory: Callable[[], BleTransport],
        config: StreamerConfig,
        stats: SourceStats,
        emit: Callable[[Chunk], None],
    ):
        self.transport_factory = transport_factory
        self.config = config
        self.profile = config.profile
        self.stats = stats
        self.emit = emit
        self.rate = RateCheck(self.profile.fs, f"{self.profile.name} {self.profile.measurement}")
        self.backoff_delays: list[float] = []
        self.fell_back_to_hrs = False
        self.on_fallback: Callable[[], None] | None = None  # the source re-declares its stream
        self._stop = asyncio.Event()  # binds to the loop on first use (Python >= 3.10)
        # (device ns of the last sample, host monotonic s): carries device time across sessions
        self._last_frame: tuple[int, float] | None = None
        self._lost_at: float | None = None

    def request_stop(self) -> None:
        """Call on the streamer's loop (or before it runs)."""
        self._stop.set()

    async def run(self) -> None:
        delay = self.config.backoff_start_s
        while not self._stop.is_set():
            transport = self.transport_factory()  # a new client per attempt: BlueZ forgets the old one
            session = _Session(asyncio.Queue(), asyncio.Queue())
            streamed = retry_now = False
            try:
                await self._open(transport, session)
                streamed = await self._pump(session)
            except _Fallback as err:
                log.warning("%s: %s", self.config.target, err)
                self.fell_back_to_hrs = True
                self.stats.event("fallback", to="hrs", reason=err.reason)
                if self.on_fallback is not None:
                    self.on_fallback()
                retry_now = True  # over the Heart Rate Service, without waiting
            except (DeviceError, FrameError, OSError, asyncio.TimeoutError) as err:
                log.warning("%s: session failed: %s", self.config.target, err)
                self.stats.event("session_error", reason=str(err))
            finally:
                await self._close(transport, session)
            if self._stop.is_set():
                break
            if retry_now:
                continue
            if streamed:
                delay = self.config.backoff_start_s  # a working session resets the backoff
            self.backoff_delays.append(delay)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.config.backoff_cap_s)

    # -- one session -------------------------------------------------------------------------

    async def _open(self, transport, session: _Session) -> None:
        device = await transport.scan(self.config.target, self.config.scan_timeout_s)
        if device is None:
            raise DeviceError(
                f"BLE device {self.config.target!r} not found", device=self.config.target, reason="not found"
            )
        loop = asyncio.get_running_loop()

        def on_disconnect() -> None:  # may run on any thread; never reconnects from here
            loop.call_soon_threadsafe(session.data.put_nowait, (LINK_LOST, time.monotonic_ns()))

        await transport.connect(device, on_disconnect)
        if self._lost_at is not None:
            self.stats.reconnects += 1
            self.stats.event(
                "reconnect", device=self.config.target, outage_s=time.monotonic() - self._lost_at
            )
        else:
            self.stats.event("connect", device=self.config.target)
        if self.profile.measurement == "hrs" or self.fell_back_to_hrs:
            await transport.start_notify(HRS_MEASUREMENT_UUID, _enqueuer(session.data))
            return
        # indications on the CP and data notifications BEFORE the first CP write (polar #281)
        await transport.start_notify(PMD_CP_UUID, _enqueuer(session.cp))
        await transport.start_notify(PMD_DATA_UUID, _enqueuer(session.data))
        features = pmd_control.parse_features(await transport.read(PMD_CP_UUID))
        if self.profile.measurement not in features:
            raise _Fallback(f"sensor offers {sorted(features)}, not {self.profile.measurement}")
        response = await self._command(
            transport, session, pmd_control.start_request(self.profile.measurement, self.profile.settings)
        )
        session.started = self.profile.measurement
        if not response.ok:
            raise DeviceError(
                f"{self.config.target}: start {self.profile.measurement} failed: {response.status_name}",
                device=self.config.target,
                reason=response.status_name,
            )
        if response.parameters:
            session.factor = pmd_control.factor_from(pmd_control.parse_settings(response.parameters)) or 1.0

    async def _command(self, transport, session: _Session, request: bytes) -> pmd_control.CpResponse:
        await transport.write(PMD_CP_UUID, request)
        deadline = time.monotonic() + CP_TIMEOUT_S
        while True:
            try:
                data, _ = await asyncio.wait_for(
                    session.cp.get(), timeout=max(0.0, deadline - time.monotonic())
                )
            except asyncio.TimeoutError as err:
                raise DeviceTimeoutError(
                    f"{self.config.target}: no control-point response to {request.hex()} "
                    f"within {CP_TIMEOUT_S:g} s",
                    device=self.config.target,
                    operation=request.hex(),
                    timeout_s=CP_TIMEOUT_S,
                ) from err
            message = pmd_control.parse_cp_message(data)
            if isinstance(message, pmd_control.CpResponse) and message.op_code == request[0]:
                return message
            log.debug("unrelated control-point message %s", data.hex())

    async def _pump(self, session: _Session) -> bool:
        """Decode until the link dies, goes silent or we are stopped. Returns whether data flowed."""
        streamed = False
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                timeout = self.config.watchdog_s if streamed else self.config.first_data_timeout_s
                get = asyncio.ensure_future(session.data.get())
                done, _ = await asyncio.wait(
                    {get, stop_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    if self._stop.is_set():
                        break
                    self._link_lost(f"no samples for {timeout:g} s (watchdog)")
                    break
                data, t_host = get.result()
                if data == LINK_LOST:
                    self._link_lost("disconnected by the OS")
                    break
                while not session.cp.empty():  # the sensor may stop a stream on its own
                    message = pmd_control.parse_cp_message(session.cp.get_nowait()[0])
                    if isinstance(message, pmd_control.MeasurementStopped):
                        self._link_lost(f"sensor stopped measurements {list(message.measurement_types)}")
                        return streamed
                streamed |= self._decode(session, data, t_host)
        finally:
            stop_wait.cancel()
        return streamed

    def _link_lost(self, reason: str) -> None:
        self._lost_at = time.monotonic()
        self.stats.disconnects += 1
        self.stats.event("disconnect", device=self.config.target, reason=reason)
        log.warning("%s: %s; reconnecting", self.config.target, reason)

    async def _close(self, transport, session: _Session) -> None:
        try:
            if session.started:  # always stop what we started
                await asyncio.wait_for(
                    transport.write(PMD_CP_UUID, pmd_control.stop_request(session.started)),
                    timeout=STOP_TIMEOUT_S,
                )
        except Exception as err:  # noqa: BLE001 - the link may be gone already; nothing else can be done
            log.warning("%s: stop command not delivered: %s", self.config.target, err)
            self.stats.event("stop_failed", reason=str(err))
        try:
            await asyncio.wait_for(transport.disconnect(), timeout=STOP_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - backend errors on a dead link are expected here
            log.debug("disconnect failed: %s", err)

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, session: _Session, data: bytes, t_host: int) -> bool:
        if self.profile.measurement == "hrs" or self.fell_back_to_hrs:
            return self._decode_hrs(data, t_host)
        try:
            header = pmd.parse_header(data)
            previous = session.chain.swap(header)
            fs = self.rate.measured_hz or self.profile.fs
            try:
                frame = self._parse(data, previous, fs, session)
            except FrameError:
                session.chain.restore(header, previous)  # the next frame's time counts the loss
                raise
        except FrameError as err:
            self.stats.corrupt_frames += 1
            self.stats.event("corrupt_frames", count=1, reason=str(err))
            return False
        gap = self._gap(frame, previous, fs)
        if gap is not None and previous:
            # a lost notification: re-time this frame from the rate instead of spreading it
            frame = pmd.parse_frame(
                data, sample_rate_hz=fs, factor=session.factor, measurement=self.profile.measurement
            )
        samples = (frame.samples[:, : len(self.profile.channels)] * self.profile.scale).astype(np.float32)
        chunk = Chunk(samples, t_host, frame.timestamps_ns, None, gap or 0)
        self._last_frame = (int(frame.timestamps_ns[-1]), time.monotonic())
        self.stats.count_chunk(chunk)
        # a gap here is sized from the rate being measured, so it restarts the span instead of counting
        if self.rate.update(chunk.n, int(frame.timestamps_ns[-1]), restart=bool(chunk.gap_before)):
            self.stats.event("rate_mismatch", declared_hz=self.profile.fs, measured_hz=self.rate.measured_hz)
        self.emit(chunk)
        return True

    def _parse(self, data: bytes, previous: int | None, fs: float, session: _Session) -> pmd.PmdFrame:
        try:
            return pmd.parse_frame(
                data,
                previous_timestamp_ns=previous,
                sample_rate_hz=fs,
                factor=session.factor,
                measurement=self.profile.measurement,
            )
        except FrameError as err:
            if err.reason != "non_increasing_timestamp":
                raise
            # device clock went back (an H10 resets to 2019-01-01 after losing power): flag and re-anchor
            self.stats.event("clock_reset", previous_ns=previous, now_ns=pmd.parse_header(data).timestamp_ns)
            self.rate.reset()
            self._last_frame = None
            return pmd.parse_frame(
                data, sample_rate_hz=fs, factor=session.factor, measurement=self.profile.measurement
            )

    def _gap(self, frame: pmd.PmdFrame, previous: int | None, fs: float) -> int | None:
        """Samples missing before this frame, from device time; None when there is no gap."""
        n = len(frame.samples)
        step = 1e9 / fs
        if previous:
            missing = round((frame.timestamp_ns - previous) / step) - n
            return missing if missing > n / 2 else None
        if self._last_frame is None:
            return None
        last_ns, last_host = self._last_frame
        if frame.timestamp_ns <= last_ns:
            self.stats.event("clock_reset", previous_ns=last_ns, now_ns=frame.timestamp_ns)
            self.rate.reset()
            return max(0, round((time.monotonic() - last_host) * fs) - n)  # host-time estimate
        missing = round((frame.timestamp_ns - last_ns) / step) - n
        return missing if missing > 0 else None

    def _decode_hrs(self, data: bytes, t_host: int) -> bool:
        try:
            measurement = parse_heart_rate(data)
        except FrameError as err:
            self.stats.corrupt_frames += 1
            self.stats.event("corrupt_frames", count=1, reason=str(err))
            return False
        if len(measurement.rr_ms):
            rows = np.stack(
                [measurement.rr_ms, np.full(len(measurement.rr_ms), measurement.heart_rate_bpm)], axis=1
            )
            chunk = Chunk(rows.astype(np.float32), t_host)
            self.stats.count_chunk(chunk)
            self.emit(chunk)
        return True


class _Fallback(DeviceError):
    """PMD lacks the measurement: switch this streamer to the Heart Rate Service."""

    def __init__(self, reason: str):
        super().__init__(f"PMD fallback to the Heart Rate Service: {reason}", reason=reason)


def _enqueuer(queue: asyncio.Queue) -> Callable:
    """The notification callback: enqueue (bytes, arrival time) and nothing else."""

    def on_notify(_characteristic, data: bytearray) -> None:
        queue.put_nowait((bytes(data), time.monotonic_ns()))

    return on_notify
