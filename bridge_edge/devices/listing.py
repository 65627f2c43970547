"""What `bridge-edge devices` lists: serial ports (pyserial) and, on request, nearby BLE sensors."""

from __future__ import annotations

import asyncio

from bridge_edge.errors import DependencyMissingError, DeviceError

# Advertised names -> the ble:// profile to use with them.
BLE_HINTS = (
    ("Polar H10", "profile=polar-h10"),
    ("Polar H9", "profile=hrs"),
    ("Polar Sense", "profile=polar-verity"),
    ("Polar OH1", "profile=polar-oh1"),
)
HRS_UUID_PREFIX = "0000180d"


def serial_ports() -> list[dict]:
    try:
        from serial.tools import list_ports
    except ImportError as err:
        raise DependencyMissingError(
            "listing serial ports needs pyserial",
            package="pyserial",
            install_hint="pip install 'bridge-edge[device]'",
        ) from err
    return [
        {
            "device": p.device,
            "description": p.description,
            "vid": f"{p.vid:04x}" if p.vid else None,
            "pid": f"{p.pid:04x}" if p.pid else None,
            "serial_number": p.serial_number,
            "location": p.location,
        }
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
    ]


def ble_devices(seconds: float) -> list[dict]:
    from bridge_edge.devices.ble import scan_nearby

    try:
        devices = asyncio.run(scan_nearby(seconds))
    except DependencyMissingError:
        raise
    except Exception as err:  # bleak raises backend-specific errors when BlueZ or the adapter is missing
        raise DeviceError(
            f"BLE scan failed: {err} (is BlueZ running and a Bluetooth adapter present? "
            "try `bluetoothctl show`)",
            device="bluetooth",
            reason=str(err),
        ) from err
    for device in devices:
        name = device["name"] or ""
        hint = next((h for prefix, h in BLE_HINTS if name.startswith(prefix)), None)
        if hint is None and any(u.lower().startswith(HRS_UUID_PREFIX) for u in device["services"]):
            hint = "profile=hrs"
        device["hint"] = hint or ""
    return sorted(devices, key=lambda d: -(d["rssi"] or -999))
