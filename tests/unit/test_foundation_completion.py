"""`bridge-edge completion`: a bash script that completes subcommands and options for real."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bridge_edge.cli import main

COMPLETE = """
source "$1"
fn=$(complete -p bridge-edge | sed -E 's/.*-F ([^ ]+) .*/\\1/')
COMP_WORDS=(bridge-edge "${@:2}"); COMP_CWORD=$(( $# - 1 ))
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
"$fn" bridge-edge "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""


def test_bash_completion_completes_commands_and_options(tmp_path, capsys):
    pytest.importorskip("shtab", reason="shtab (completion extra) is not installed")
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "bridge-edge.bash"
    script.write_text(capsys.readouterr().out)

    def complete(*words):
        out = subprocess.run(
            ["bash", "-c", COMPLETE, "x", str(script), *words], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert complete("ru") == ["run"]
    assert complete("run", "--lsl") == ["--lsl-out"]
    assert "build-engine" in complete("b")


def test_without_shtab_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "shtab", None)
    assert main(["completion", "zsh"]) == 3
    assert "bridge-edge[completion]" in capsys.readouterr().err
