"""Who may see the monitor: bind address, token and origin rules (pure functions).

- The server binds 127.0.0.1 by default. Any other address shows patient data to the network,
  so it needs a token; starting without one is refused (``check_bind``).
- The page passes the token from its own URL (``?token=…``) as a WebSocket subprotocol
  ``token.<T>`` next to ``bridge-edge.v1``; a missing or wrong token is answered 403 and the
  connection never opens. Static files (the page's code) carry no data and need no token.
- A browser connection must come from the monitor's own page (Origin host = Host header), so a
  web page elsewhere cannot read a local monitor (cross-site WebSocket hijacking). Clients that
  send no Origin (scripts, tests) are judged by the token alone.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from urllib.parse import urlsplit

from bridge_edge.errors import ConfigError

PROTOCOL = "bridge-edge.v1"
TOKEN_PREFIX = "token."
# Subprotocol values must be HTTP tokens; this subset is also URL-safe.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,128}")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token, and tokens the page cannot carry."""
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise ConfigError(
            "--token must be 8-128 characters from A-Z a-z 0-9 _ - "
            "(it travels in the page URL and the WebSocket subprotocol)",
            key="token",
            value="<hidden>",
            expected=TOKEN_PATTERN.pattern,
        )
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"binding the monitor to {host} exposes it beyond this machine; pass --token T "
            "(open the page as http://HOST:PORT/?token=T) or bind 127.0.0.1",
            key="host",
            value=host,
            expected="127.0.0.1, or any address together with --token",
        )


def token_from_subprotocols(header: str | None) -> str | None:
    """The token offered in a ``Sec-WebSocket-Protocol`` header, if any."""
    for item in (header or "").split(","):
        item = item.strip()
        if item.startswith(TOKEN_PREFIX):
            return item[len(TOKEN_PREFIX) :]
    return None


def token_ok(expected: str | None, offered: str | None) -> bool:
    """Constant-time comparison; no token configured means none is needed."""
    if expected is None:
        return True
    return offered is not None and hmac.compare_digest(expected.encode(), offered.encode())


def origin_ok(origin: str | None, host_header: str | None) -> bool:
    """A browser's Origin must name the same host:port the page was loaded from."""
    if origin is None:
        return True
    if host_header is None:
        return False
    return urlsplit(origin).netloc.lower() == host_header.lower()


def host_header_ok(host_header: str | None, bind_host: str) -> bool:
    """On a loopback bind, only loopback Host names are answered (DNS-rebinding guard)."""
    if not is_loopback(bind_host):
        return True
    if not host_header:
        return False
    hostname = urlsplit(f"//{host_header}").hostname or ""
    return is_loopback(hostname)
