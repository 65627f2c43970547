"""ble:// — Bluetooth LE sensors: Polar PMD (H10 ECG, Verity Sense / OH1 PPG) or any Heart Rate
Service sensor (HR + RR).

Grammar::

    ble://<address or name>?profile=polar-h10|polar-verity|polar-oh1|hrs[&stream=ecg|ppg]
        [&watchdog=<s>][&scan_timeout=<s>]

The protocol logic lives in polar.py and talks to the radio through ``BleTransport`` (scan,
connect, start_notify, read, write, disconnect). ``BleakTransport`` implements it with bleak
(>= 2.1, imported lazily; one asyncio loop in a worker thread, never ``time.sleep``); tests
use a scripted peripheral on the same interface, because BlueZ cannot run here.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.pmd import POLAR_EPOCH_OFFSET_NS
from bridge_edge.devices.polar import PROFILES, BleTransport, PolarStreamer, StreamerConfig
from bridge_edge.devices.urls import SourceURL
from bridge_edge.errors import DependencyMissingError, DeviceError

log = logging.getLogger(__name__)

GRAMMAR = (
    "ble://<address or name>?profile=polar-h10|polar-verity|polar-oh1|hrs[&stream=ecg|ppg]"
    "[&watchdog=<s>][&scan_timeout=<s>]"
)
OPTIONS = ("profile", "stream", "watchdog", "scan_timeout")
STREAM_OF_PROFILE = {"polar-h10": "ecg", "polar-verity": "ppg", "polar-oh1": "ppg", "hrs": "hrs"}
MIN_BLEAK = (2, 1)


def import_bleak():
    try:
        import bleak
    except ImportError as err:
        raise DependencyMissingError(
            "ble:// sources need bleak >= 2.1",
            package="bleak",
            install_hint="pip install 'bridge-edge[device]'",
        ) from err
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("bleak")
    except PackageNotFoundError:  # vendored or unusual install: trust it
        return bleak
    parts = tuple(int(p) for p in installed.split(".")[:2] if p.isdigit())
    if parts < MIN_BLEAK:
        raise DependencyMissingError(
            f"bleak {installed} is too old; need >= 2.1 (AcquireNotify)",
            package="bleak",
            install_hint="pip install -U 'bleak>=2.1'",
        )
    return bleak


class BleakTransport:
    """BleTransport over bleak: a fresh BleakClient per connect (BlueZ drops the old device object).

    bleak's own errors become DeviceError, which the session loop answers with a reconnect."""

    def __init__(self) -> None:
        self._client = None

    async def _call(self, operation: str, awaitable):
        bleak = import_bleak()
        try:
            return await awaitable
        except bleak.exc.BleakError as err:
            raise DeviceError(
                f"BLE {operation} failed: {err}", device=str(self._client), reason=str(err)
            ) from err

    async def scan(self, target: str, timeout: float):
        bleak = import_bleak()
        if ":" in target or "-" in target:  # a MAC address (Linux) or a CoreBluetooth UUID
            return await self._call(
                "scan", bleak.BleakScanner.find_device_by_address(target, timeout=timeout)
            )
        return await self._call("scan", bleak.BleakScanner.find_device_by_name(target, timeout=timeout))

    async def connect(self, device, on_disconnect: Callable[[], None]) -> None:
        bleak = import_bleak()
        self._client = bleak.BleakClient(
            device, disconnected_callback=lambda _client: on_disconnect(), timeout=20.0
        )
        await self._call("connect", self._client.connect())

    async def start_notify(self, uuid: str, callback) -> None:
        await self._call(f"subscribe {uuid}", self._client.start_notify(uuid, callback))

    async def read(self, uuid: str) -> bytes:
        return bytes(await self._call(f"read {uuid}", self._client.read_gatt_char(uuid)))

    async def write(self, uuid: str, data: bytes) -> None:
        await self._call(f"write {uuid}", self._client.write_gatt_char(uuid, data, response=True))

    async def disconnect(self) -> None:
        if self._client is not None:
            await self._call("disconnect", self._client.disconnect())


async def scan_nearby(timeout: float = 5.0) -> list[dict]:
    """Nearby BLE devices for `bridge-edge devices --ble`."""
    bleak = import_bleak()
    found = await bleak.BleakScanner.discover(timeout=timeout, return_adv=True)
    return [
        {
            "address": device.address,
            "name": device.name,
            "rssi": adv.rssi,
            "services": list(adv.service_uuids),
        }
        for device, adv in found.values()
    ]


class BleSource:
    """Runs a PolarStreamer on its own asyncio loop in a worker thread; iterate for chunks."""

    def __init__(
        self, config: StreamerConfig, transport_factory: Callable[[], BleTransport] = BleakTransport
    ):
        self.config = config
        profile = config.profile
        self.info = StreamInfo(
            f"{profile.name} {profile.measurement} {config.target}",
            profile.fs,
            profile.channels,
            profile.units,
            resolution=(profile.scale,) * len(profile.channels),
            meta={"profile": profile.name, "device_epoch_unix_ns": POLAR_EPOCH_OFFSET_NS},
        )
        self.stats = SourceStats()
        self._chunks: queue.Queue = queue.Queue()
        self.streamer = PolarStreamer(transport_factory, config, self.stats, self._chunks.put)
        self.streamer.on_fallback = self._fall_back_to_hrs
        self._thread: threading.Thread | None = None
        self._loop = None
        self.error: BaseException | None = None

    def _fall_back_to_hrs(self) -> None:
        hrs = PROFILES["hrs"]
        self.info = StreamInfo(
            f"hrs {self.config.target}",
            hrs.fs,
            hrs.channels,
            hrs.units,
            meta={**self.info.meta, "fallback": "hrs"},
        )

    def _worker(self) -> None:
        import asyncio

        try:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.streamer.run())
        except BaseException as err:  # noqa: BLE001 - surfaced to the iterating thread
            self.error = err
        finally:
            if self._loop is not None:
                self._loop.close()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="ble-source", daemon=True)
            self._thread.start()

    def __iter__(self) -> Iterator[Chunk]:
        self.start()
        try:
            while True:
                try:
                    chunk = self._chunks.get(timeout=0.1)
                except queue.Empty:
                    if not self._thread.is_alive():
                        break
                    continue
                self.info.meta["fs_measured"] = self.streamer.rate.measured_hz
                yield chunk
            if self.error is not None:
                raise DeviceError(
                    f"BLE worker failed: {self.error}", device=self.config.target, reason=str(self.error)
                ) from self.error
        finally:
            self.close()  # Ctrl-C in the consumer lands here too: the worker sends stop

    def close(self, timeout_s: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if thread is None or not thread.is_alive():
            self.streamer.request_stop()
            return
        try:
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(self.streamer.request_stop)
            else:
                self.streamer.request_stop()
        except RuntimeError:  # loop closed meanwhile
            pass
        thread.join(timeout_s)
        if thread.is_alive():
            log.error("BLE worker did not stop within %.1f s; the sensor may still be streaming", timeout_s)


def config_from_url(url: str) -> StreamerConfig:
    parsed = SourceURL.parse(url, "ble", GRAMMAR, OPTIONS)
    if not parsed.target:
        raise parsed.fail("missing device address or name")
    profile_name = parsed.choice("profile", tuple(PROFILES), "polar-h10")
    stream = parsed.choice("stream", ("ecg", "ppg"), None)
    if stream is not None and stream != STREAM_OF_PROFILE[profile_name]:
        raise parsed.fail(f"profile {profile_name} streams {STREAM_OF_PROFILE[profile_name]}, not {stream}")
    config = StreamerConfig(parsed.target, PROFILES[profile_name])
    return replace(
        config,
        watchdog_s=parsed.positive("watchdog", config.watchdog_s),
        scan_timeout_s=parsed.positive("scan_timeout", config.scan_timeout_s),
    )


def open(url: str) -> BleSource:
    return BleSource(config_from_url(url))
