"""The prototype low-rank bridge G (docs/method.md).

    x (B, d_in) --A (r x d_in)--> (B, r) --B ((P*T) x r)--> coefficients (B, P, T)
                --Proto (D x P)--> (B, D, T)  = a map in the old model's hidden layout

No bias, no nonlinearity. Initialisation: A Kaiming-uniform (a = sqrt 5), B = 0 (so the bridge
outputs exactly zero at start), Proto ~ N(0, 1) (``rand_<P>``) or real old-model token vectors
(``randreal_<P>``). Parameters: r*d_in + P*T*r + D*P.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from bridge_edge.errors import ConfigError

_INIT_RE = re.compile(r"^(rand|randreal)_(\d+)$")


def parse_proto_init(init: str) -> tuple[str, int]:
    """``"rand_150"`` -> ("rand", 150). ``randreal`` draws prototypes from real old-model tokens."""
    m = _INIT_RE.match(init)
    if not m:
        raise ConfigError(
            f"bridge prototype init {init!r} is not understood; expected 'rand_<P>' or 'randreal_<P>'",
            key="bridge.init",
            value=init,
            expected="rand_<P> | randreal_<P>",
        )
    return m.group(1), int(m.group(2))


def bridge_param_count(d_in: int, d_out: int, n_tokens: int, rank: int, prototypes: int) -> int:
    return rank * d_in + prototypes * n_tokens * rank + d_out * prototypes


class PrototypeBridge(nn.Module):
    """Maps a pooled new-model vector to a (D, T) map of the old model (channel-first order).

    ``forward`` returns (B, D, T); the caller reshapes to the old model's layout (token-last
    models want (B, T, D) — see :func:`to_layout`).
    """

    def __init__(self, d_in: int, d_out: int, n_tokens: int, rank: int, prototypes: int) -> None:
        super().__init__()
        self.d_in, self.d_out, self.n_tokens = d_in, d_out, n_tokens
        self.rank, self.prototypes = rank, prototypes
        self.A = nn.Parameter(torch.empty(rank, d_in))
        self.B = nn.Parameter(torch.zeros(prototypes * n_tokens, rank))
        self.proto = nn.Parameter(torch.randn(d_out, prototypes))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @property
    def n_params(self) -> int:
        return bridge_param_count(self.d_in, self.d_out, self.n_tokens, self.rank, self.prototypes)

    def init_prototypes_from(self, tokens: torch.Tensor, seed: int = 0) -> None:
        """``randreal``: Proto columns = P token vectors drawn from real old-model hidden states.

        ``tokens`` is (N, D): hidden vectors at the output position, one row per token (the
        caller flattens its layout correctly — the authors' code reshaped channel-first maps
        wrongly, docs/method.md).
        """
        if tokens.ndim != 2 or tokens.shape[1] != self.d_out:
            raise ConfigError(
                f"randreal prototypes need (N, {self.d_out}) token vectors, got {tuple(tokens.shape)}",
                key="bridge.init",
                expected=f"(N, {self.d_out})",
            )
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(tokens.shape[0], generator=gen)[: self.prototypes]
        with torch.no_grad():
            self.proto.copy_(tokens[idx].T.to(self.proto.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coeff = (x @ self.A.T) @ self.B.T  # (B, P*T)
        coeff = coeff.reshape(x.shape[0], self.prototypes, self.n_tokens)
        return torch.matmul(self.proto, coeff)  # (D, P) @ (B, P, T) -> (B, D, T)


def to_layout(h_dt: torch.Tensor, layout: str) -> torch.Tensor:
    """(B, D, T) bridge output -> the old model's hidden layout."""
    return h_dt.transpose(1, 2) if layout == "token_last" else h_dt


def hidden_dims(h: torch.Tensor, layout: str) -> tuple[int, int]:
    """(D, T) of one hidden tensor in the given layout."""
    return (h.shape[2], h.shape[1]) if layout == "token_last" else (h.shape[1], h.shape[2])
