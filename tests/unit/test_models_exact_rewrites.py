"""The exact rewrites give the numbers of the pieces they replace."""

import pytest
import torch
import torch.nn.functional as F

from bridge_edge.models.exact_rewrites import ConvThenLinear, NearestUpsampleConv1d, phase_kernels

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("kernel", "factor", "c_in", "c_out"),
    [(5, 10, 8, 6), (7, 2, 3, 4), (3, 3, 2, 2), (1, 4, 2, 3), (9, 2, 3, 3), (5, 1, 2, 2), (11, 3, 2, 5)],
)
def test_equals_upsample_then_conv(kernel, factor, c_in, c_out):
    torch.manual_seed(kernel * 100 + factor)
    conv = torch.nn.Conv1d(c_in, c_out, kernel, padding=(kernel - 1) // 2)
    x = torch.randn(3, c_in, 41)
    with torch.no_grad():
        expected = conv(F.interpolate(x, scale_factor=factor, mode="nearest"))
        got = NearestUpsampleConv1d(conv, factor)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_phase_kernels_redistribute_every_tap_once():
    weight = torch.randn(4, 3, 5)
    kernels, phase_of, left = phase_kernels(weight, padding=2, factor=10)
    # x10 into 5 taps: 3 input offsets (one to the left); phases 2-7 read every tap at offset 0
    assert kernels.shape == (4 * 5, 3, 3) and left == 1
    assert phase_of.tolist() == [0, 1, 2, 2, 2, 2, 2, 2, 3, 4]
    per_phase = kernels.reshape(4, 5, 3, 3).sum(dim=-1)  # each phase reads all 5 taps somewhere
    assert torch.allclose(per_phase, weight.sum(dim=-1)[:, None, :].expand(4, 5, 3), atol=1e-6)


def test_kernels_are_not_state():
    conv = torch.nn.Conv1d(2, 2, 5, padding=2)
    module = NearestUpsampleConv1d(conv, 10)
    assert dict(module.state_dict()) == {}  # exported as initializers, never saved
    assert {name for name, _ in module.named_buffers()} == {"weight", "bias", "phase_of"}


@pytest.mark.parametrize(
    "conv",
    [
        torch.nn.Conv1d(2, 2, 5, padding=1),  # not 'same'
        torch.nn.Conv1d(2, 2, 5, padding=2, stride=2),
        torch.nn.Conv1d(2, 2, 5, padding=2, dilation=2),
        torch.nn.Conv1d(2, 2, 5, padding=2, groups=2),
        torch.nn.Conv1d(2, 2, 5, padding=2, padding_mode="reflect"),
    ],
)
def test_rejects_convs_it_does_not_rewrite_exactly(conv):
    with pytest.raises(ValueError, match="expected"):
        NearestUpsampleConv1d(conv, 4)


@pytest.mark.parametrize(
    ("kernel", "padding", "stride", "bias"), [(5, 2, 1, True), (3, 0, 2, False), (1, 0, 1, True)]
)
def test_conv_then_linear_is_one_conv(kernel, padding, stride, bias):
    torch.manual_seed(kernel)
    conv = torch.nn.Conv1d(8, 16, kernel, padding=padding, stride=stride, bias=bias)
    linear = torch.nn.Linear(16, 6, bias=bias)
    x = torch.randn(2, 8, 50)
    with torch.no_grad():
        expected = linear(conv(x).transpose(1, 2)).transpose(1, 2)
        folded = ConvThenLinear(conv, linear)
        got = folded(x)
    assert got.shape == expected.shape and folded.weight.shape == (6, 8, kernel)
    assert torch.allclose(got, expected, atol=1e-5)
    assert dict(folded.state_dict()) == {}
