"""HuBERT-ECG (small / base / large) as stem -> ``encoder.layers[i]`` -> pooled embedding.

Optional backend: needs ``transformers`` (``pip install bridge-edge[hubert]``), imported only
when this adapter is built.

Checkpoints. The published ``hubert_ecg_<size>.pt`` is a dict ``{"model_config":
HuBERTECGConfig(...), "model_state_dict": {...}}`` whose config is a pickled *class*; reading
it would execute code from the pickle, so bridge-edge refuses it (``weights_only=True``) and
builds the architecture from the size name instead. The safe route is a one-off conversion a
user types by hand (bridge-edge never runs it), on a machine they trust, of a checkpoint they
downloaded themselves from the HuBERT-ECG authors — that provenance is why unpickling it there
is acceptable::

    import torch, safetensors.torch as st
    blob = torch.load("hubert_ecg_small.pt", weights_only=False)   # trusted: the authors' own file
    st.save_file({k: v.contiguous() for k, v in blob["model_state_dict"].items()},
                 "hubert_ecg_small.safetensors")

then ``kind = "hubert_ecg"``, ``size = "small"``, ``checkpoint = "hubert_ecg_small.safetensors"``.
A torch file holding only tensors (a bare state dict, or ``{"model_state_dict": ...}``) loads
directly. Loading is strict: weight-norm names are translated between the ``weight_g/weight_v``
and ``parametrizations.weight.original0/1`` spellings (whichever this torch uses), the
pretraining-only heads (``final_proj``, ``label_embedding``) are dropped and listed in
``adapter.dropped_keys``; anything else that does not match raises ``CheckpointError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bridge_edge.errors import CheckpointError, ConfigError, DependencyMissingError
from bridge_edge.models.base import InputSpec, ModelAdapter
from bridge_edge.models.checkpoints import load_state_strict, read_state_file, strip_prefix

PRETRAINING_ONLY = ("final_proj.", "label_embedding.")
_WEIGHT_NORM = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


@dataclass(frozen=True)
class HubertEcgSize:
    hidden: int
    layers: int
    heads: int
    ffn: int
    conv_dim: tuple[int, ...] = (512,) * 5
    conv_kernel: tuple[int, ...] = (10, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (4, 2, 2, 2, 2)  # total stride 64: 6000 samples -> 93 tokens
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16


SIZES = {
    "small": HubertEcgSize(hidden=512, layers=8, heads=8, ffn=2048),
    "base": HubertEcgSize(hidden=768, layers=12, heads=12, ffn=3072),
    "large": HubertEcgSize(hidden=960, layers=16, heads=12, ffn=3840),
}


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise DependencyMissingError(
            "the HuBERT-ECG adapter needs the optional 'transformers' package; "
            "install it with `pip install bridge-edge[hubert]`",
            package="transformers",
            install_hint="pip install bridge-edge[hubert]",
        ) from exc
    return transformers


def build_hubert(size: HubertEcgSize):
    tf = _transformers()
    config = tf.HubertConfig(
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        intermediate_size=size.ffn,
        conv_dim=size.conv_dim,
        conv_kernel=size.conv_kernel,
        conv_stride=size.conv_stride,
        num_conv_pos_embeddings=size.pos_conv_kernel,
        num_conv_pos_embedding_groups=size.pos_conv_groups,
        feat_extract_norm="group",
        do_stable_layer_norm=False,  # post-LN layers, as HuBERT-ECG
    )
    return tf.HubertModel(config).eval()


def match_weight_norm_names(state: dict, model_keys) -> dict:
    """Rename weight-norm keys of ``state`` to the spelling the model uses."""
    model_keys = set(model_keys)
    out = {}
    for key, value in state.items():
        new = key
        for old_suffix, new_suffix in _WEIGHT_NORM.items():
            for a, b in ((old_suffix, new_suffix), (new_suffix, old_suffix)):
                if key.endswith("." + a) and key[: -len(a)] + b in model_keys:
                    new = key[: -len(a)] + b
        out[new] = value
    return out


def load_hubert_state(model, path: str | Path) -> list[str]:
    """Strictly load a HuBERT-ECG state dict; returns the dropped pretraining-only keys."""
    blob = read_state_file(path)
    state = blob.get("model_state_dict", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict", path=str(path))
    state = strip_prefix(strip_prefix(state, "module."), "hubert_ecg.")
    dropped = sorted(k for k in state if k.startswith(PRETRAINING_ONLY))
    state = {k: v for k, v in state.items() if not k.startswith(PRETRAINING_ONLY)}
    state = match_weight_norm_names(state, model.state_dict().keys())
    load_state_strict(model, state, str(path))
    return dropped


class HubertEcgAdapter(ModelAdapter):
    """Flat single-lead ECG (B, fs * window_s) at 100 Hz, z-scored per window -> token_last blocks."""

    kind = "hubert_ecg"
    layout = "token_last"

    def __init__(
        self,
        size: str | HubertEcgSize = "small",
        checkpoint: str | Path | None = None,
        fs: float = 100.0,
        window_s: float = 60.0,
        device: str = "cpu",
    ) -> None:
        if isinstance(size, str):
            if size not in SIZES:
                raise ConfigError(
                    f"HuBERT-ECG size {size!r} is unknown; expected one of {sorted(SIZES)}",
                    key="size",
                    value=size,
                    expected=sorted(SIZES),
                )
            self.name, size = f"hubert-ecg-{size}", SIZES[size]
        else:
            self.name = f"hubert-ecg-h{size.hidden}-l{size.layers}"
        self.size = size
        self.module = build_hubert(size)
        self.dropped_keys = load_hubert_state(self.module, checkpoint) if checkpoint else []
        self.module.to(device)
        self.block_paths = tuple(f"encoder.layers[{i}]" for i in range(size.layers))
        self.input_spec = InputSpec(
            modality="ecg",
            fs=fs,
            window_s=window_s,
            normalisation="z-score per window",
            preprocess={"version": "hubert-ecg-zscore-v1", "steps": ["zscore_window"]},
        )

    def prepare(self, x) -> torch.Tensor:
        t = torch.from_numpy(self._as_batch(x))
        t = (t - t.mean(dim=1, keepdim=True)) / t.std(dim=1, unbiased=False, keepdim=True).clamp_min(1e-6)
        return t.to(self.device)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        h = m.feature_projection(m.feature_extractor(x).transpose(1, 2))
        h = h[0] if isinstance(h, tuple) else h
        enc = m.encoder
        h = h + enc.pos_conv_embed(h)
        return enc.dropout(enc.layer_norm(h))

    def run_blocks(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        self._check_range(start, stop)
        for k in range(start, stop):
            out = self.module.encoder.layers[k](h)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.pool(h)
