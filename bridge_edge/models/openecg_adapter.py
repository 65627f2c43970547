"""openecg codec_v6 (the default old-modality model) as stem -> 8 blocks -> rhythm head.

The packaged model applies its 4 residual conv blocks inline in ``forward`` (lower_convs[i] +
GELU + residual + lower_norms[i]) and then 4 pre-norm transformer layers. This adapter replays
that forward as a block list with hidden states in one layout, token_last (B, 500, 128); conv
blocks transpose internally. The head replays the tail (nearest upsample x10, residual refine,
per-sample ``rhythm_sample``) and returns window-level probabilities = mean over samples of the
per-sample softmax (docs/method.md).

Weights come from the installed package's ``codec_v6.pt``. openecg's own loader would unpickle
it with ``weights_only=False``; bridge-edge never calls that loader. The adapter reads the same
file through ``checkpoints.read_state_file`` (``weights_only=True``: tensors and plain data only,
no code can run) and loads the state dict strictly into the package's class, so nothing here
relies on trusting the file.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bridge_edge.errors import CheckpointError, DependencyMissingError
from bridge_edge.models.base import InputSpec, ModelAdapter
from bridge_edge.models.checkpoints import load_state_strict, read_state_file
from bridge_edge.models.exact_rewrites import ConvThenLinear, NearestUpsampleConv1d
from bridge_edge.models.frozen_layers import run_frozen_layer, run_frozen_layer_on_span

EXPORT_REWRITES = "bridge_edge_export_rewrites"  # the submodule export_rewrites attaches

# Fields of codec_v6's model_config that describe the checkpoint, not constructor arguments.
_METADATA_ONLY = (
    "arch",
    "aux_target",
    "use_aux",
    "use_reg",
    "n_reg",
    "sample_res_frame",
    "tokenizer",
    "beat_n_classes",
    "rhythm_n_classes",
    "n_input_channels",
)
_ARCH = "vit_transformer_sample_res_convtok_mh_1ch"


def _openecg():
    try:
        import openecg
    except ImportError as exc:
        raise DependencyMissingError(
            "the openecg adapter needs the openecg package; install it with `pip install bridge-edge[train]`",
            package="openecg",
            install_hint="pip install bridge-edge[train]",
        ) from exc
    return openecg


def codec_checkpoint_path(version: str = "v6") -> Path:
    return Path(_openecg().__file__).with_name("models") / f"codec_{version}.pt"


def load_codec_safely(checkpoint: str | Path | None = None, device: str = "cpu"):
    """The packaged codec module, built from its config and loaded with weights_only=True."""
    _openecg()
    from openecg.stage2.model_variants import FrameClassifierTransformerSampleResConvTokMH1Ch

    path = Path(checkpoint) if checkpoint else codec_checkpoint_path()
    blob = read_state_file(path)
    config = dict(blob.get("model_config") or {})
    if config.get("arch") != _ARCH or "model_state" not in blob:
        raise CheckpointError(
            f"{path} is not an openecg sample-resolution multi-head codec (arch {config.get('arch')!r}); "
            f"expected arch {_ARCH!r} with a 'model_state' dict",
            path=str(path),
        )
    kwargs = {k: v for k, v in config.items() if k not in _METADATA_ONLY}
    with warnings.catch_warnings():  # torch's nested-tensor notice about norm_first layers
        warnings.simplefilter("ignore", UserWarning)
        model = FrameClassifierTransformerSampleResConvTokMH1Ch(
            beat_n_classes=int(config.get("beat_n_classes", 6)),
            rhythm_n_classes=int(config.get("rhythm_n_classes", 6)),
            **kwargs,
        )
    load_state_strict(model, blob["model_state"], str(path))
    return model.to(device).eval(), blob


class OpenEcgAdapter(ModelAdapter):
    """openecg codec_v6: (B, 5000) ECG at 500 Hz, rank-normalised -> rhythm probabilities (B, 6)."""

    kind = "openecg"
    layout = "token_last"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu") -> None:
        self.module, blob = load_codec_safely(checkpoint, device)
        self.name = f"openecg-codec-{blob.get('codec_version', 'v6')}"
        self.checkpoint = str(Path(checkpoint) if checkpoint else codec_checkpoint_path())
        from openecg.layered import RHYTHM_NAMES

        self.labels = tuple(RHYTHM_NAMES[i] for i in range(len(RHYTHM_NAMES)))
        n_conv = len(self.module.lower_convs)
        n_layers = len(self.module.upper_transformer.layers)
        self._n_conv = n_conv
        self.block_paths = tuple(f"lower_convs[{i}]" for i in range(n_conv)) + tuple(
            f"upper_transformer.layers[{i}]" for i in range(n_layers)
        )
        self.input_spec = InputSpec(
            modality="ecg",
            fs=500.0,
            window_s=10.0,
            normalisation="rank-normalised to [-1, 1] per window (openecg.rank_normalize)",
            preprocess={"version": "openecg-rank-v1", "steps": ["rank_normalize"]},
        )

    # -- adapter interface ------------------------------------------------------------------
    def prepare(self, x) -> torch.Tensor:
        """Raw ECG windows at 500 Hz -> rank-normalised float32 tensor (B, 5000) on the device."""
        from openecg import rank_normalize

        arr = self._as_batch(x)
        # rank_normalize ranks its whole input, so it is applied window by window (a loop over
        # windows, not samples).
        ranked = np.stack([rank_normalize(w) for w in arr]).astype(np.float32)
        return torch.from_numpy(ranked).to(self.device)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        n_tokens = x.shape[-1] // m.patch_size
        h = m.conv_tok(x.unsqueeze(1))[..., :n_tokens].transpose(1, 2)  # (B, T, D)
        if m.pos_enc is not None:
            h = h + m.pos_enc[:, :n_tokens]
        if m.use_lead_emb:  # single-lead codec: lead 0
            h = h + m.lead_emb.weight[0]
        return h

    def run_blocks(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        self._check_range(start, stop)
        m = self.module
        for k in range(start, stop):
            if k < self._n_conv:
                conv, norm = m.lower_convs[k], m.lower_norms[k]
                y = F.gelu(conv(h.transpose(1, 2)).transpose(1, 2))
                h = norm(y + h)
            else:
                h = run_frozen_layer(m.upper_transformer.layers[k - self._n_conv], h)
        return h

    def run_blocks_on_span(
        self, coeff: torch.Tensor, basis: torch.Tensor, start: int, stop: int
    ) -> torch.Tensor:
        if start < self._n_conv or start >= stop:  # a conv block first: nothing to gain
            return super().run_blocks_on_span(coeff, basis, start, stop)
        self._check_range(start, stop)
        h = run_frozen_layer_on_span(self.module.upper_transformer.layers[start - self._n_conv], coeff, basis)
        return self.run_blocks(h, start + 1, stop)

    def sample_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Per-sample rhythm logits (B, 5000, 6) from the hidden state after the last block."""
        m = self.module
        rewrites = getattr(m, EXPORT_REWRITES, None)
        if rewrites is None:
            up = F.interpolate(h.transpose(1, 2), scale_factor=m.patch_size, mode="nearest")
            up = up + m.refine(up)
            return m.rhythm_sample(up.transpose(1, 2))
        # export_rewrites: the same numbers without the upsampled tokens. rhythm_sample is linear,
        # so it reads the residual (the upsampled tokens) once per token, and the refine branch
        # through the last conv folded into it.
        upsample_conv, conv_to_logits = rewrites
        logits = conv_to_logits(m.refine[1](upsample_conv(h.transpose(1, 2))))  # (B, K, T * patch)
        per_token = F.linear(h, m.rhythm_sample.weight)  # (B, T, K)
        b, t, k = per_token.shape
        logits = logits.transpose(1, 2).reshape(b, t, m.patch_size, k) + per_token.unsqueeze(2)
        return logits.reshape(b, -1, k)

    @contextlib.contextmanager
    def export_rewrites(self):
        """The head at the token rate (models.exact_rewrites): the nearest upsampling and first
        refine conv as one conv on the tokens, the last refine conv folded into the per-sample
        linear head. Attached to the module only while it is exported."""
        m = self.module
        upsample_conv = NearestUpsampleConv1d(m.refine[0], m.patch_size)
        m.add_module(
            EXPORT_REWRITES,
            torch.nn.ModuleList([upsample_conv, ConvThenLinear(m.refine[2], m.rhythm_sample)]),
        )
        try:
            yield
        finally:
            delattr(m, EXPORT_REWRITES)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.sample_logits(h), dim=-1).mean(dim=1)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "window_prediction": "mean over the window's samples of per-sample rhythm softmax (docs/method.md)",
            "license": "Apache-2.0 (openecg)",
        }

    def license_text(self) -> str:
        return Path(self.license_path()).read_text()

    @staticmethod
    def license_path() -> str:
        """openecg's Apache-2.0 licence file in its installed distribution metadata."""
        from importlib.metadata import distribution

        dist = distribution("openecg")
        for f in dist.files or ():
            if f.name.upper().startswith("LICENSE"):
                return str(f.locate())
        raise DependencyMissingError(
            "openecg is installed without its LICENSE file; reinstall it with pip",
            package="openecg",
            install_hint="pip install --force-reinstall openecg",
        )
