"""A frozen transformer layer computed for its input gradient gives torch's layer's numbers."""

import pytest
import torch
from torch import nn

from bridge_edge.models import frozen_layers
from bridge_edge.models.frozen_layers import (
    encoder_layer_forward,
    encoder_layer_on_span,
    has_plain_attention,
    run_frozen_layer,
    run_frozen_layer_on_span,
)

torch.set_num_threads(1)


def frozen_layer(norm_first: bool, activation: str, seed: int = 0) -> nn.TransformerEncoderLayer:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(
        32, 4, 64, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    )
    with torch.no_grad():  # trained-looking biases and norms, not torch's zeros and ones
        for name, p in layer.named_parameters():
            if "bias" in name or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return layer.eval().requires_grad_(False)


@pytest.mark.parametrize(
    ("norm_first", "activation"), [(True, "gelu"), (False, "gelu"), (True, "relu"), (False, "relu")]
)
def test_values_and_input_gradient_equal_torch_layer(norm_first, activation):
    layer = frozen_layer(norm_first, activation)
    x = torch.randn(3, 37, 32, dtype=torch.float64, requires_grad=True)
    layer.double()
    weight = torch.randn(3, 37, 32, dtype=torch.float64)
    expected = layer(x)
    (grad_expected,) = torch.autograd.grad((expected * weight).sum(), x)
    got = encoder_layer_forward(layer, x)
    (grad_got,) = torch.autograd.grad((got * weight).sum(), x)
    assert torch.allclose(got, expected, atol=1e-10)
    assert torch.allclose(grad_got, grad_expected, atol=1e-10)


def test_openecg_layer_after_the_bridge_in_float32():
    from bridge_edge.models.openecg_adapter import OpenEcgAdapter

    old = OpenEcgAdapter().freeze()
    layer = old.module.upper_transformer.layers[3]
    assert has_plain_attention(layer)
    torch.manual_seed(0)
    x = torch.randn(2, 500, 128, requires_grad=True)
    expected = layer(x)
    got = encoder_layer_forward(layer, x)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    (grad_got,) = torch.autograd.grad(got.square().sum(), x)
    assert torch.allclose(got, expected, atol=1e-5)
    # float32 rounding of gradients of order 100: compared relative to their size
    assert float((grad_got - grad_expected).abs().max() / grad_expected.abs().max()) < 1e-5


def test_only_where_a_gradient_flows(monkeypatch):
    layer = frozen_layer(True, "gelu")
    calls = []
    monkeypatch.setattr(frozen_layers, "encoder_layer_forward", lambda lay, x: calls.append(x) or lay(x))
    x = torch.randn(2, 5, 32)
    run_frozen_layer(layer, x)  # no gradient wanted
    with torch.inference_mode():  # how models are exported
        run_frozen_layer(layer, x.clone().requires_grad_())
    assert calls == []
    run_frozen_layer(layer, x.clone().requires_grad_())
    assert len(calls) == 1


def test_training_mode_layers_keep_torch_path():
    layer = frozen_layer(True, "gelu").train()  # dropout active: not this path's job
    assert not has_plain_attention(layer)
    kv_bias = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    kv_bias.self_attn = nn.MultiheadAttention(32, 4, add_bias_kv=True, batch_first=True)
    assert not has_plain_attention(kv_bias)
    sequence_first = nn.TransformerEncoderLayer(32, 4, 64, batch_first=False).eval()
    assert not has_plain_attention(sequence_first)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_a_layer_run_on_the_span_of_a_basis_equals_the_layer_on_its_product(activation):
    layer = frozen_layer(True, activation, seed=3).double()
    torch.manual_seed(1)
    coeff = torch.randn(3, 6, 37, dtype=torch.float64, requires_grad=True)  # (B, P, T)
    basis = torch.randn(32, 6, dtype=torch.float64, requires_grad=True)  # (D, P)
    weight = torch.randn(3, 37, 32, dtype=torch.float64)
    expected = layer((basis @ coeff).transpose(1, 2))
    grads_expected = torch.autograd.grad((expected * weight).sum(), (coeff, basis))
    got = encoder_layer_on_span(layer, coeff, basis)
    grads_got = torch.autograd.grad((got * weight).sum(), (coeff, basis))
    assert torch.allclose(got, expected, atol=1e-10)
    for g, e in zip(grads_got, grads_expected):  # both factors train: the coefficients and the prototypes
        assert torch.allclose(g, e, atol=1e-9)


def test_span_path_only_for_norm_first_layers_where_a_gradient_flows(monkeypatch):
    calls = []
    monkeypatch.setattr(frozen_layers, "encoder_layer_on_span", lambda *a: calls.append(a) or None)
    coeff, basis = torch.randn(2, 4, 5), torch.randn(32, 4)
    post_norm = frozen_layer(False, "gelu")
    out = run_frozen_layer_on_span(post_norm, coeff.clone().requires_grad_(), basis)
    assert calls == [] and torch.allclose(out, post_norm((basis @ coeff).transpose(1, 2)), atol=1e-6)
    pre_norm = frozen_layer(True, "gelu")
    run_frozen_layer_on_span(pre_norm, coeff, basis)  # nothing needs a gradient
    assert calls == []
    run_frozen_layer_on_span(pre_norm, coeff, basis.clone().requires_grad_())
    assert len(calls) == 1
    wide = torch.randn(32, 8), torch.randn(2, 8, 5)  # 8 prototypes: as wide as a head (32 / 4)
    out = run_frozen_layer_on_span(pre_norm, wide[1], wide[0].requires_grad_())
    assert len(calls) == 1 and torch.allclose(out, pre_norm((wide[0] @ wide[1]).transpose(1, 2)), atol=1e-5)


@pytest.mark.parametrize(("start", "prototypes"), [(7, 16), (7, 15), (7, 5), (6, 16), (4, 16), (2, 16)])
def test_openecg_blocks_on_a_bridge_span_equal_the_blocks_on_its_map(start, prototypes):
    """15 and 5 prototypes: attention runs on zero-padded queries and keys (16 columns)."""
    from bridge_edge.models.openecg_adapter import OpenEcgAdapter

    old = OpenEcgAdapter().freeze()
    torch.manual_seed(start)
    coeff = torch.randn(2, prototypes, 500, requires_grad=True)
    basis = torch.randn(128, prototypes, requires_grad=True)
    expected = old.run_blocks((basis @ coeff).transpose(1, 2), start, old.n_blocks)
    got = old.run_blocks_on_span(coeff, basis, start, old.n_blocks)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5
    for g, e in zip(
        torch.autograd.grad(got.square().mean(), (coeff, basis)),
        torch.autograd.grad(expected.square().mean(), (coeff, basis)),
    ):
        assert float((g - e).abs().max() / e.abs().max()) < 1e-4
