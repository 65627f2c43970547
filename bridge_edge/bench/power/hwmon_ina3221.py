"""Jetson INA3221 power monitors read directly from hwmon (finer in time than tegrastats).

The chip is found by name, never by a fixed ``hwmonN`` (the number changes between boots):
``/sys/bus/i2c/devices/*/name`` == "ina3221", then its ``hwmon/hwmon*/`` directory; also
``/sys/class/hwmon/*/name``. Per channel N (kernel Documentation/hwmon/ina3221.rst):
``inN_label`` (rail name), ``inN_input`` (bus mV), ``currN_input`` (mA); mW = mV × mA / 1000.
Channels labelled NC are skipped; AGX Orin has two chips, whose rails are pooled.
The module total follows ``rails.module_total`` (VDD_IN alone where it exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge_edge.bench.power.base import IntegratingMeter, Unmeasured
from bridge_edge.bench.power.rails import module_total, real_rails

CHIP_NAME = "ina3221"


@dataclass(frozen=True)
class Rail:
    label: str
    voltage_path: Path  # mV
    current_path: Path  # mA

    def read_mw(self) -> float:
        return int(self.voltage_path.read_text()) * int(self.current_path.read_text()) / 1000.0


def find_hwmon_dirs(root: Path = Path("/")) -> list[Path]:
    """hwmon directories of every INA3221 chip, found by the chip name."""
    found: set[Path] = set()
    for name_file in (root / "sys/bus/i2c/devices").glob("*/name"):
        if name_file.read_text().strip() == CHIP_NAME:
            found.update(p.resolve() for p in name_file.parent.glob("hwmon/hwmon*"))
    for name_file in (root / "sys/class/hwmon").glob("*/name"):
        if name_file.read_text().strip() == CHIP_NAME:
            found.add(name_file.parent.resolve())
    return sorted(found)


def find_rails(root: Path = Path("/")) -> dict[str, Rail]:
    rails: dict[str, Rail] = {}
    for hwmon in find_hwmon_dirs(root):
        for label_file in sorted(hwmon.glob("in*_label")):
            channel = label_file.name[len("in") : -len("_label")]
            label = label_file.read_text().strip()
            rail = Rail(label, hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input")
            if rail.voltage_path.exists() and rail.current_path.exists():
                rails[label] = rail
    return {label: rails[label] for label in real_rails({k: 0.0 for k in rails})}


def read_rails_mw(rails: dict[str, Rail]) -> dict[str, float]:
    return {label: rail.read_mw() for label, rail in rails.items()}


def probe(root: Path = Path("/"), period_s: float = 0.01) -> IntegratingMeter | Unmeasured:
    try:
        rails = find_rails(root)
        if not rails:
            return Unmeasured("ina3221", "no INA3221 hwmon chip with labelled rails (not a Jetson)")
        total = module_total(read_rails_mw(rails))
    except PermissionError as err:
        return Unmeasured("ina3221", f"permission denied reading {err.filename}")
    except (OSError, ValueError) as err:
        return Unmeasured("ina3221", f"unreadable INA3221 hwmon files: {err}")
    assert total is not None  # rails is not empty
    used = {label: rails[label] for label in total.rails}

    def read_watts() -> float:
        return sum(rail.read_mw() for rail in used.values()) / 1000.0

    return IntegratingMeter("ina3221", f"Jetson module ({'+'.join(total.rails)})", read_watts, period_s)
