"""The prototype low-rank bridge G (docs/method.md).

    x (B, d_in) --A (r x d_in)--> (B, r) --B ((P*T) x r)--> coefficients (B, P, T)
                --Proto (D x P)--> (B, D, T)  = a map in the old model's hidden layout

No bias, no nonlinearity. Initialisation: A Kaiming-uniform (a = sqrt 5), B = 0 (so the bridge
outputs exactly zero at start), Proto ~ N(0, 1) (``rand_<P>``) or real old-model token vectors
(``randreal_<P>``). Parameters: r*d_in + P*T*r + D*P.

``[bridge] input = "tokens"`` (:class:`TokenPrototypeBridge`) adds a time-local term read from the
new model's token sequence x (B, d_in, T_in) instead of its time mean alone (docs/method.md,
"A bridge that reads the beat sequence"):

    coefficients += resample(B_loc (P*u x r_loc) @ A_loc (r_loc x d_in) @ x)    u = ceil(T / T_in)

each input token giving the coefficients of the u output tokens under it, linearly resampled onto
the old model's T tokens (two taps an output token). B_loc = 0 at start, so it starts as the
pooled bridge. Its rank r_loc is ``[bridge] local_rank`` (0: the pooled rank r).
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


def bridge_param_count(
    d_in: int, d_out: int, n_tokens: int, rank: int, prototypes: int, t_in: int = 0, local_rank: int = 0
) -> int:
    """Parameters of the pooled bridge; with ``t_in`` > 0, of the token-reading one (its local
    term at ``local_rank``, 0: ``rank``)."""
    pooled = rank * d_in + prototypes * n_tokens * rank + d_out * prototypes
    if not t_in:
        return pooled
    local_rank = local_rank or rank
    return pooled + local_rank * d_in + prototypes * math.ceil(n_tokens / t_in) * local_rank


class PrototypeBridge(nn.Module):
    """Maps a pooled new-model vector to a (D, T) map of the old model (channel-first order).

    ``forward`` returns (B, D, T); the caller reshapes to the old model's layout (token-last
    models want (B, T, D) — see :func:`to_layout`). ``read`` turns a new-model hidden tensor into
    what ``forward`` takes.
    """

    input = "pooled"

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

    def describe(self) -> dict:
        """The ``bridge`` table of composed.json (without ``init``): :func:`bridge_from_spec` reads it."""
        return {
            "input": self.input,
            "rank": self.rank,
            "prototypes": self.prototypes,
            "params": self.n_params,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "n_tokens": self.n_tokens,
        }

    def read(self, new, h: torch.Tensor) -> torch.Tensor:
        """The new model's block output ``h`` (its own layout) as this bridge's input: (B, d_in)."""
        return new.pool(h)

    def coefficients(self, pooled: torch.Tensor) -> torch.Tensor:
        coeff = (pooled @ self.A.T) @ self.B.T  # (B, P*T)
        return coeff.reshape(pooled.shape[0], self.prototypes, self.n_tokens)

    def coefficient_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, T): each output token's coefficients on the prototypes."""
        return self.coefficients(x)

    def forward(self, x: torch.Tensor, span: bool = False):
        """(B, D, T) = Proto (D, P) @ coefficients (B, P, T); ``span=True``: the two factors
        (coefficients, Proto), for an old block that runs on them (ModelAdapter.run_blocks_on_span)."""
        coeff = self.coefficient_map(x)
        return (coeff, self.proto) if span else torch.matmul(self.proto, coeff)


class TokenPrototypeBridge(PrototypeBridge):
    """The pooled bridge plus a time-local term from the new model's token sequence (module docstring).

    Without it the bridge maps one time-averaged vector to a whole (D, T) map: it can only draw an
    average map of the windows alike in that vector, whatever their beat times (docs/method.md).
    """

    input = "tokens"

    def __init__(
        self, d_in: int, d_out: int, n_tokens: int, rank: int, prototypes: int, t_in: int, local_rank: int = 0
    ) -> None:
        super().__init__(d_in, d_out, n_tokens, rank, prototypes)
        self.t_in, self.local_rank = t_in, local_rank or rank
        self.upsample = math.ceil(n_tokens / t_in)
        self.A_local = nn.Parameter(torch.empty(self.local_rank, d_in))
        self.B_local = nn.Parameter(torch.zeros(prototypes * self.upsample, self.local_rank))
        nn.init.kaiming_uniform_(self.A_local, a=math.sqrt(5))
        # Fixed by the shapes, so not saved: rebuilt identically from composed.json. Two taps an
        # output token, not a dense (T_in*u, T) matrix: the default's was 1 MB, held by the bridge
        # and again by its moving average during training, and a constant in every exported file.
        lo, hi, w_hi = linear_resample_taps(t_in * self.upsample, n_tokens)
        self.register_buffer("resample_lo", lo, persistent=False)
        self.register_buffer("resample_hi", hi, persistent=False)
        self.register_buffer("resample_w_lo", 1.0 - w_hi, persistent=False)
        self.register_buffer("resample_w_hi", w_hi, persistent=False)

    @property
    def n_params(self) -> int:
        return bridge_param_count(
            self.d_in, self.d_out, self.n_tokens, self.rank, self.prototypes, self.t_in, self.local_rank
        )

    def describe(self) -> dict:
        return super().describe() | {"t_in": self.t_in, "local_rank": self.local_rank}

    def read(self, new, h: torch.Tensor) -> torch.Tensor:
        """(B, d_in, T_in): the block output channel-first, whatever the new model's layout."""
        return h if new.layout == "channel_first" else h.transpose(1, 2)

    def coefficient_map(self, x: torch.Tensor) -> torch.Tensor:
        b, p, u = x.shape[0], self.prototypes, self.upsample
        local = torch.matmul(self.B_local, torch.matmul(self.A_local, x))  # (B, P*u, T_in)
        local = local.reshape(b, p, u, self.t_in).transpose(2, 3).reshape(b, p, self.t_in * u)
        return self.coefficients(x.mean(dim=2)) + self.resample(local)

    def resample(self, v: torch.Tensor) -> torch.Tensor:
        """(..., T_in*u) -> (..., T): linear interpolation by :func:`linear_resample_taps`."""
        lo, hi = v.index_select(-1, self.resample_lo), v.index_select(-1, self.resample_hi)
        return lo * self.resample_w_lo + hi * self.resample_w_hi


def linear_resample_taps(n_from: int, n_to: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation of a sequence sampled at the centres of n_from equal cells, at the
    centres of n_to equal cells of the same span (ends held): output j is
    ``(1 - w[j]) v[lo[j]] + w[j] v[hi[j]]``. Returns (lo, hi, w) of length n_to."""
    at = ((torch.arange(n_to, dtype=torch.float64) + 0.5) * n_from / n_to - 0.5).clamp(0, n_from - 1)
    lo = at.floor().long()
    return lo, (lo + 1).clamp(max=n_from - 1), (at - lo).float()


def bridge_from_spec(b: dict) -> PrototypeBridge:
    """An untrained bridge of the shape composed.json's ``bridge`` table describes."""
    shape = (b["d_in"], b["d_out"], b["n_tokens"], b["rank"], b["prototypes"])
    if b.get("input", "pooled") == "tokens":
        # composed.json before 0.10.0 has no local_rank: its local term ran at the pooled rank
        return TokenPrototypeBridge(*shape, t_in=b["t_in"], local_rank=b.get("local_rank", 0))
    return PrototypeBridge(*shape)


def to_layout(h_dt: torch.Tensor, layout: str) -> torch.Tensor:
    """(B, D, T) bridge output -> the old model's hidden layout."""
    return h_dt.transpose(1, 2) if layout == "token_last" else h_dt


def hidden_dims(h: torch.Tensor, layout: str) -> tuple[int, int]:
    """(D, T) of one hidden tensor in the given layout."""
    return (h.shape[2], h.shape[1]) if layout == "token_last" else (h.shape[1], h.shape[2])
