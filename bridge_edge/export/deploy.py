"""Deploy a bundle over SSH: copy, install as a new version, self-test, build engine, flip ``current``.

Remote layout (docs/bundles.md): ``<dir>/<name>/<version>/`` per installed version, and two relative
symlinks ``current`` and ``previous`` beside them. Links are flipped atomically
(``ln -s`` to a temporary name, then ``mv -T`` over the old link), so a reader of ``current``
always sees a complete version; rollback swaps ``current`` and ``previous`` the same way.

Transport is the system OpenSSH ``ssh`` binary (files go as a tar stream on its stdin, never
through scp) with host keys always checked
(StrictHostKeyChecking=yes against a known_hosts file) and BatchMode (no password prompts).
"""

from __future__ import annotations

import io
import json
import logging
import re
import shlex
import subprocess
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bridge_edge.errors import ConfigError, DeployError
from bridge_edge.export.bundle import load_bundle
from bridge_edge.export.bundle_checks import check_name
from bridge_edge.resources import data_file

log = logging.getLogger(__name__)

URL_GRAMMAR = "ssh://[user@]host[:port]/dir"
SELFTEST_SCRIPT = Path(__file__).with_name("selftest.py")
TRTEXEC_SCRIPT = "build_engine_trtexec.sh"


@dataclass(frozen=True)
class SshTarget:
    host: str
    dir: str  # absolute path on the target
    user: str | None = None
    port: int = 22
    identity: str | None = None
    known_hosts: str | None = None
    connect_timeout_s: int = 10

    @classmethod
    def parse(cls, url: str, *, identity: str | None = None, known_hosts: str | None = None) -> SshTarget:
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError:
            port = -1
        if parts.scheme != "ssh" or not parts.hostname or not parts.path or parts.path == "/" or port < 1:
            raise ConfigError(
                f"deploy target {url!r} does not parse; expected {URL_GRAMMAR}",
                key="target",
                value=url,
                expected=URL_GRAMMAR,
            )
        return cls(
            host=parts.hostname,
            dir=parts.path.rstrip("/"),
            user=parts.username,
            port=port,
            identity=identity,
            known_hosts=known_hosts,
        )

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def options(self) -> list[str]:
        opts = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout_s}",
        ]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            opts += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return opts

    def __str__(self) -> str:
        return f"ssh://{self.destination}:{self.port}{self.dir}"


@dataclass
class DeployResult:
    target: str
    name: str
    current: str | None = None
    previous: str | None = None
    steps: list[dict] = field(default_factory=list)

    def step(self, name: str, detail: str) -> None:
        log.info("deploy %s: %s", name, detail)
        self.steps.append({"step": name, "detail": detail})

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.target}: {self.name} current -> {self.current} (previous: {self.previous})"]
        lines += [f"  {s['step']}: {s['detail']}" for s in self.steps]
        return "\n".join(lines)


class _Remote:
    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def run(self, script: str, step: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["ssh", *self.target.options(), "-p", str(self.target.port), self.target.destination, script]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if check and proc.returncode != 0:
            raise DeployError(
                f"{step} failed on {self.target}: {_last_line(proc.stderr or proc.stdout)} "
                f"(exit {proc.returncode})",
                target=str(self.target),
                step=step,
                reason=proc.stderr.strip(),
            )
        return proc

    def copy(self, local: Path, remote: str, step: str) -> None:
        """Copy a file or a directory to ``remote`` as a tar stream on ssh's stdin. The remote
        path only ever appears shell-quoted (legacy scp would hand it to a remote shell as is)."""
        if local.is_dir():
            script = f"mkdir -p {shlex.quote(remote)} && tar -xf - -C {shlex.quote(remote)}"
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for path in sorted(local.rglob("*")):
                    if path.is_file() and path.name != ".complete":
                        tar.add(path, arcname=str(path.relative_to(local)))
            payload = buffer.getvalue()
        else:
            script, payload = f"cat > {shlex.quote(remote)}", local.read_bytes()
        cmd = ["ssh", *self.target.options(), "-p", str(self.target.port), self.target.destination, script]
        proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=900)
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            raise DeployError(
                f"{step} failed on {self.target}: {_last_line(stderr)} (exit {proc.returncode})",
                target=str(self.target),
                step=step,
                reason=stderr.strip(),
            )


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _flip(link: str, to: str) -> str:
    """Shell for an atomic symlink flip: ln -s to a temp name, then rename over the link."""
    q_link, q_tmp = shlex.quote(link), shlex.quote(f"{link}.tmp")
    return f"ln -sfn {shlex.quote(to)} {q_tmp} && mv -T {q_tmp} {q_link}"


def deploy(bundle_ref: str, target: SshTarget, *, remote_python: str = "python3") -> DeployResult:
    bundle = load_bundle(bundle_ref, verify=True, selftest="all")  # never push a bundle that fails here
    # checked again here: these two become remote paths (load_bundle checks them too)
    name = check_name("name", bundle.name, str(bundle.path))
    version = check_name("version", bundle.version, str(bundle.path))
    remote = _Remote(target)
    root = f"{target.dir}/{name}"
    final, incoming = f"{root}/{version}", f"{root}/.incoming-{version}"
    result = DeployResult(target=str(target), name=name)

    remote.run(f"mkdir -p {shlex.quote(root)} && rm -rf {shlex.quote(incoming)}", "prepare")
    exists = (
        remote.run(f"test -f {shlex.quote(final + '/manifest.json')}", "check", check=False).returncode == 0
    )
    if exists:
        result.step("copy", f"version {version} already installed; reusing it after the self-test")
    else:
        remote.copy(bundle.path, incoming, "copy")
        remote.run(f"mv -T {shlex.quote(incoming)} {shlex.quote(final)}", "install")
        result.step("copy", f"installed {version} at {final}")

    selftest = f"{target.dir}/.bridge-edge-selftest.py"
    remote.copy(SELFTEST_SCRIPT, selftest, "copy self-test")
    proc = remote.run(
        f"{shlex.quote(remote_python)} {shlex.quote(selftest)} {shlex.quote(final)}", "self-test", check=False
    )
    report = _json_line(proc.stdout)
    if proc.returncode != 0 or not report.get("ok"):
        detail = "; ".join(report.get("problems", [])) or _last_line(proc.stderr or proc.stdout)
        raise DeployError(
            f"self-test failed on {target} for {name} {version}: {detail}; `current` left as it was",
            target=str(target),
            step="self-test",
            reason=detail,
        )
    diffs = ", ".join(f"{p} {r['max_abs_diff']:.2g}" for p, r in report["precisions"].items())
    result.step("self-test", f"passed (golden max |diff|: {diffs})")

    result.step("engine", _build_remote_engine(remote, final, bundle, remote_python))

    previous = remote.run(f"readlink {shlex.quote(root + '/current')} || true", "read current").stdout.strip()
    flips = []
    if previous and previous != version:
        flips.append(_flip(f"{root}/previous", previous))
    flips.append(_flip(f"{root}/current", version))
    remote.run(" && ".join(flips), "flip current")
    result.current, result.previous = version, (previous if previous != version else None) or None
    result.step("flip", f"current -> {version}")
    return result


def _build_remote_engine(remote: _Remote, final: str, bundle, remote_python: str) -> str:
    """Build the engine on the target: with bridge-edge under ``remote_python`` when that Python
    sees TensorRT, else with trtexec, whose engine is then moved into the target's engine cache
    under the key the runtime looks up (docs/bundles.md)."""
    precisions = bundle.manifest.precisions
    precision = "int8" if "int8" in precisions else "fp16" if "fp16" in precisions else None
    if precision is None:
        return "skipped: the bundle has no fp16/int8 model"
    py = shlex.quote(remote_python)
    probe = remote.run(
        f"{py} -c 'import tensorrt, bridge_edge' 2>/dev/null && echo cli; "
        "command -v trtexec >/dev/null || test -x /usr/src/tensorrt/bin/trtexec && echo trtexec; true",
        "probe TensorRT",
    ).stdout.split()
    if "cli" in probe:
        remote.run(
            f"{py} -m bridge_edge.cli build-engine {shlex.quote(final)} --precision {shlex.quote(precision)}",
            "build engine",
        )
        return f"built {precision} engine with bridge-edge build-engine ({remote_python})"
    if "trtexec" in probe:
        script = data_file("export", TRTEXEC_SCRIPT)
        if script.exists():
            remote_script = f"{final}/../.{TRTEXEC_SCRIPT}"
            remote.copy(script, remote_script, "copy trtexec script")
            built = remote.run(
                f"bash {shlex.quote(remote_script)} {shlex.quote(final)} {shlex.quote(precision)}",
                "build engine",
            )
            return _cache_trtexec_engine(remote, bundle, final, precision, built.stdout + built.stderr)
    return "skipped: no TensorRT on the target (ONNX Runtime will be used)"


def _cache_trtexec_engine(remote: _Remote, bundle, final: str, precision: str, log_text: str) -> str:
    from bridge_edge.export.engine_cache import install_shell
    from bridge_edge.export.tensorrt import GPU_PROBE_SHELL, bundle_engine_key, gpu_from, tensorrt_of_version

    found = re.search(r"TensorRT version: (\d+(?:\.\d+)*)", log_text)
    engine = f"{final}/model.{precision}.b8.trtexec.engine"
    if found is None:
        return (
            f"built {precision} engine with trtexec at {engine}; not cached (no TensorRT version in its log)"
        )
    smi, _, model = remote.run(GPU_PROBE_SHELL, "probe GPU").stdout.partition("---")
    gpu = gpu_from(smi.strip(), model)
    label, key = bundle_engine_key(tensorrt_of_version(found.group(1)), bundle, precision, gpu)
    cached = remote.run(install_shell(engine, label, key), "cache engine").stdout.strip()
    return (
        f"built {precision} engine with trtexec (TensorRT {found.group(1)}, {gpu.name}), cached as {cached}"
    )


def rollback(bundle_ref: str, target: SshTarget) -> DeployResult:
    """Swap ``current`` and ``previous`` of the bundle's name on the target."""
    bundle = load_bundle(bundle_ref, verify=False)
    name = check_name("name", bundle.name, str(bundle.path))
    remote = _Remote(target)
    root = f"{target.dir}/{name}"
    links = remote.run(f"cd {shlex.quote(root)} && readlink current; readlink previous || true", "read links")
    found = links.stdout.split()
    if len(found) < 2:
        raise DeployError(
            f"nothing to roll back to on {target}: {name} has no `previous` version",
            target=str(target),
            step="rollback",
            reason="no previous",
        )
    current, previous = found[0], found[1]
    remote.run(
        " && ".join([_flip(f"{root}/current", previous), _flip(f"{root}/previous", current)]), "rollback"
    )
    result = DeployResult(target=str(target), name=name, current=previous, previous=current)
    result.step("rollback", f"current -> {previous} (was {current})")
    return result


def _json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {}
