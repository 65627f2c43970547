"""Frozen transformer layers run so that gradients reach their input without waste.

A bridge step trains nothing inside the old model, yet back-propagates through the old model's
layers after the bridge (docs/method.md, "Training time"). torch's ``TransformerEncoderLayer``
in that case takes ``multi_head_attention_forward``'s general path: it projects q, k and v as one
packed tensor and splits it by selection, and each selection's backward fills a zero tensor of
the whole packed size and copies into it. For openecg's layer after the bridge (16 windows,
500 tokens, 128 channels) that is three 12 MB fills and their copies every step, about a tenth
of the step. ``encoder_layer_forward`` computes the same layer with three projections and
``scaled_dot_product_attention``, whose backward writes each gradient once.

``encoder_layer_on_span`` goes further for the layer right after a prototype bridge, whose input
is ``basis @ coeff``: every token lies in the span of the bridge's P prototypes (16 in the
default, against 128 channels). Layer norm, the q/k/v projections and attention's scores are
then functions of each token's P coefficients, so the layer is computed from them exactly:
attention runs with P-dimensional queries and keys instead of the head's 32, and the packed
q/k/v are never built (docs/method.md, "Training time"). Used where P is under the head's
width; a wider span (150 prototypes in the paper's WESAD recipes) would make attention dearer.

Both are used only where a gradient flows (grad mode on and the input requires it); inference,
validation and ONNX export (run under ``torch.inference_mode``) keep torch's own layer, so
exported graphs are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the narrowest query/key width attention runs at on the span (see encoder_layer_on_span)
_ATTENTION_WIDTH = 16


def has_plain_attention(layer: nn.TransformerEncoderLayer) -> bool:
    """The layers ``encoder_layer_forward`` computes exactly: eval mode (no dropout),
    batch-first, one packed q/k/v projection, no extra key/value bias or zero attention."""
    attn = layer.self_attn
    return (
        not layer.training
        and attn.batch_first
        and attn._qkv_same_embed_dim
        and attn.in_proj_bias is not None
        and attn.bias_k is None
        and not attn.add_zero_attn
    )


def encoder_layer_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` (no mask) for a layer ``has_plain_attention`` accepts; x: (B, T, D)."""
    if layer.norm_first:
        x = x + _self_attention(layer.self_attn, layer.norm1(x))
        return x + _feed_forward(layer, layer.norm2(x))
    x = layer.norm1(x + _self_attention(layer.self_attn, x))
    return layer.norm2(x + _feed_forward(layer, x))


def _self_attention(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    b, t, d = x.shape
    heads = attn.num_heads
    weights = attn.in_proj_weight.split(d)
    biases = attn.in_proj_bias.split(d)
    q, k, v = (
        F.linear(x, w, bias).view(b, t, heads, d // heads).transpose(1, 2) for w, bias in zip(weights, biases)
    )
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, d / heads)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, d))


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    return layer.linear2(layer.activation(layer.linear1(x)))


def run_frozen_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, by ``encoder_layer_forward`` when a gradient flows to ``x`` through it."""
    if torch.is_grad_enabled() and x.requires_grad and has_plain_attention(layer):
        return encoder_layer_forward(layer, x)
    return layer(x)


def encoder_layer_on_span(
    layer: nn.TransformerEncoderLayer, coeff: torch.Tensor, basis: torch.Tensor
) -> torch.Tensor:
    """``layer((basis @ coeff).transpose(1, 2))`` for a norm-first layer ``has_plain_attention``
    accepts, from ``coeff`` (B, P, T) and ``basis`` (D, P), without building the (B, T, D) input.

    With x_t = basis c_t: layer norm gives ``w * (basis_c c_t) / s_t + b`` (basis_c: the basis
    centred over channels; s_t: the token's standard deviation, from c_t and basis_c' basis_c),
    so each head's q, k and v are ``M c_t / s_t + beta``. A score q_t . k_s is, up to terms equal
    for every key s (which softmax ignores), ``(M_k' q_t) . (c_s / s_s)``; and since attention
    weights sum to one, the head's output is ``M_v u_t + beta_v`` with u_t the attention-weighted
    mean of c_s / s_s. So attention runs on P-dimensional queries and keys at the head's own scale.
    """
    attn, norm = layer.self_attn, layer.norm1
    d, p = basis.shape
    heads = attn.num_heads
    head_dim = d // heads
    c = coeff.transpose(1, 2)  # (B, T, P)
    centred = basis - basis.mean(dim=0, keepdim=True)
    variance = ((c @ (centred.T @ centred / d)) * c).sum(dim=-1, keepdim=True)
    c_hat = c * torch.rsqrt(variance + norm.eps)  # normalised token coefficients (B, T, P)
    normed_basis = norm.weight[:, None] * centred  # layer norm's output is normed_basis c_hat + bias
    w_q, w_k, w_v = attn.in_proj_weight.split(d)
    # k's bias adds the same to every score of a query, which softmax ignores
    in_q, _, in_v = attn.in_proj_bias.split(d)
    b_q, b_v = w_q @ norm.bias + in_q, w_v @ norm.bias + in_v
    m_q, m_k, m_v = ((w @ normed_basis).view(heads, head_dim, p) for w in (w_q, w_k, w_v))
    query_map = m_k.transpose(1, 2) @ m_q  # (heads, P, P)
    query_bias = (m_k.transpose(1, 2) @ b_q.view(heads, head_dim, 1)).squeeze(-1)  # (heads, P)
    q = torch.einsum("btp,hqp->bhtq", c_hat, query_map) + query_bias[None, :, None, :]
    kv = c_hat.unsqueeze(1).expand(-1, heads, -1, -1).contiguous()  # the flash kernel wants it dense
    # Zero columns leave every score and the other output columns as they are. CPU flash
    # attention is a third slower at 15 or 8 columns than at 16 (forward and backward, 500 tokens).
    width = min(_ATTENTION_WIDTH, head_dim)
    if p < width:
        q, kv = F.pad(q, (0, width - p)), F.pad(kv, (0, width - p))
    u = F.scaled_dot_product_attention(q, kv, kv, scale=head_dim**-0.5)[..., :p]  # (B, heads, T, P)
    w_out = attn.out_proj.weight
    value_out = torch.einsum("dhk,hkp->hdp", w_out.view(d, heads, head_dim), m_v)  # (heads, D, P)
    x = c @ basis.T + torch.einsum("bhtp,hdp->btd", u, value_out) + (w_out @ b_v + attn.out_proj.bias)
    return x + _feed_forward(layer, layer.norm2(x))


def run_frozen_layer_on_span(
    layer: nn.TransformerEncoderLayer, coeff: torch.Tensor, basis: torch.Tensor
) -> torch.Tensor:
    """``layer((basis @ coeff).transpose(1, 2))``, by ``encoder_layer_on_span`` when a gradient flows
    and the span is narrower than an attention head (else its attention would cost more)."""
    flows = torch.is_grad_enabled() and (coeff.requires_grad or basis.requires_grad)
    narrow = basis.shape[1] < layer.self_attn.head_dim
    if flows and narrow and layer.norm_first and has_plain_attention(layer):
        return encoder_layer_on_span(layer, coeff, basis)
    return run_frozen_layer(layer, (basis @ coeff).transpose(1, 2))
