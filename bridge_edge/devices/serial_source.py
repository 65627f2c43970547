"""serial:// — sensors on a serial port (USB CDC, FTDI, a pty).

Grammar::

    serial://<path>?format=csv|sparkfun|ad8232|frame&fs=<Hz>[&baud=115200][&channels=<name,...>]
        [&units=<unit,...>][&scale=<units per LSB,...>][&dtr=0|1][&rts=0|1]
        [&vid=<hex>&pid=<hex>][&serial_number=<text>]

``fs`` is required: hobby sketches send no clock, so the rate is declared, then checked against
timestamps (a mismatch is a warning with numbers). ``channels`` default: ``ppg`` (csv, frame),
``ir`` (sparkfun: any of red, ir, green), ``ecg`` (ad8232). ``scale`` turns integer counts into
physical units (frame and text formats; default 1).

Robustness (docs/sources.md): DTR/RTS are de-asserted before ``open()`` (an asserted DTR resets
Uno-class boards and can hold an ESP32 in its bootloader); reads time out after 50 ms; on a
``SerialException`` the port is closed, found again by identity (VID/PID/serial number when
given, else the same path — use /dev/serial/by-id/...) and reopened with capped backoff. The
outage becomes a gap plus disconnect/reconnect events.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.ratecheck import RateCheck
from bridge_edge.devices.serial_formats import SPARKFUN_FIELDS
from bridge_edge.devices.serial_streams import FrameStream, TextStream
from bridge_edge.devices.urls import SourceURL, flag
from bridge_edge.errors import DependencyMissingError, DeviceError

log = logging.getLogger(__name__)

GRAMMAR = (
    "serial://<path>?format=csv|sparkfun|ad8232|frame&fs=<Hz>[&baud=115200][&channels=<name,...>]"
    "[&units=<unit,...>][&scale=<units per LSB,...>][&dtr=0|1][&rts=0|1][&vid=<hex>&pid=<hex>][&serial_number=<text>]"
)
OPTIONS = ("format", "fs", "baud", "channels", "units", "scale", "dtr", "rts", "vid", "pid", "serial_number")
FORMATS = ("csv", "sparkfun", "ad8232", "frame")
DEFAULT_CHANNELS = {"csv": ("ppg",), "frame": ("ppg",), "sparkfun": ("ir",), "ad8232": ("ecg",)}
READ_TIMEOUT_S = 0.05
BACKOFF_START_S, BACKOFF_CAP_S = 0.05, 1.0


@dataclass(frozen=True)
class PortIdentity:
    """How to find the same sensor again after an unplug."""

    path: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None

    def locate(self) -> str | None:
        """Current device path of this sensor, or None while it is absent."""
        if self.vid is None and self.serial_number is None:
            return self.path if os.path.exists(self.path) else None
        from serial.tools import list_ports

        for port in list_ports.comports():
            if self.vid is not None and (port.vid, port.pid) != (self.vid, self.pid):
                continue
            if self.serial_number is not None and port.serial_number != self.serial_number:
                continue
            return port.device
        return None


@dataclass(frozen=True)
class SerialConfig:
    identity: PortIdentity
    fmt: str
    fs: float
    baud: int = 115200
    channels: tuple[str, ...] = ("ppg",)
    units: tuple[str, ...] = ("a.u.",)
    scale: tuple[float, ...] = (1.0,)
    dtr: bool = False
    rts: bool = False

    @classmethod
    def from_url(cls, url: str) -> SerialConfig:
        parsed = SourceURL.parse(url, "serial", GRAMMAR, OPTIONS)
        if not parsed.target:
            raise parsed.fail("missing device path")
        fmt = parsed.choice("format", FORMATS, None)
        if fmt is None:
            raise parsed.fail("missing format=")
        fs = parsed.positive("fs", None)
        if fs is None:
            raise parsed.fail("missing fs= (serial sketches send no clock; declare the rate)")
        channels = tuple(parsed.get("channels", _names, DEFAULT_CHANNELS[fmt]))
        if fmt == "sparkfun" and not set(channels) <= set(SPARKFUN_FIELDS):
            raise parsed.fail(
                f"sparkfun channels must be among {','.join(SPARKFUN_FIELDS)}, got {','.join(channels)}"
            )
        if fmt == "ad8232" and len(channels) != 1:
            raise parsed.fail("ad8232 has exactly one channel")
        units = parsed.get("units", _names, ("a.u.",) * len(channels))
        scale = parsed.get("scale", _floats, (1.0,))
        for name, values in (("units", units), ("scale", scale)):
            if len(values) not in (1, len(channels)):
                raise parsed.fail(f"{name} has {len(values)} entries for {len(channels)} channels")
        vid = parsed.get("vid", _hex, None)
        pid = parsed.get("pid", _hex, None)
        if (vid is None) != (pid is None):
            raise parsed.fail("vid and pid go together")
        identity = PortIdentity(parsed.target, vid, pid, parsed.query.get("serial_number"))
        return cls(
            identity,
            fmt,
            fs,
            parsed.get("baud", int, 115200),
            channels,
            tuple(units) * (len(channels) // len(units)),
            tuple(scale) * (len(channels) // len(scale)),
            parsed.get("dtr", flag, False),
            parsed.get("rts", flag, False),
        )


def _names(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise ValueError(value)
    return names


def _floats(value: str) -> tuple[float, ...]:
    return tuple(float(v) for v in value.split(","))


def _hex(value: str) -> int:
    return int(value, 16)


def _pyserial():
    try:
        import serial
    except ImportError as err:  # pragma: no cover - pyserial is in the device extra
        raise DependencyMissingError(
            "serial:// sources need pyserial",
            package="pyserial",
            install_hint="pip install 'bridge-edge[device]'",
        ) from err
    return serial


class SerialSource:
    """Reads one serial sensor; iterate for chunks. close() may be called from another thread."""

    def __init__(self, config: SerialConfig):
        self.config = config
        self.info = StreamInfo(
            f"serial {config.fmt} {config.identity.path}",
            config.fs,
            config.channels,
            config.units,
            # integer formats keep their LSB exactly; csv may carry decimals, so it is float data
            resolution=None if config.fmt == "csv" else config.scale,
            meta={"format": config.fmt},
        )
        self.stats = SourceStats()
        self.rate = RateCheck(config.fs, self.info.name)
        if config.fmt == "frame":
            self.stream = FrameStream(config.fs, len(config.channels), np.array(config.scale), self.stats)
        else:
            self.stream = TextStream(config.fmt, config.fs, config.channels, self.stats)
        self._port = None
        self._closed = False

    # -- port handling -----------------------------------------------------------------------

    def _open(self, path: str):
        serial = _pyserial()
        port = serial.Serial()
        port.port = path
        port.baudrate = self.config.baud
        port.timeout = READ_TIMEOUT_S  # never block forever (readline without timeout hangs)
        port.write_timeout = 1.0
        port.dtr = self.config.dtr  # set before open(): pyserial applies them as the port opens
        port.rts = self.config.rts
        port.exclusive = True
        port.open()
        return port

    def _read(self) -> bytes:
        waiting = self._port.in_waiting
        return self._port.read(waiting or 1)

    def _reconnect(self, reason: str) -> bool:
        serial = _pyserial()
        t_lost = time.monotonic_ns()
        self.stats.disconnects += 1
        self.stats.event("disconnect", reason=reason, path=self._port.port if self._port else None)
        log.warning("%s: disconnected (%s); reopening", self.info.name, reason)
        self.stream.on_disconnect()
        self._close_port()
        delay = BACKOFF_START_S
        while not self._closed:
            path = self.config.identity.locate()
            if path is not None:
                try:
                    self._port = self._open(path)
                except (serial.SerialException, OSError) as err:
                    log.debug("reopen of %s failed: %s", path, err)
                else:
                    outage_ns = time.monotonic_ns() - t_lost
                    self.stats.reconnects += 1
                    self.stats.event("reconnect", path=path, outage_s=outage_ns / 1e9)
                    log.info("%s: reconnected on %s after %.2f s", self.info.name, path, outage_ns / 1e9)
                    self.stream.on_reconnect(outage_ns)
                    self.rate.reset()
                    return True
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP_S)
        return False

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception as err:  # noqa: BLE001 - closing a vanished device may fail; nothing left to save
                log.debug("close failed: %s", err)
            self._port = None

    # -- Source protocol ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Chunk]:
        serial = _pyserial()
        path = self.config.identity.locate()
        if path is None:
            raise DeviceError(
                f"serial port {self.config.identity.path} not found; `bridge-edge devices` lists ports",
                device=self.config.identity.path,
                reason="not found",
            )
        try:
            self._port = self._open(path)
        except (serial.SerialException, OSError) as err:
            raise DeviceError(f"cannot open serial port {path}: {err}", device=path, reason=str(err)) from err
        # pyserial flushes the input buffer on open(): bytes sent before this moment were never ours
        self.stats.event("connect", path=path)
        try:
            while not self._closed:
                try:
                    data = self._read()
                except (serial.SerialException, OSError, TypeError) as err:
                    # TypeError: pyserial's fd is gone when close() raced with a read
                    if self._closed or not self._reconnect(str(err)):
                        break
                    continue
                if not data:
                    continue
                for chunk in self.stream.feed(data, time.monotonic_ns()):
                    self.stats.count_chunk(chunk)
                    self._check_rate(chunk)
                    yield chunk
        finally:
            self._close_port()

    def _check_rate(self, chunk: Chunk) -> None:
        t_last = int(chunk.t_device_ns[-1]) if chunk.t_device_ns is not None else chunk.t_host_ns
        message = self.rate.update(chunk.n + chunk.gap_before, t_last)
        if message:
            self.stats.event("rate_mismatch", declared_hz=self.config.fs, measured_hz=self.rate.measured_hz)
        if self.rate.measured_hz is not None:
            self.info.meta["fs_measured"] = self.rate.measured_hz
            if chunk.t_device_ns is None:
                self.info.meta["arrival_jitter_ms"] = self.rate.jitter_ms

    def close(self) -> None:
        self._closed = True
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            try:
                port.cancel_read()
            except Exception as err:  # noqa: BLE001 - the reader thread closes the port itself
                log.debug("cancel_read failed: %s", err)


def open(url: str) -> SerialSource:
    return SerialSource(SerialConfig.from_url(url))
