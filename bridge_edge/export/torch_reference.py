"""The torch fp32 reference inside a bundle: the composed module's weights + its composition.

A bundle carries ``torch/composed.safetensors`` (the composed module's state dict, float32,
less the tensors of submodules the forward pass never calls — the old model's lower blocks and
heads it does not use, the new model's upper blocks) and ``torch/composed.json``
(``{"composed": bridge.compose.ComposedSpec, "omitted_keys": [...]}``), so torch eager can
rebuild the exact fp32 model from the bundle alone — what ``bench latency`` divides every
engine by, with no training run on the machine (docs/bundles.md, "torch reference"). Rebuilding
needs the ``train`` extra (torch, and openecg for the old model's architecture); the device
side never reads these files. Export rebuilds the module from the written files and records
its parity with the exported module on the golden windows, so a bundle whose torch files do
not reproduce the model is never written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bridge_edge.errors import BundleError, ModelError
from bridge_edge.export.manifest import TORCH_SPEC_NAME, TORCH_WEIGHTS_NAME, TorchSection

PARITY_TOLERANCE = 1e-4  # the same as torch <-> ONNX fp32 parity at export


def write_torch_reference(module, spec: dict, bundle_dir: Path, golden_x: np.ndarray) -> TorchSection:
    """Write the weights and spec of ``module`` into ``bundle_dir``; check the rebuild."""
    import torch
    from safetensors.torch import save_file

    weights, spec_path = Path(bundle_dir) / TORCH_WEIGHTS_NAME, Path(bundle_dir) / TORCH_SPEC_NAME
    weights.parent.mkdir(parents=True, exist_ok=True)
    full = {
        k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()).contiguous().clone()
        for k, v in module.state_dict().items()
    }
    x = torch.from_numpy(np.ascontiguousarray(golden_x, np.float32))
    called = _called_modules(module, x[:1])
    # the tensors of modules the forward pass calls; if that rebuild misses parity (a weight read
    # by another module than its owner), the whole state dict is written instead
    for state in ({k: v for k, v in full.items() if k.rpartition(".")[0] in called}, full):
        omitted = sorted(set(full) - set(state))
        save_file(state, str(weights), metadata={"format": "pt"})
        spec_path.write_text(json.dumps({"composed": spec, "omitted_keys": omitted}, indent=2) + "\n")
        rebuilt = load_torch_reference(bundle_dir, TORCH_SPEC_NAME, TORCH_WEIGHTS_NAME)
        with torch.inference_mode():
            diff = float((rebuilt(x) - module(x)).abs().max()) if len(x) else 0.0
        if diff <= PARITY_TOLERANCE:
            break
    if not diff <= PARITY_TOLERANCE:
        raise ModelError(
            f"the torch reference rebuilt from {TORCH_WEIGHTS_NAME} differs from the exported module by "
            f"{diff:.3g} on the golden windows; expected <= {PARITY_TOLERANCE:g}",
            model=TORCH_WEIGHTS_NAME,
            reason="torch reference parity",
        )
    return TorchSection(
        weights=TORCH_WEIGHTS_NAME, spec=TORCH_SPEC_NAME, tensors=len(state), parity_max_abs_diff=diff
    )


def _called_modules(module, x) -> set[str]:
    """Names of the submodules a forward pass on ``x`` calls ("" is the module itself)."""
    import torch

    names = {m: n for n, m in module.named_modules()}
    called: set[str] = set()
    hooks = [m.register_forward_pre_hook(lambda m, _args: called.add(names[m])) for m in names]
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return called


def load_torch_reference(
    bundle_dir: Path, spec_name: str = TORCH_SPEC_NAME, weights_name: str = TORCH_WEIGHTS_NAME
):
    """The composed fp32 module (eval, frozen) rebuilt from a bundle's torch files."""
    from torch import nn

    from bridge_edge.bridge.compose import ComposedSpec, compose
    from bridge_edge.bridge.prototype import bridge_from_spec
    from bridge_edge.models.checkpoints import load_state_strict, read_state_file
    from bridge_edge.models.probe import ProbedAdapter
    from bridge_edge.models.registry import build_adapter

    bundle_dir = Path(bundle_dir)
    try:
        raw = json.loads((bundle_dir / spec_name).read_text())
        spec = ComposedSpec(**raw.get("composed", raw))  # early files held the spec alone
        omitted = set(raw.get("omitted_keys", []))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise BundleError(
            f"{bundle_dir / spec_name}: cannot read the torch composition ({type(err).__name__}: {err}); "
            "expected bridge.compose.ComposedSpec as JSON",
            path=str(bundle_dir),
            file=spec_name,
            problems=[str(err)],
        ) from err
    state = read_state_file(bundle_dir / weights_name)

    def table(described: dict) -> dict:
        # the architecture only: the weights all come from the bundle, never from a checkpoint path
        return {k: v for k, v in described.items() if k not in ("name", "checkpoint")}

    old = build_adapter(table(spec.old_model), device="cpu")
    if "old_probe.weight" in state:  # a trained linear probe was the old model's head
        w = state["old_probe.weight"]
        old = ProbedAdapter(old, nn.Linear(w.shape[1], w.shape[0]), tuple(spec.labels))
    new = build_adapter(table(spec.new_model), device="cpu")
    bridge = bridge_from_spec(spec.bridge)
    model = compose(new.freeze(), old.freeze(), bridge, spec.k_in, spec.k_out, spec.class_weights)
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing != omitted or unexpected:
        # strict on everything the file should hold: the readable key diff names what is off
        load_state_strict(
            model, state | {k: own[k] for k in omitted & set(own)}, str(bundle_dir / weights_name)
        )
    model.load_state_dict(state, strict=False)  # the omitted tensors are never used by forward
    return model.eval().requires_grad_(False)
