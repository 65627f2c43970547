"""Power sources: tegrastats parser on real lines, RAPL and INA3221 readers on fake sysfs trees."""

import sys
import time
from pathlib import Path

import pytest

from bridge_edge.bench.power import hwmon_ina3221, probe_all, rapl, tegrastats
from bridge_edge.bench.power.base import IntegratingMeter, Unmeasured
from bridge_edge.bench.power.rails import module_total

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tegrastats"


def fixture_lines(name: str) -> list[str]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


# --- tegrastats ----------------------------------------------------------------------------------


def test_orin_nano_jp6_uses_vdd_in_alone_never_adding_subrails():
    first, second = (tegrastats.parse_line(line) for line in fixture_lines("orin_nano_nx_jp6.txt"))
    assert first.rails_mw == {"VDD_IN": 5704, "VDD_CPU_GPU_CV": 831, "VDD_SOC": 1624}
    assert first.total.milliwatts == 5704 and first.total.rails == ("VDD_IN",)
    # "598mW/598" (average without a unit, as printed on that device) still parses
    assert second.rails_mw["VDD_CPU_GPU_CV"] == 598
    assert second.total.milliwatts == 3913


def test_agx_orin_total_is_the_sum_of_real_rails_and_skips_nc():
    first, second = (tegrastats.parse_line(line) for line in fixture_lines("agx_orin_jp6.txt"))
    assert first.total.milliwatts == 2340 + 390 + 4025 + 301
    assert "NC" not in first.total.rails
    assert second.total.milliwatts == 3150 + 14312 + 4968 + 1091


def test_jetpack7_three_value_rails_take_the_instantaneous_value():
    agx, agx2, nano, nx = (tegrastats.parse_line(line) for line in fixture_lines("jp7.txt"))
    assert agx.rails_mw == {"VDD_GPU_SOC": 5139, "VDD_CPU_CV": 3268, "VIN_SYS_5V0": 5500}
    # now / avg / max differ on this line: the first (instantaneous) value is kept
    assert agx2.rails_mw["VDD_CPU_CV"] == 1137
    assert agx2.total.milliwatts == 3034 + 1137 + 4939
    assert nano.total.milliwatts == 4548 and nano.total.rails == ("VDD_IN",)
    assert nx.rails_mw == {"VDD_IN": 7280}


def test_old_unitless_rails_and_memory_fields_are_not_confused():
    xavier, nano = (tegrastats.parse_line(line) for line in fixture_lines("pre_orin_no_units.txt"))
    assert "RAM" not in xavier.rails_mw and "SWAP" not in xavier.rails_mw
    assert xavier.total.milliwatts == 14025
    assert nano.total.rails == ("POM_5V_IN",) and nano.total.milliwatts == 4520
    assert "IRAM" not in nano.rails_mw


def test_line_without_rails_has_no_total():
    sample = tegrastats.parse_line("RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ 10%@1300")
    assert sample.rails_mw == {} and sample.total is None
    assert module_total({"NC": 0.0}) is None


# --- RAPL ----------------------------------------------------------------------------------------


def write_rapl(root: Path, domain: str, name: str, energy_uj: int, range_uj: int) -> Path:
    d = root / domain
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return d / "energy_uj"


def test_rapl_counter_delta_wraps_at_max_energy_range():
    assert rapl.counter_delta(100, 350, 1000) == 250
    # 990 -> wrap past 1000 to 0 -> 20: 10 µJ to the top, 1 for the wrap step, 20 after
    assert rapl.counter_delta(990, 20, 1000) == 31


def test_rapl_meter_sums_packages_only_and_handles_wrap(tmp_path):
    r = 262_143_999_938
    pkg0 = write_rapl(tmp_path, "intel-rapl:0", "package-0", r - 1_000_000, r)
    pkg1 = write_rapl(tmp_path, "intel-rapl:1", "package-1", 5_000_000, r)
    write_rapl(tmp_path, "intel-rapl:0:0", "core", 123, r)  # a sub-domain: never added
    write_rapl(tmp_path, "intel-rapl:2", "psys", 0, r)  # contains the packages: never added
    meter = rapl.probe(tmp_path)
    assert isinstance(meter, rapl.RaplMeter)
    assert [d.name for d in meter.domains] == ["package-0", "package-1"]
    meter.start()
    pkg0.write_text("2000000\n")  # wrapped: 1,000,000 to the top (+1) then 2,000,000
    pkg1.write_text("8000000\n")
    interval = meter.stop()
    assert interval.joules == pytest.approx((1_000_001 + 2_000_000 + 3_000_000) * 1e-6)


def test_rapl_absent_or_unreadable_is_unmeasured_not_zero(tmp_path):
    absent = rapl.probe(tmp_path / "nope")
    assert isinstance(absent, Unmeasured) and "absent" in absent.reason
    write_rapl(tmp_path, "intel-rapl:0", "package-0", 1, 10)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("garbage")
    broken = rapl.probe(tmp_path)
    assert isinstance(broken, Unmeasured) and "unreadable" in broken.reason


# --- INA3221 hwmon -------------------------------------------------------------------------------


def write_ina3221(root: Path, i2c: str, hwmon: str, channels: dict[int, tuple[str, int, int]]) -> Path:
    dev = root / "sys/bus/i2c/devices" / i2c
    dev.mkdir(parents=True)
    (dev / "name").write_text("ina3221\n")
    h = dev / "hwmon" / hwmon
    h.mkdir(parents=True)
    (h / "name").write_text("ina3221\n")
    for ch, (label, mv, ma) in channels.items():
        (h / f"in{ch}_label").write_text(label + "\n")
        (h / f"in{ch}_input").write_text(f"{mv}\n")
        (h / f"curr{ch}_input").write_text(f"{ma}\n")
    return h


def test_ina3221_found_by_name_and_label_uses_vdd_in_on_orin_nano(tmp_path):
    # hwmon number is deliberately unusual: the reader must find it by the chip name
    h = write_ina3221(
        tmp_path,
        "1-0040",
        "hwmon7",
        {1: ("VDD_IN", 5000, 1200), 2: ("VDD_CPU_GPU_CV", 5000, 300), 3: ("VDD_SOC", 5000, 250)},
    )
    (tmp_path / "sys/bus/i2c/devices/0-0050").mkdir(parents=True)
    (tmp_path / "sys/bus/i2c/devices/0-0050/name").write_text("eeprom\n")
    rails = hwmon_ina3221.find_rails(tmp_path)
    assert set(rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert hwmon_ina3221.read_rails_mw(rails)["VDD_IN"] == 6000.0  # 5000 mV × 1200 mA
    meter = hwmon_ina3221.probe(tmp_path, period_s=0.005)
    assert isinstance(meter, IntegratingMeter) and "VDD_IN" in meter.scope
    assert "VDD_SOC" not in meter.scope
    meter.start()
    time.sleep(0.1)
    interval = meter.stop()
    assert interval.samples > 3
    assert interval.mean_watts == pytest.approx(6.0)
    assert (h / "in1_input").exists()


def test_ina3221_agx_two_chips_sum_real_rails_skip_nc(tmp_path):
    write_ina3221(
        tmp_path,
        "1-0040",
        "hwmon2",
        {1: ("VDD_GPU_SOC", 5000, 400), 2: ("VDD_CPU_CV", 5000, 200), 3: ("VIN_SYS_5V0", 5000, 800)},
    )
    write_ina3221(tmp_path, "1-0041", "hwmon3", {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 1800, 100)})
    rails = hwmon_ina3221.find_rails(tmp_path)
    assert "NC" not in rails
    total = module_total(hwmon_ina3221.read_rails_mw(rails))
    assert total.milliwatts == pytest.approx(2000 + 1000 + 4000 + 180)


def test_probe_all_on_a_bare_tree_reports_every_source_unmeasured_with_reasons(tmp_path):
    meters, unmeasured = probe_all(tmp_path)
    sources = {u.source for u in unmeasured}
    assert "ina3221" in sources and "rapl" in sources
    assert all(u.reason for u in unmeasured)
    assert not any(m.source in {"ina3221", "rapl"} for m in meters)


# --- NVML (a stand-in pynvml module: the real one needs an NVIDIA driver) -------------------------


def fake_pynvml(energy_mj: list[int], fail: bool = False):
    import types

    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init():
        if fail:
            raise NVMLError("Driver Not Loaded")

    readings = iter(energy_mj)
    mod.NVMLError = NVMLError
    mod.nvmlInit = init
    mod.nvmlDeviceGetCount = lambda: 1
    mod.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    mod.nvmlDeviceGetName = lambda h: "Test GPU"
    mod.nvmlDeviceGetTotalEnergyConsumption = lambda h: next(readings)
    return mod


def test_nvml_energy_is_the_difference_of_two_total_energy_reads(monkeypatch):
    from bridge_edge.bench.power import nvml

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([1_000, 1_000, 6_500]))  # probe, start, stop
    meter = nvml.probe()
    assert isinstance(meter, nvml.NvmlMeter) and "Test GPU" in meter.scope
    meter.start()
    assert meter.stop().joules == pytest.approx(5.5)


def test_nvml_without_driver_is_unmeasured_with_the_nvml_reason(monkeypatch):
    from bridge_edge.bench.power import nvml

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], fail=True))
    result = nvml.probe()
    assert isinstance(result, Unmeasured) and "Driver Not Loaded" in result.reason
