"""The deployable model: one ``nn.Module``, no hooks, PPG window in, class probabilities out.

    x (B, L) preprocessed PPG -> new blocks [0..k_in] -> pool -> bridge -> old layout
      -> old blocks [k_out..end] -> old head -> (B, K) window probabilities
      [-> reweighted at the operating point: ComposedSpec.class_weights]

Block ranges are fixed at construction, so ``forward`` has no data-dependent control flow and
traces to ONNX. ``load_composed(run_dir)`` rebuilds it from a fit run directory (weights in
safetensors, structure from ``composed.json``); ``load_split_windows`` gives the same run's
model-ready windows for golden and calibration sets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridge_edge.bridge.memory import EVAL_BATCH
from bridge_edge.bridge.prototype import PrototypeBridge, bridge_from_spec, to_layout
from bridge_edge.bridge.rundir import ComposedSpec, RunDir
from bridge_edge.bridge.shards import fill_in_passes
from bridge_edge.errors import ConfigError
from bridge_edge.models.base import ModelAdapter


class ComposedModel(nn.Module):
    def __init__(
        self,
        new: ModelAdapter,
        old: ModelAdapter,
        bridge: PrototypeBridge,
        k_in: int,
        k_out: int,
        class_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        self.new_model = new.module
        self.old_model = old.module
        if getattr(old, "probe", None) is not None:  # a trained probe head: its weights export too
            self.old_probe = old.probe
        self.bridge = bridge
        self._new, self._old = new, old  # adapters: plain objects holding the same modules
        self.k_in, self.k_out = k_in, k_out
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        if self.class_weights is not None:  # not persistent: the spec carries them, not the weights file
            log_w = torch.log(torch.tensor(self.class_weights, dtype=torch.float32))
            self.register_buffer("log_class_weights", log_w, persistent=False)

    def at_operating_point(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs`` x class weights, renormalised; unchanged without weights.

        Written as softmax(log p + log w), the same numbers, so the exported graph gains Log, Add and
        Softmax, which int8 export keeps in float (a quantized Mul would round the probabilities)."""
        if self.class_weights is None:
            return probs
        return torch.softmax(torch.log(probs) + self.log_class_weights.to(probs.dtype), dim=-1)

    def export_rewrites(self):
        """The old model's exact rewrites, for export (``ModelAdapter.export_rewrites``)."""
        return self._old.export_rewrites()

    def bridged(self, x: torch.Tensor) -> torch.Tensor:
        """New-model blocks up to k_in, read by the bridge (pooled, or its tokens), through it: old
        block k_out's input."""
        new = self._new
        z = self.bridge.read(new, new.run_blocks(new.stem(x.unsqueeze(1)), 0, self.k_in + 1))
        return to_layout(self.bridge(z), self._old.layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        old = self._old
        return self.at_operating_point(old.head(old.run_blocks(self.bridged(x), self.k_out, old.n_blocks)))

    @torch.no_grad()
    def predict_proba(self, windows: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """``forward`` on ``batch_size`` windows at a time, the old model's part of it in passes of
        ``EVAL_BATCH`` (``old_head_in_passes``): the same numbers, a smaller buffer; the results
        written into one array as they come (``fill_in_passes``)."""
        self.eval()
        device = next(self.parameters()).device
        old = self._old

        def run_pass(rows: slice) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(windows[rows], np.float32)).to(device)
            probs = old_head_in_passes(old, self.bridged(x), self.k_out)
            return self.at_operating_point(probs).float().cpu().numpy()

        empty = np.zeros((0, len(old.labels)), np.float32)
        return fill_in_passes(len(windows), batch_size, run_pass, empty)


def old_head_in_passes(old: ModelAdapter, h: torch.Tensor, k_out: int) -> torch.Tensor:
    """``old.head(old.run_blocks(h, k_out, end))`` run ``EVAL_BATCH`` windows at a time.

    The old model's per-sample head is the largest buffer of an evaluation (openecg: ~10 MB a
    window), and the old model gives every window the same numbers at any batch size (checked bit
    for bit, ragged batches included; the new model does not, so its passes keep their sizes:
    docs/scale.md). The passes' results are written into one tensor (``fill_in_passes``)."""
    run_pass = lambda rows: old.head(old.run_blocks(h[rows], k_out, old.n_blocks))  # noqa: E731
    if not len(h):
        return run_pass(slice(None))  # no passes: the model's own answer for 0 windows
    return fill_in_passes(len(h), EVAL_BATCH, run_pass, None)


def compose(
    new: ModelAdapter,
    old: ModelAdapter,
    bridge: PrototypeBridge,
    k_in: int,
    k_out: int,
    class_weights: Sequence[float] | None = None,
) -> ComposedModel:
    if new.input_spec.channels != 1:
        raise ConfigError(
            f"the composed model takes single-channel windows; {new.name} wants {new.input_spec.channels}",
            key="new_model",
            expected="1 channel",
        )
    if class_weights is not None and (
        len(class_weights) != len(old.labels) or not all(np.isfinite(w) and w > 0 for w in class_weights)
    ):
        raise ConfigError(
            f"class weights {list(class_weights)} do not fit the head's labels {list(old.labels)}; "
            "expected one finite weight > 0 per label",
            key="class_weights",
            value=list(class_weights),
            expected=f"{len(old.labels)} finite weights > 0",
        )
    return ComposedModel(new, old, bridge, k_in, k_out, class_weights).eval()


def save_composed(run_dir: Path, spec: ComposedSpec, bridge: PrototypeBridge) -> None:
    from bridge_edge.models.checkpoints import save_module_state

    rd = RunDir(run_dir)
    save_module_state(bridge, rd.bridge_weights)
    rd.save_spec(spec)


def read_spec(run_dir: str | Path) -> ComposedSpec:
    return RunDir(run_dir).spec()


def build_models(old_table: dict, new_table: dict, run_dir: Path, device: str = "cpu"):
    """(old, new) frozen adapters as a run uses them: the new one with the run's pretrained weights."""
    from bridge_edge.models.registry import build_adapter

    rd = RunDir(run_dir)
    old = build_adapter(dict(old_table), device=device)
    if rd.probe_weights.exists():  # a trained linear probe is the old model's head
        old = _with_probe(old, rd)
    new_cfg = dict(new_table)
    if rd.new_model_weights.exists():
        new_cfg["checkpoint"] = str(rd.new_model_weights)
    new = build_adapter(new_cfg, device=device)
    return old.freeze(), new.freeze()


def _with_probe(old: ModelAdapter, rd: RunDir) -> ModelAdapter:
    from safetensors.torch import load_file

    from bridge_edge.models.probe import ProbedAdapter

    state = load_file(str(rd.probe_weights))
    probe = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    probe.load_state_dict(state)
    labels = json.loads(rd.probe_report.read_text())["labels"]
    return ProbedAdapter(old, probe, tuple(labels))


def _model_table(described: dict) -> dict:
    """The recipe model table stored in the spec, without the descriptive ``name`` we added."""
    return {k: v for k, v in described.items() if k != "name"}


def load_bridge(spec: ComposedSpec, run_dir: Path, device: str = "cpu") -> PrototypeBridge:
    from safetensors.torch import load_file

    bridge = bridge_from_spec(spec.bridge)
    bridge.load_state_dict(load_file(str(RunDir(run_dir).bridge_weights)))
    return bridge.to(device).eval().requires_grad_(False)


def load_composed(
    run_dir: str | Path, device: str = "cpu", at_operating_point: bool = True
) -> tuple[ComposedModel, ComposedSpec]:
    """The composed model of a fit run (eval mode, frozen) and its spec; with
    ``at_operating_point`` false, the bridged head's probabilities as trained."""
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    old, new = build_models(_model_table(spec.old_model), _model_table(spec.new_model), run_dir, device)
    weights = spec.class_weights if at_operating_point else None
    model = compose(new, old, load_bridge(spec, run_dir, device), spec.k_in, spec.k_out, weights)
    return model.requires_grad_(False), spec


def load_split_windows(run_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Model-ready PPG windows of one split of the run's dataset.

    Returns x (N, L) float32 exactly as the composed model takes it, y (N,) truth as indices
    into the head vocabulary (-1: no counterpart in the head, or a mixed window), and labels.
    """
    rd = RunDir(run_dir)
    spec = rd.spec()
    windows = rd.windows(split)
    return windows.ppg.astype(np.float32), windows.head_truth(tuple(spec.labels)), list(spec.labels)
