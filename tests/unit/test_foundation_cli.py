"""The CLI contract of the README's command table: every command exists, has --help, errors are one clear line."""

import subprocess
import sys

import pytest

from bridge_edge.cli import build_parser, main

DESIGN_COMMANDS = (
    "simulate",
    "fit",
    "select",
    "train-bridge",
    "evaluate",
    "export",
    "inspect",
    "build-engine",
    "deploy",
    "devices",
    "record",
    "run",
    "monitor",
    "demo",
    "bench",
)


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_help_lists_every_design_command():
    missing = [c for c in DESIGN_COMMANDS if c not in _subcommands()]
    assert not missing, f"commands missing from bridge-edge: {missing}"


@pytest.mark.parametrize("command", DESIGN_COMMANDS)
def test_every_command_has_help(command, capsys):
    if command not in _subcommands():
        pytest.fail(f"{command} not registered")
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert command in capsys.readouterr().out


def test_errors_are_one_line_without_traceback_and_with_debug_a_traceback():
    cmd = [sys.executable, "-m", "bridge_edge.cli", "run", "--source", "nosuch://x"]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode != 0
    lines = [ln for ln in plain.stderr.splitlines() if ln.startswith("bridge-edge: error:")]
    assert len(lines) == 1 and "nosuch" in lines[0] and "serial://" in lines[0]
    assert "Traceback" not in plain.stderr
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_closed_pipe_stops_quietly_without_a_traceback():
    # `bridge-edge inspect default | head -2`: the reader is gone before the output is written
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge_edge.cli", "inspect", "default"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as a Unix tool would end
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
