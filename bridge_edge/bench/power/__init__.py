"""Energy sources, one module each; ``probe_all`` is the one place that picks them.

Jetson: INA3221 hwmon, else tegrastats (both measure the same rails; never both). x86: RAPL.
NVIDIA GPUs: NVML. Whatever cannot be read comes back as ``Unmeasured`` with the reason.
"""

from __future__ import annotations

from pathlib import Path

from bridge_edge.bench.power import hwmon_ina3221, nvml, rapl, tegrastats
from bridge_edge.bench.power.base import EnergyInterval, EnergyMeter, Unmeasured

__all__ = ["EnergyInterval", "EnergyMeter", "Unmeasured", "probe_all"]


def probe_all(root: Path = Path("/")) -> tuple[list[EnergyMeter], list[Unmeasured]]:
    meters: list[EnergyMeter] = []
    unmeasured: list[Unmeasured] = []

    def keep(result) -> bool:
        (unmeasured if isinstance(result, Unmeasured) else meters).append(result)
        return not isinstance(result, Unmeasured)

    if not keep(hwmon_ina3221.probe(root)):
        keep(tegrastats.probe())
    keep(rapl.probe(root / "sys/class/powercap"))
    keep(nvml.probe())
    return meters, unmeasured
