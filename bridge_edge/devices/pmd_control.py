"""PMD control point (CP) messages, pure: request bytes to send, responses to parse.

Requests (client -> sensor): ``[op][measurement type | 0x80 if offline][settings TLVs]``; op 1 get
settings, 2 start, 3 stop. Responses arrive as indications: ``[0xF0][op][type][status][more]
[params...]`` ("more" and params only when status is 0). A CP notification starting with 0x01
instead means the sensor stopped measurements on its own. The feature read answers ``0x0F``
then a bitmap of supported measurements.

Settings TLV: ``[setting type][count][count little-endian values]``, widths by type below.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bridge_edge.devices.pmd import MEASUREMENT_TYPES
from bridge_edge.errors import FrameError

OP_CODES = {
    1: "GET_MEASUREMENT_SETTINGS",
    2: "REQUEST_MEASUREMENT_START",
    3: "STOP_MEASUREMENT",
    4: "GET_SDK_MODE_SETTINGS",
    5: "GET_MEASUREMENT_STATUS",
    6: "GET_SDK_MODE_STATUS",
}
STATUSES = (
    "SUCCESS",
    "ERROR_INVALID_OP_CODE",
    "ERROR_INVALID_MEASUREMENT_TYPE",
    "ERROR_NOT_SUPPORTED",
    "ERROR_INVALID_LENGTH",
    "ERROR_INVALID_PARAMETER",
    "ERROR_ALREADY_IN_STATE",
    "ERROR_INVALID_RESOLUTION",
    "ERROR_INVALID_SAMPLE_RATE",
    "ERROR_INVALID_RANGE",
    "ERROR_INVALID_MTU",
    "ERROR_INVALID_NUMBER_OF_CHANNELS",
    "ERROR_INVALID_STATE",
    "ERROR_DEVICE_IN_CHARGER",
    "ERROR_DISK_FULL",
)
SETTING_WIDTHS = {  # setting type -> (name, bytes per value)
    0: ("sample_rate", 2),
    1: ("resolution", 2),
    2: ("range", 2),
    3: ("range_milliunit", 4),
    4: ("channels", 1),
    5: ("factor", 4),
    6: ("security", 16),
}
SETTING_TYPES = {name: code for code, (name, _) in SETTING_WIDTHS.items()}
FEATURE_BITS = {"ecg": 0x01, "ppg": 0x02, "acc": 0x04, "ppi": 0x08, "gyro": 0x20, "magnetometer": 0x40}
ONLINE_MEASUREMENT_STOPPED = 1

# Byte-exact commands (docs/sources.md): H10 ECG at 130 Hz, 14 bit; stop ECG.
H10_ECG_SETTINGS = {"sample_rate": 130, "resolution": 14}


@dataclass(frozen=True)
class CpResponse:
    op_code: int
    measurement_type: int
    status: int
    more: bool
    parameters: bytes

    @property
    def op_code_name(self) -> str:
        return OP_CODES.get(self.op_code, f"OP_{self.op_code}")

    @property
    def status_name(self) -> str:
        return STATUSES[self.status] if self.status < len(STATUSES) else f"ERROR_UNKNOWN_{self.status}"

    @property
    def ok(self) -> bool:
        return self.status == 0


@dataclass(frozen=True)
class MeasurementStopped:
    """Unsolicited: the sensor stopped these measurements itself."""

    measurement_types: tuple[int, ...] = field(default_factory=tuple)


def parse_cp_message(data: bytes) -> CpResponse | MeasurementStopped:
    if not data:
        raise FrameError("empty control-point message", reason="empty", data="")
    if data[0] == ONLINE_MEASUREMENT_STOPPED:
        return MeasurementStopped(tuple(data[1:]))
    if data[0] != 0xF0 or len(data) < 4:
        raise FrameError(
            f"control-point message {bytes(data).hex()} is not a response (0xF0 op type status ...)",
            reason="not_a_response",
            data=bytes(data).hex(),
        )
    op, mtype, status = data[1], data[2], data[3]
    if status != 0:
        return CpResponse(op, mtype, status, False, b"")
    more = len(data) > 4 and data[4] != 0
    return CpResponse(op, mtype, status, more, bytes(data[5:]))


def parse_settings(data: bytes) -> dict[str, list[int]]:
    """Settings TLVs -> {name: [values]} (values decoded as signed LE integers, as Polar does)."""
    settings: dict[str, list[int]] = {}
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data) or data[offset] not in SETTING_WIDTHS:
            raise FrameError(
                f"bad settings TLV at byte {offset} of {bytes(data).hex()}",
                reason="bad_settings",
                data=bytes(data).hex(),
            )
        name, width = SETTING_WIDTHS[data[offset]]
        count = data[offset + 1]
        values = data[offset + 2 : offset + 2 + count * width]
        if len(values) < count * width:
            raise FrameError(f"settings TLV {name} truncated", reason="bad_settings", data=bytes(data).hex())
        settings.setdefault(name, []).extend(
            int.from_bytes(values[i * width : (i + 1) * width], "little", signed=True) for i in range(count)
        )
        offset += 2 + count * width
    return settings


def factor_from(settings: dict[str, list[int]]) -> float | None:
    """FACTOR is a float32 sent as its bit pattern."""
    if "factor" not in settings:
        return None
    (value,) = struct.unpack("<f", struct.pack("<i", settings["factor"][0]))
    return value


def encode_settings(settings: dict[str, int]) -> bytes:
    """One value per setting, count 1, in the order given (FACTOR is never sent)."""
    out = bytearray()
    for name, value in settings.items():
        code = SETTING_TYPES[name]
        if name == "factor":
            continue
        out += bytes([code, 1]) + int(value).to_bytes(SETTING_WIDTHS[code][1], "little", signed=value < 0)
    return bytes(out)


def start_request(
    measurement: str,
    settings: dict[str, int],
    offline: bool = False,
    security: tuple[int, bytes] | None = None,
) -> bytes:
    """Start command; security = (strategy, 16-byte key) appends the SECURITY setting."""
    request = bytes([2, MEASUREMENT_TYPES[measurement] | (0x80 if offline else 0)]) + encode_settings(
        settings
    )
    if security is not None:
        strategy, key = security
        request += bytes([SETTING_TYPES["security"], 1, strategy]) + bytes(key)
    return request


def stop_request(measurement: str) -> bytes:
    return bytes([3, MEASUREMENT_TYPES[measurement]])


def settings_request(measurement: str) -> bytes:
    return bytes([1, MEASUREMENT_TYPES[measurement]])


def parse_features(data: bytes) -> set[str]:
    """CP feature read: 0x0F then a bitmap (an H10 answers 0f 05 = ECG + ACC)."""
    if len(data) < 2 or data[0] != 0x0F:
        raise FrameError(
            f"PMD feature read {bytes(data).hex()} does not start with 0x0F",
            reason="bad_features",
            data=bytes(data).hex(),
        )
    return {name for name, bit in FEATURE_BITS.items() if data[1] & bit}
