"""Where TensorRT engines are cached, and the key that says when one may be reused (docs/bundles.md).

Engines are specific to the ONNX, the TensorRT version, the GPU and the build settings, so the
key covers sha256(onnx) + TensorRT version + GPU name + compute capability + precision +
profile shapes + builder options. Each engine has a JSON sidecar with the full key and a
``.sha256`` file with the engine's own hash, written at build time; a missing or different key
marks the engine stale, and an engine whose bytes no longer match its hash (changed or swapped
on disk) is rebuilt with a warning. Pure Python: no TensorRT needed here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProfileShapes:
    """Optimisation profile of the one dynamic-batch input."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str
    profile: ProfileShapes
    builder_options: dict  # workspace bytes, flags, optimisation level, ...

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CachedEngine:
    path: Path
    sidecar: Path

    @property
    def digest_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")


class EngineCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> EngineCache:
        env = os.environ.get("BRIDGE_EDGE_ENGINE_CACHE")
        base = (
            Path(env)
            if env
            else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bridge-edge"
        )
        return cls(base / "engines" if not env else base)

    def entry(self, label: str, key: EngineKey) -> CachedEngine:
        stem = f"{label}-{key.precision}-{key.digest()}"
        return CachedEngine(self.root / f"{stem}.engine", self.root / f"{stem}.json")

    def stale_reason(self, entry: CachedEngine, key: EngineKey) -> str | None:
        """None when the cached engine matches ``key``; otherwise why it must be (re)built."""
        if not entry.path.exists():
            return "no cached engine"
        try:
            stored = json.loads(entry.sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            return "cached engine has no readable key sidecar"
        current = json.loads(json.dumps(key.as_dict()))  # tuples -> lists, as stored
        if not isinstance(stored, dict) or stored != current:
            changed = sorted(
                k for k in current if not isinstance(stored, dict) or stored.get(k) != current[k]
            )
            return f"cached engine key differs ({', '.join(changed) or 'format'})"
        return None

    def load(self, entry: CachedEngine, key: EngineKey) -> tuple[bytes | None, str]:
        """(plan, "cache hit") when the cached engine matches ``key`` and the sha256 stored at
        build time; (None, why it must be rebuilt) otherwise."""
        reason = self.stale_reason(entry, key)
        if reason is not None:
            return None, reason
        try:
            plan = entry.path.read_bytes()
            stored = entry.digest_path.read_text().strip()
        except OSError:
            return None, "cached engine has no readable sha256 beside it"
        if hashlib.sha256(plan).hexdigest() != stored:
            return None, "cached engine's sha256 differs from the one stored at build (file changed)"
        return plan, "cache hit"

    def store(self, entry: CachedEngine, key: EngineKey, plan: bytes) -> None:
        """Write engine, its sha256, then the key sidecar, each atomically (a crash never leaves a
        half engine as valid: the sidecar that makes it valid comes last)."""
        self.root.mkdir(parents=True, exist_ok=True)
        files = (
            (entry.path, plan),
            (entry.digest_path, (hashlib.sha256(plan).hexdigest() + "\n").encode()),
            (entry.sidecar, json.dumps(key.as_dict(), indent=2).encode()),
        )
        for path, data in files:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)


# EngineCache.default() as a POSIX shell expression, for a deploy target's shell.
DEFAULT_ROOT_SHELL = "${BRIDGE_EDGE_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bridge-edge/engines}"


def install_shell(built_engine: str, label: str, key: EngineKey) -> str:
    """Shell that moves an engine built elsewhere (trtexec on a deploy target) into that target's
    default cache with its sha256 and key sidecar, each file renamed into place (same rule and
    order as ``store``)."""
    import shlex

    entry = EngineCache(Path(".")).entry(label, key)
    engine, sidecar = shlex.quote(entry.path.name), shlex.quote(entry.sidecar.name)
    digest = shlex.quote(entry.digest_path.name)
    text = shlex.quote(json.dumps(key.as_dict(), indent=2))
    return (
        f'cache="{DEFAULT_ROOT_SHELL}" && mkdir -p "$cache" && '
        f'mv {shlex.quote(built_engine)} "$cache"/{engine}.tmp && mv "$cache"/{engine}.tmp "$cache"/{engine} && '
        f'sha256sum "$cache"/{engine} | cut -d" " -f1 > "$cache"/{digest}.tmp && mv "$cache"/{digest}.tmp "$cache"/{digest} && '
        f'printf "%s" {text} > "$cache"/{sidecar}.tmp && mv "$cache"/{sidecar}.tmp "$cache"/{sidecar} && '
        f'echo "$cache"/{engine}'
    )
