"""The torch fp32 reference inside a bundle: the composed module's weights + its composition.

A bundle carries ``torch/composed.safetensors`` (the composed module's whole state dict,
float32) and ``torch/composed.json`` (``bridge.compose.ComposedSpec``), so torch eager can
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
    state = {
        k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()).contiguous().clone()
        for k, v in module.state_dict().items()
    }
    save_file(state, str(weights), metadata={"format": "pt"})
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    rebuilt = load_torch_reference(bundle_dir, TORCH_SPEC_NAME, TORCH_WEIGHTS_NAME)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(golden_x, np.float32))
        diff = float((rebuilt(x) - module(x)).abs().max()) if len(x) else 0.0
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


def load_torch_reference(
    bundle_dir: Path, spec_name: str = TORCH_SPEC_NAME, weights_name: str = TORCH_WEIGHTS_NAME
):
    """The composed fp32 module (eval, frozen) rebuilt from a bundle's torch files."""
    from torch import nn

    from bridge_edge.bridge.compose import ComposedSpec, compose
    from bridge_edge.bridge.prototype import PrototypeBridge
    from bridge_edge.models.checkpoints import load_state_strict, read_state_file
    from bridge_edge.models.probe import ProbedAdapter
    from bridge_edge.models.registry import build_adapter

    bundle_dir = Path(bundle_dir)
    try:
        spec = ComposedSpec(**json.loads((bundle_dir / spec_name).read_text()))
    except (OSError, ValueError, TypeError) as err:
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
    b = spec.bridge
    bridge = PrototypeBridge(b["d_in"], b["d_out"], b["n_tokens"], b["rank"], b["prototypes"])
    model = compose(new.freeze(), old.freeze(), bridge, spec.k_in, spec.k_out)
    load_state_strict(model, state, str(bundle_dir / weights_name))
    return model.eval().requires_grad_(False)
