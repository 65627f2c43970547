"""Which Jetson rails make up the module total (docs/benchmarks.md).

Orin Nano/NX (and older Nano/TX2/Xavier NX) have an input rail, ``VDD_IN`` (``POM_5V_IN`` on the
original Nano): it *is* the module total, and the other rails (VDD_CPU_GPU_CV, VDD_SOC, ...) are
subsets of it, so they are never added to it. AGX Orin has no input rail: the total is the sum
of its real rails (VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO). ``NC`` channels are not
connected and are skipped. The carrier board is measured by none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
NOT_CONNECTED = "NC"


@dataclass(frozen=True)
class ModuleTotal:
    milliwatts: float
    rails: tuple[str, ...]  # the rails the total is made of


def real_rails(rails_mw: Mapping[str, float]) -> dict[str, float]:
    return {name: mw for name, mw in rails_mw.items() if name.upper() != NOT_CONNECTED}


def module_total(rails_mw: Mapping[str, float]) -> ModuleTotal | None:
    """The module's total power from its rail readings, or None when there are no rails."""
    rails = real_rails(rails_mw)
    for name in INPUT_RAILS:
        if name in rails:
            return ModuleTotal(milliwatts=float(rails[name]), rails=(name,))
    if not rails:
        return None
    return ModuleTotal(milliwatts=float(sum(rails.values())), rails=tuple(rails))
