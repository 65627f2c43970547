"""The one place a model backend is chosen: ``build_adapter(config)`` by ``kind``.

``config`` is one model table of a recipe (TOML), e.g.::

    [old_model]
    kind = "openecg"                       # packaged codec_v6

    [new_model]
    kind = "papagei"
    size = "small"                         # or "papagei_s"; any PapageiConfig field overrides
    checkpoint = "runs/ppg_encoder.safetensors"

    [new_model]
    kind = "hubert_ecg"
    size = "small"
    checkpoint = "hubert_ecg_small.safetensors"

    [new_model]
    kind = "generic"
    import = "my_pkg.models:MyNet"
    kwargs = { width = 64 }
    checkpoint = "my_net.safetensors"
    block_paths = ["blocks[0]", "blocks[1]"]
    layout = "token_last"
    input = { modality = "ppg", fs = 125.0, window_s = 10.0 }

Backends import torch (and optional packages) only when chosen.
"""

from __future__ import annotations

from dataclasses import fields, replace

from bridge_edge.errors import ConfigError
from bridge_edge.models.base import ModelAdapter

KINDS = ("openecg", "papagei", "hubert_ecg", "generic")


def _openecg(config: dict, device: str) -> ModelAdapter:
    from bridge_edge.models.openecg_adapter import OpenEcgAdapter

    return OpenEcgAdapter(checkpoint=config.get("checkpoint"), device=device)


def _papagei(config: dict, device: str) -> ModelAdapter:
    from bridge_edge.models.papagei import CONFIGS, PapageiAdapter

    size = config.get("size", "small")
    if size not in CONFIGS:
        raise ConfigError(
            f"papagei size {size!r} is unknown; expected one of {sorted(CONFIGS)}",
            key="size",
            value=size,
            expected=sorted(CONFIGS),
        )
    base = CONFIGS[size]
    names = {f.name for f in fields(base)}
    overrides = {k: v for k, v in config.items() if k in names}
    return PapageiAdapter(
        replace(base, **overrides),
        checkpoint=config.get("checkpoint"),
        preprocess=config.get("preprocess"),
        device=device,
    )


def _hubert(config: dict, device: str) -> ModelAdapter:
    from bridge_edge.models.hubert_ecg import HubertEcgAdapter

    return HubertEcgAdapter(
        size=config.get("size", "small"),
        checkpoint=config.get("checkpoint"),
        fs=float(config.get("fs", 100.0)),
        window_s=float(config.get("window_s", 60.0)),
        device=device,
    )


def _generic(config: dict, device: str) -> ModelAdapter:
    from bridge_edge.models.generic import GenericAdapter, GenericModelSpec

    return GenericAdapter(GenericModelSpec.from_config(config), device=device)


_BUILDERS = {"openecg": _openecg, "papagei": _papagei, "hubert_ecg": _hubert, "generic": _generic}


def build_adapter(config: dict, device: str | None = None) -> ModelAdapter:
    """Adapter for one recipe model table; ``device`` overrides ``config["device"]`` (default cpu)."""
    kind = config.get("kind")
    if kind not in _BUILDERS:
        raise ConfigError(
            f"model kind {kind!r} is unknown; expected one of {list(KINDS)}",
            key="kind",
            value=kind,
            expected=list(KINDS),
        )
    return _BUILDERS[kind](config, device or config.get("device", "cpu"))
