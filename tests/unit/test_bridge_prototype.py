import math

import pytest

torch = pytest.importorskip("torch")

from bridge_edge.bridge.prototype import (
    PrototypeBridge,
    bridge_param_count,
    parse_proto_init,
    to_layout,
)
from bridge_edge.errors import ConfigError


@pytest.mark.parametrize(
    "d_in, d_out, n_tokens, rank, prototypes, expected",
    [
        (64, 512, 93, 8, 150, 188_912),  # WESAD ECG->PPG (docs/method.md)
        (512, 128, 235, 32, 50, 398_784),  # WESAD PPG->ECG
        (200, 512, 46, 4, 200, 140_000),  # ISRUC ECG->EEG
    ],
)
def test_param_count_matches_method_formula(d_in, d_out, n_tokens, rank, prototypes, expected):
    assert bridge_param_count(d_in, d_out, n_tokens, rank, prototypes) == expected
    bridge = PrototypeBridge(d_in, d_out, n_tokens, rank, prototypes)
    assert sum(p.numel() for p in bridge.parameters()) == expected == bridge.n_params


def test_output_is_zero_at_init_and_shapes_follow_layout():
    torch.manual_seed(0)
    bridge = PrototypeBridge(d_in=16, d_out=8, n_tokens=5, rank=3, prototypes=4)
    out = bridge(torch.randn(7, 16))
    assert out.shape == (7, 8, 5)
    assert torch.count_nonzero(out) == 0
    assert to_layout(out, "token_last").shape == (7, 5, 8)
    assert to_layout(out, "channel_first").shape == (7, 8, 5)


def test_initialisations_follow_method():
    torch.manual_seed(0)
    bridge = PrototypeBridge(d_in=400, d_out=64, n_tokens=10, rank=50, prototypes=200)
    assert torch.all(bridge.B == 0)
    bound = 1.0 / math.sqrt(400)  # kaiming_uniform(a=sqrt 5) on fan_in 400
    assert bridge.A.abs().max() <= bound + 1e-7
    assert bridge.A.abs().max() > 0.9 * bound
    assert abs(float(bridge.proto.detach().std()) - 1.0) < 0.05  # N(0, 1)
    assert abs(float(bridge.proto.detach().mean())) < 0.05


def test_math_is_linear_low_rank_then_prototypes():
    torch.manual_seed(1)
    bridge = PrototypeBridge(d_in=6, d_out=4, n_tokens=3, rank=2, prototypes=5)
    with torch.no_grad():
        bridge.B.normal_()
    x = torch.randn(2, 6)
    coeff = (bridge.B @ (bridge.A @ x.T)).T.reshape(2, 5, 3)
    expected = torch.einsum("dp,bpt->bdt", bridge.proto, coeff)
    torch.testing.assert_close(bridge(x), expected)
    # no bias: zero input -> zero output even after training moved B
    assert torch.count_nonzero(bridge(torch.zeros(1, 6))) == 0


def test_prototype_init_parsing_and_randreal():
    assert parse_proto_init("rand_150") == ("rand", 150)
    assert parse_proto_init("randreal_8") == ("randreal", 8)
    with pytest.raises(ConfigError):
        parse_proto_init("gaussian_3")
    bridge = PrototypeBridge(d_in=3, d_out=4, n_tokens=2, rank=1, prototypes=3)
    tokens = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    bridge.init_prototypes_from(tokens, seed=0)
    rows = {tuple(r.tolist()) for r in tokens}
    assert all(tuple(c.tolist()) in rows for c in bridge.proto.T)
    with pytest.raises(ConfigError):
        bridge.init_prototypes_from(torch.zeros(10, 5))
