"""`bridge-edge monitor` / `demo` command lines: refusal of an open bind, demo source URLs."""

from __future__ import annotations

from bridge_edge.cli import main
from bridge_edge.devices.base import open_source
from bridge_edge.monitor.app import demo_sources


def test_open_bind_without_token_is_one_clear_error(capsys):
    code = main(["monitor", "--source", "sim://ppg", "--host", "0.0.0.0", "--no-browser"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "--token" in err[0] and "Traceback" not in err[0]


def test_demo_with_open_bind_also_needs_a_token(capsys):
    assert main(["demo", "--host", "0.0.0.0", "--no-browser"]) != 0
    assert "--token" in capsys.readouterr().err


def test_demo_sources_are_one_simulated_patient_per_bed():
    urls = demo_sources(beds=2, script="sinus:15,afib:30,sinus:30", motion=0.15)
    assert len(urls) == 2 and urls[0] != urls[1]  # each bed its own physiology
    for url in urls:
        source = open_source(url)
        try:
            assert source.info.channels == ("ecg", "ppg")
            assert source.info.meta["script"] == [("sinus", 15.0), ("afib", 30.0), ("sinus", 30.0)]
        finally:
            source.close()


def test_help_lists_both_commands(capsys):
    try:
        main(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "monitor" in out and "demo" in out
