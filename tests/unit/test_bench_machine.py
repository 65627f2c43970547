"""The machine object on a fake root: CPU, clocks, temperatures, Jetson release; unreadable says so."""

from bridge_edge.bench import machine


def test_fake_jetson_root_reports_model_clocks_temperatures_and_release(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: ARMv8 Processor rev 1 (v8l)\n")
    cpufreq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    cpufreq.mkdir(parents=True)
    (cpufreq / "scaling_governor").write_text("schedutil\n")
    (cpufreq / "scaling_cur_freq").write_text("1510400\n")
    (cpufreq / "cpuinfo_max_freq").write_text("1510400\n")
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48500\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 1\n")
    info = machine.collect(tmp_path)
    assert info["cpu_model"] == "ARMv8 Processor rev 1 (v8l)"
    assert info["clocks"] == {"governor": "schedutil", "cpu0_cur_mhz": 1510.4, "cpu0_max_mhz": 1510.4}
    assert info["temperatures_c"] == {"cpu-thermal": 48.5}
    assert info["jetson"]["l4t_release"].startswith("# R36")
    assert "load_average_at_start" in info and info["versions"]["numpy"]


def test_bare_root_says_unreadable_instead_of_guessing(tmp_path):
    info = machine.collect(tmp_path)
    assert info["clocks"]["governor"].startswith("unreadable")
    assert str(info["temperatures_c"]).startswith("unreadable")
    assert info["jetson"] is None
    assert "load_average_at_end" in machine.finish(info)
