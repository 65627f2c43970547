"""Safe checkpoint reading and strict loading with a readable key diff.

Nothing here unpickles arbitrary objects: torch files load with ``weights_only=True``, the rest
is safetensors. A strict load that does not match raises ``CheckpointError`` listing missing,
unexpected and shape-mismatched keys (first few of each) so a user sees *why* at a glance.
"""

from __future__ import annotations

import json
from pathlib import Path

from bridge_edge.errors import CheckpointError

_SHOW = 6  # keys listed per category in a message


def read_state_file(path: str | Path) -> dict:
    """A checkpoint file as a dict of tensors/plain data: safetensors, or torch with weights_only."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; expected a .pt/.pth or .safetensors file", path=str(path)
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled classes: say so, do not retry unsafely
        raise CheckpointError(
            f"checkpoint {path} cannot be read with weights_only=True ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); it pickles Python objects. Export its state dict "
            "to safetensors (or a plain tensor dict) on a machine you trust and load that instead",
            path=str(path),
        ) from exc


def strip_prefix(state: dict, prefix: str) -> dict:
    """Drop ``prefix`` from every key that has it (``module.`` from DataParallel checkpoints)."""
    return {(k.removeprefix(prefix)): v for k, v in state.items()}


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def load_state_strict(module, state: dict, source: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable diff on any mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_preview(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch {len(mismatched)}: {_preview(mismatched)}")
        raise CheckpointError(
            f"checkpoint {source} does not match the model ({'; '.join(parts)})",
            path=source,
            missing_keys=missing,
            unexpected_keys=unexpected,
            mismatched=mismatched,
        )
    module.load_state_dict(state, strict=True)


def save_module_state(module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a torch module's state dict as safetensors (CPU, contiguous)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path


def save_adapter_weights(adapter, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the adapter's module state dict as safetensors (metadata: JSON-able, stored as text)."""
    meta = {
        "adapter": json.dumps(adapter.describe()),
        **{k: json.dumps(v) for k, v in (metadata or {}).items()},
    }
    return save_module_state(adapter.module, path, meta)


def load_adapter_weights(adapter, path: str | Path) -> dict:
    """Load safetensors weights into ``adapter.module`` strictly; returns the stored metadata."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"adapter weights {path} must be a .safetensors file (written by save_adapter_weights)",
            path=str(path),
        )
    state = read_state_file(path)
    load_state_strict(adapter.module, state, str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(v) for k, v in meta.items()}
