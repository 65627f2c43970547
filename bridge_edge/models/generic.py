"""Bring your own model: any ``torch.nn.Module`` named by an import path, plus a recipe table.

The recipe says which class to build (``package.module:ClassName`` + keyword arguments), where
its weights are (safetensors, or a torch file read with ``weights_only=True``), which submodules
are the blocks (paths resolved with ``models.addressing``), the hidden layout, the input spec,
and the two module paths that make the stem and the head (each a callable applied in order).

Blocks must take one hidden tensor and return one (a tuple output keeps its first element, as
HuggingFace layers return). Models whose forward does more between blocks than the stem/head
lists can express need their own adapter module (see ``openecg_adapter.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch

from bridge_edge.errors import ConfigError, ModelError
from bridge_edge.models.addressing import resolve_path
from bridge_edge.models.base import InputSpec, ModelAdapter
from bridge_edge.models.checkpoints import load_state_strict, read_state_file, strip_prefix


@dataclass(frozen=True)
class GenericModelSpec:
    import_path: str  # "package.module:ClassName"
    block_paths: tuple[str, ...]
    input_spec: InputSpec
    layout: str = "token_last"
    kwargs: dict = field(default_factory=dict)
    checkpoint: str | None = None
    strip_prefix: str = "module."
    stem_paths: tuple[str, ...] = ()  # applied in order before block 0 (empty: identity)
    head_paths: tuple[str, ...] = ()  # applied in order after the last block (empty: pool)
    labels: tuple[str, ...] = ()
    input_shape: str = "flat"  # "flat" (B, L) or "channels" (B, C, L) given to the stem
    name: str = "generic"

    @classmethod
    def from_config(cls, config: dict) -> GenericModelSpec:
        missing = [k for k in ("import", "block_paths", "input") if k not in config]
        if missing:
            raise ConfigError(
                f"generic model table lacks {missing}; expected 'import', 'block_paths' and 'input'",
                key=missing[0],
                value=None,
                expected=["import", "block_paths", "input"],
            )
        layout = config.get("layout", "token_last")
        if layout not in ("token_last", "channel_first"):
            raise ConfigError(
                f"layout {layout!r} is unknown; expected 'token_last' or 'channel_first'",
                key="layout",
                value=layout,
                expected=["token_last", "channel_first"],
            )
        inp = dict(config["input"])
        return cls(
            import_path=config["import"],
            block_paths=tuple(config["block_paths"]),
            input_spec=InputSpec(
                modality=inp.get("modality", "unknown"),
                fs=float(inp["fs"]),
                window_s=float(inp["window_s"]),
                channels=int(inp.get("channels", 1)),
                normalisation=inp.get("normalisation", ""),
                preprocess=dict(inp.get("preprocess", {})),
            ),
            layout=layout,
            kwargs=dict(config.get("kwargs", {})),
            checkpoint=config.get("checkpoint"),
            strip_prefix=config.get("strip_prefix", "module."),
            stem_paths=tuple(config.get("stem_paths", ())),
            head_paths=tuple(config.get("head_paths", ())),
            labels=tuple(config.get("labels", ())),
            input_shape=config.get("input_shape", "flat"),
            name=config.get("name", config["import"].rsplit(":", 1)[-1]),
        )


def import_class(import_path: str):
    """``"package.module:ClassName"`` -> the class (import only; nothing is evaluated)."""
    module_name, sep, attr = import_path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"import path {import_path!r} is malformed; expected 'package.module:ClassName'",
            key="import",
            value=import_path,
            expected="package.module:ClassName",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {module_name!r} for {import_path!r}: {exc}",
            key="import",
            value=import_path,
            expected="an importable module",
        ) from exc
    return resolve_path(module, attr)


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class GenericAdapter(ModelAdapter):
    kind = "generic"

    def __init__(self, spec: GenericModelSpec, device: str = "cpu") -> None:
        self.spec = spec
        self.name = spec.name
        self.layout = spec.layout
        self.block_paths = spec.block_paths
        self.labels = spec.labels
        self.input_spec = spec.input_spec
        model_cls = import_class(spec.import_path)
        self.module = model_cls(**spec.kwargs)
        if not isinstance(self.module, torch.nn.Module):
            raise ModelError(
                f"{spec.import_path} built a {type(self.module).__name__}; expected a torch.nn.Module",
                model=spec.name,
                reason="not a module",
            )
        if spec.checkpoint:
            state = read_state_file(spec.checkpoint)
            load_state_strict(self.module, strip_prefix(state, spec.strip_prefix), spec.checkpoint)
        for path in (*spec.block_paths, *spec.stem_paths, *spec.head_paths):
            resolve_path(self.module, path)  # fail at build time, naming what is available
        self.module.to(device)

    def prepare(self, x) -> torch.Tensor:
        t = torch.from_numpy(self._as_batch(x))
        if self.spec.input_shape == "channels":
            t = t.unsqueeze(1)
        return t.to(self.device)

    def _apply(self, paths, h):
        for path in paths:
            h = _first(resolve_path(self.module, path)(h))
        return h

    def stem(self, x):
        return self._apply(self.spec.stem_paths, x)

    def run_blocks(self, h, start: int, stop: int):
        self._check_range(start, stop)
        for k in range(start, stop):
            h = _first(self.block(k)(h))
        return h

    def head(self, h):
        if not self.spec.head_paths:
            return self.pool(h)
        return self._apply(self.spec.head_paths, h)
