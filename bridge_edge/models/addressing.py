"""Block paths: ``upper_transformer.layers[2]`` resolved against a module tree, never with eval.

A path is a dotted chain of attribute names, each optionally followed by ``[index]`` subscripts
(negative indices count from the end, as in Python). ``parse_path`` turns the text into tokens,
``resolve_path`` walks them with ``getattr`` / ``__getitem__`` only, and a failing step raises
``LayerPathError`` naming what *is* available there.

``probe_shapes`` runs one probe batch through an adapter's block list and reports the hidden
shape after the stem and after every block, so no per-dataset shape table is ever hard-coded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bridge_edge.errors import LayerPathError

_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")


@dataclass(frozen=True)
class PathToken:
    """One step of a path: an attribute name or an integer index."""

    attr: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        return self.attr if self.attr is not None else f"[{self.index}]"


def parse_path(path: str) -> tuple[PathToken, ...]:
    """``"a.b[2][-1].c"`` -> (a, b, [2], [-1], c). Raises LayerPathError on bad syntax."""
    tokens: list[PathToken] = []
    pos = 0
    text = path.strip()
    expect_attr = True
    while pos < len(text):
        if expect_attr:
            m = _ATTR.match(text, pos)
            if m is None:
                raise LayerPathError(
                    f"block path {path!r}: expected a name at character {pos}; "
                    "expected syntax like 'encoder.layers[3]'",
                    path=path,
                    available=[],
                )
            tokens.append(PathToken(attr=m.group(0)))
            pos = m.end()
            expect_attr = False
            continue
        m = _INDEX.match(text, pos)
        if m is not None:
            tokens.append(PathToken(index=int(m.group(1))))
            pos = m.end()
        elif text[pos] == "." and pos + 1 < len(text):
            pos += 1
            expect_attr = True
        else:
            raise LayerPathError(
                f"block path {path!r}: unexpected {text[pos]!r} at character {pos}; "
                "expected '.name' or '[index]'",
                path=path,
                available=[],
            )
    if not tokens:
        raise LayerPathError(
            "empty block path; expected syntax like 'encoder.layers[3]'", path=path, available=[]
        )
    return tuple(tokens)


def _children(node: Any) -> list[str]:
    """What a failing step could have named: child module names, or the index range."""
    if hasattr(node, "named_children"):
        names = [name for name, _ in node.named_children()]
        if names and all(n.isdigit() for n in names):
            return [f"[0..{len(names) - 1}]"]
        return names
    if isinstance(node, (list, tuple)):
        return [f"[0..{len(node) - 1}]"]
    return []


def resolve_path(root: Any, path: str) -> Any:
    """Walk ``path`` from ``root`` (usually an ``nn.Module``) and return the object it names."""
    node = root
    walked = ""
    for token in parse_path(path):
        try:
            if token.attr is not None:
                if token.attr.startswith("__"):
                    raise AttributeError(token.attr)  # no dunder access through user text
                node = getattr(node, token.attr)
            else:
                node = node[token.index]
        except (AttributeError, IndexError, TypeError, KeyError) as exc:
            where = walked or "<model>"
            available = _children(node)
            raise LayerPathError(
                f"block path {path!r}: {where} has no {token}"
                f" (available there: {', '.join(available) or 'nothing'})",
                path=path,
                failed_at=str(token),
                available=available,
            ) from exc
        walked = f"{walked}{token}" if token.index is not None or not walked else f"{walked}.{token}"
    return node


def probe_shapes(adapter, batch) -> list[tuple[int, ...]]:
    """Hidden shapes per block output, batch axis included: ``[out of block 0, ..., out of n-1]``.

    ``batch`` is a model input (already through ``adapter.prepare``). The stem output shape is
    ``adapter.stem(batch).shape``; block k's *input* shape is entry k-1 (or the stem shape).
    """
    import torch

    shapes: list[tuple[int, ...]] = []
    with torch.no_grad():
        h = adapter.stem(batch)
        for k in range(adapter.n_blocks):
            h = adapter.run_blocks(h, k, k + 1)
            shapes.append(tuple(h.shape))
    return shapes
