import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from bridge_edge.bridge.prototype import (
    PrototypeBridge,
    TokenPrototypeBridge,
    bridge_from_spec,
    bridge_param_count,
    linear_resample_taps,
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


def _token_bridge(t_in=4, n_tokens=10, seed=0) -> TokenPrototypeBridge:
    torch.manual_seed(seed)
    bridge = TokenPrototypeBridge(d_in=6, d_out=5, n_tokens=n_tokens, rank=2, prototypes=3, t_in=t_in)
    with torch.no_grad():
        bridge.B.normal_()
    return bridge


def test_token_bridge_starts_as_the_pooled_bridge_of_the_token_mean():
    bridge = _token_bridge()
    pooled = PrototypeBridge(d_in=6, d_out=5, n_tokens=10, rank=2, prototypes=3)
    pooled.load_state_dict({k: v for k, v in bridge.state_dict().items() if k in ("A", "B", "proto")})
    x = torch.randn(4, 6, 4)
    torch.testing.assert_close(bridge(x), pooled(x.mean(dim=2)))
    with torch.no_grad():
        bridge.B_local.normal_()
    assert not torch.allclose(bridge(x), pooled(x.mean(dim=2)))  # the local term now adds something


def test_token_bridge_param_count_and_spec_round_trip():
    bridge = _token_bridge(t_in=4, n_tokens=10)
    assert bridge.upsample == 3  # ceil(10 / 4)
    assert bridge.n_params == sum(p.numel() for p in bridge.parameters())
    assert bridge.n_params == bridge_param_count(6, 5, 10, 2, 3) + 2 * 6 + 3 * 3 * 2
    spec = bridge.describe()
    assert spec["input"] == "tokens" and spec["t_in"] == 4 and spec["params"] == bridge.n_params
    rebuilt = bridge_from_spec(spec)
    assert isinstance(rebuilt, TokenPrototypeBridge)
    rebuilt.load_state_dict(bridge.state_dict())  # the resampling taps are rebuilt, not stored
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(rebuilt(x), bridge(x))
    # a bundle from before the option has no "input": the pooled bridge
    old_spec = {k: v for k, v in PrototypeBridge(6, 5, 10, 2, 3).describe().items() if k != "input"}
    assert type(bridge_from_spec(old_spec)) is PrototypeBridge


def test_token_term_rank_is_its_own_and_older_specs_run_it_at_the_pooled_rank():
    torch.manual_seed(0)
    bridge = TokenPrototypeBridge(d_in=6, d_out=5, n_tokens=10, rank=3, prototypes=2, t_in=4, local_rank=1)
    assert tuple(bridge.A_local.shape) == (1, 6) and tuple(bridge.B_local.shape) == (2 * 3, 1)
    assert bridge.n_params == sum(p.numel() for p in bridge.parameters())
    assert bridge.n_params == bridge_param_count(6, 5, 10, 3, 2, t_in=4, local_rank=1)
    assert bridge.n_params == bridge_param_count(6, 5, 10, 3, 2) + 1 * 6 + 2 * 3 * 1
    spec = bridge.describe()
    assert spec["local_rank"] == 1
    rebuilt = bridge_from_spec(spec)
    rebuilt.load_state_dict(bridge.state_dict())
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(rebuilt(x), bridge(x))
    # composed.json before 0.10.0 has no local_rank: the token term ran at the pooled rank
    before = bridge_from_spec({k: v for k, v in spec.items() if k != "local_rank"})
    assert before.local_rank == 3 and tuple(before.A_local.shape) == (3, 6)
    # the default pair with its token term at rank 4: under 0.8.0's 68,608 parameters
    assert bridge_param_count(128, 128, 500, 8, 16, t_in=40, local_rank=4) == 68_416 < 68_608


def test_token_bridge_local_term_stays_near_its_input_token():
    bridge = _token_bridge(t_in=5, n_tokens=20)
    with torch.no_grad():
        bridge.B.zero_()  # the pooled term off: only the local term is left
        bridge.B_local.normal_()
    x = torch.zeros(1, 6, 5)
    x[0, :, 2] = torch.randn(6)  # one input token, the middle one: output tokens 8-11 sit under it
    out = bridge(x)[0].abs().sum(dim=0)
    assert out[8:12].min() > 0
    assert torch.count_nonzero(out[:7]) == 0 and torch.count_nonzero(out[13:]) == 0


@pytest.mark.parametrize("n_from, n_to", [(520, 500), (40, 500), (12, 12), (9, 4)])
def test_linear_resample_taps_interpolate_like_torch(n_from, n_to):
    lo, hi, w = linear_resample_taps(n_from, n_to)
    assert lo.shape == hi.shape == w.shape == (n_to,)
    assert bool(((w >= 0) & (w <= 1)).all()) and bool((hi - lo <= 1).all())
    v = torch.randn(3, 2, n_from, dtype=torch.float64)
    out = (1 - w.double()) * v[..., lo] + w.double() * v[..., hi]
    # torch's own linear interpolation (cell centres, ends held) is the reference; w is float32
    ref = F.interpolate(v, size=n_to, mode="linear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    if n_from == n_to:
        assert torch.equal(lo, torch.arange(n_to)) and not bool(w.any())


def test_token_bridge_keeps_no_dense_resampling_matrix():
    bridge = _token_bridge(t_in=40, n_tokens=500)
    buffers = dict(bridge.named_buffers())
    assert sum(b.numel() for b in buffers.values()) == 4 * 500  # two taps and two weights a token
    v = torch.randn(2, 3, 40 * bridge.upsample)
    ref = F.interpolate(v.double(), size=500, mode="linear", align_corners=False)
    torch.testing.assert_close(bridge.resample(v).double(), ref, atol=1e-5, rtol=0)


def test_token_bridge_reads_either_layout_channel_first():
    from types import SimpleNamespace

    bridge = _token_bridge(t_in=4)
    h = torch.randn(2, 6, 4)  # channel-first (B, d_in, T_in)
    assert bridge.read(SimpleNamespace(layout="channel_first"), h) is h
    torch.testing.assert_close(bridge.read(SimpleNamespace(layout="token_last"), h.transpose(1, 2)), h)


@pytest.mark.parametrize("reads", ["pooled", "tokens"])
def test_span_gives_the_two_factors_of_the_output(reads):
    torch.manual_seed(0)
    bridge = bridge_from_spec(
        {"d_in": 12, "d_out": 10, "n_tokens": 30, "rank": 3, "prototypes": 4, "input": reads, "t_in": 7}
    )
    with torch.no_grad():
        for p in bridge.parameters():
            p.normal_()
    x = torch.randn(5, 12, 7) if reads == "tokens" else torch.randn(5, 12)
    coeff, basis = bridge(x, span=True)
    assert coeff.shape == (5, 4, 30) and basis is bridge.proto
    assert torch.allclose(basis @ coeff, bridge(x), atol=1e-5)
