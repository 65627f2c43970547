"""deploy's engine step: the probe runs under --remote-python, and a trtexec engine lands in the
target's engine cache under the key the runtime looks up.

The target is this machine's bash (the ssh transport has its own system test); trtexec,
nvidia-smi and the remote Python are small stand-in executables on PATH, because TensorRT
and a GPU cannot run here. The real trtexec script runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_export_tensorrt import FakeTensorRT  # noqa: E402  (the scripted tensorrt module)

from bridge_edge.export import deploy as deploy_mod
from bridge_edge.export.bundle import load_bundle
from bridge_edge.export.engine_cache import EngineCache, install_shell
from bridge_edge.export.tensorrt import (
    GpuInfo,
    bundle_engine_key,
    gpu_from,
    tensorrt_of_version,
)

ORIN = GpuInfo("Orin (nvgpu)", "8.7")


class LocalTarget:
    """deploy's _Remote, with this machine's bash as the target shell."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.scripts: list[str] = []

    def run(self, script: str, step: str, check: bool = True) -> subprocess.CompletedProcess:
        self.scripts.append(script)
        proc = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=self.env, check=False
        )
        assert not check or proc.returncode == 0, f"{step}: {proc.stderr}"
        return proc

    def copy(self, local: Path, remote: str, step: str) -> None:
        shutil.copy(local, remote)


def _executable(path: Path, text: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(0o755)


@pytest.fixture
def target(tmp_path):
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    _executable(
        bin_dir / "trtexec",
        'for a in "$@"; do case "$a" in --saveEngine=*) printf PLAN > "${a#--saveEngine=}";; esac; done\n'
        'echo "[12/03/2026-09:00:00] [I] TensorRT version: 10.3.0"\n',
    )
    _executable(bin_dir / "nvidia-smi", 'echo "Orin (nvgpu), 8.7"\n')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home)}
    final = tmp_path / "models" / "default" / "0.4.1"
    shutil.copytree(load_bundle("default").path, final)
    return LocalTarget(env), final, home, bin_dir


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "11.0.0"])
def test_a_version_string_gives_the_key_the_runtime_builds_with(version, tmp_path):
    bundle = load_bundle("default")
    runtime = bundle_engine_key(
        FakeTensorRT(version, strongly_typed_only=version.startswith("11")), bundle, "int8", ORIN
    )
    trtexec = bundle_engine_key(tensorrt_of_version(version), bundle, "int8", ORIN)
    assert trtexec == runtime and trtexec[1].digest() == runtime[1].digest()


def test_trtexec_engine_is_cached_under_the_runtime_key(target):
    remote, final, home, _ = target
    bundle = load_bundle(str(final))
    detail = deploy_mod._build_remote_engine(remote, str(final), bundle, "python3-without-tensorrt")
    assert "with trtexec (TensorRT 10.3.0, Orin (nvgpu))" in detail
    cache = EngineCache(home / ".cache" / "bridge-edge" / "engines")
    label, key = bundle_engine_key(FakeTensorRT("10.3.0"), bundle, "int8", ORIN)  # as TrtEngine does
    entry = cache.entry(label, key)
    assert cache.stale_reason(entry, key) is None
    assert entry.path.read_bytes() == b"PLAN" and str(entry.path) in detail
    assert not (final / "model.int8.b8.trtexec.engine").exists()  # moved, not copied


def test_probe_and_build_use_the_remote_python(target, tmp_path):
    remote, final, _, bin_dir = target
    calls = tmp_path / "calls.txt"
    python = bin_dir / "venv-python"
    _executable(python, f'echo "$*" >> {calls}\n')  # "imports" tensorrt and bridge_edge, logs the build
    detail = deploy_mod._build_remote_engine(remote, str(final), load_bundle(str(final)), str(python))
    assert "bridge-edge build-engine" in detail and str(python) in detail
    lines = calls.read_text().splitlines()
    assert lines[0] == "-c import tensorrt, bridge_edge"
    assert lines[1] == f"-m bridge_edge.cli build-engine {final} --precision int8"


def test_install_shell_honours_the_cache_override(tmp_path):
    built = tmp_path / "x.engine"
    built.write_bytes(b"PLAN")
    bundle = load_bundle("default")
    label, key = bundle_engine_key(tensorrt_of_version("10.3.0"), bundle, "fp16", ORIN)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BRIDGE_EDGE_ENGINE_CACHE": str(tmp_path / "c d")}
    subprocess.run(["bash", "-c", install_shell(str(built), label, key)], check=True, env=env)
    cache = EngineCache(tmp_path / "c d")
    assert cache.stale_reason(cache.entry(label, key), key) is None


def test_gpu_from_smi_or_device_tree():
    assert gpu_from("NVIDIA H200, 9.0", "") == GpuInfo("NVIDIA H200", "9.0")
    assert gpu_from("", "NVIDIA Jetson AGX Orin Developer Kit\x00") == GpuInfo(
        "NVIDIA Jetson AGX Orin Developer Kit", "8.7"
    )
