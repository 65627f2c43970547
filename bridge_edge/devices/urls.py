"""Parsing source URLs against a handler's grammar; every failure restates that grammar."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from bridge_edge.errors import SourceURLError

T = TypeVar("T")


@dataclass(frozen=True)
class SourceURL:
    """A split source URL: ``scheme://target?key=value&...`` with typed, grammar-checked options."""

    url: str
    scheme: str
    target: str  # host + path, unquoted (a device path, address, file path or signal name)
    query: dict[str, str]
    grammar: str

    @classmethod
    def parse(cls, url: str, scheme: str, grammar: str, allowed: tuple[str, ...]) -> SourceURL:
        parts = urlsplit(url)
        if parts.scheme != scheme:
            raise SourceURLError(
                f"{url!r} is not a {scheme}:// URL; expected {grammar}", url=url, grammar=grammar
            )
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError as err:
            raise SourceURLError(
                f"bad query in {url!r} ({err}); expected {grammar}", url=url, grammar=grammar
            ) from err
        query: dict[str, str] = {}
        for key, value in pairs:
            if key not in allowed:
                raise SourceURLError(
                    f"unknown option {key!r} in {url!r}; expected {grammar} (options: {', '.join(allowed)})",
                    url=url,
                    grammar=grammar,
                    key=key,
                )
            query[key] = value
        return cls(url, scheme, unquote(parts.netloc + parts.path), query, grammar)

    def fail(self, what: str, **fields) -> SourceURLError:
        return SourceURLError(
            f"{what} in {self.url!r}; expected {self.grammar}", url=self.url, grammar=self.grammar, **fields
        )

    def get(self, key: str, convert: Callable[[str], T], default: T) -> T:
        if key not in self.query:
            return default
        raw = self.query[key]
        try:
            return convert(raw)
        except (TypeError, ValueError) as err:
            raise self.fail(
                f"option {key}={raw!r} is not a valid {getattr(convert, '__name__', 'value')}",
                key=key,
                value=raw,
            ) from err

    def choice(self, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = self.query.get(key, default)
        if value is not None and value not in choices:
            raise self.fail(f"option {key}={value!r} is not one of {'|'.join(choices)}", key=key, value=value)
        return value

    def positive(self, key: str, default: float | None) -> float | None:
        """A finite number > 0 (``fs=inf``, ``nan``, ``0`` and ``-1`` are refused)."""
        value = self.get(key, float, default)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise self.fail(f"option {key}={value!r} must be > 0 (a finite number)", key=key, value=value)
        return value

    def speed(self, default: float = 1.0) -> float:
        """Pacing factor: a finite number >= 0 (0 = as fast as possible)."""
        value = self.get("speed", float, default)
        if not (math.isfinite(value) and value >= 0):
            raise self.fail(
                f"option speed={value!r} must be >= 0 (a finite number)", key="speed", value=value
            )
        return value


def flag(value: str) -> bool:
    """URL booleans: 1/0, true/false, yes/no."""
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)
