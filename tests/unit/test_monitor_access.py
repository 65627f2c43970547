"""Bind, token, origin and Host-header rules of the monitor."""

from __future__ import annotations

import pytest

from bridge_edge.errors import ConfigError
from bridge_edge.monitor import access


def test_loopback_binds_need_no_token():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        access.check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "myhost.local"])
def test_any_other_bind_requires_a_token(host):
    with pytest.raises(ConfigError) as err:
        access.check_bind(host, None)
    assert "--token" in str(err.value) and err.value.key == "host"
    access.check_bind(host, "s3cret-token")


@pytest.mark.parametrize("token", ["short", "has space in it", "semi;colon-token", "x" * 200])
def test_tokens_the_page_cannot_carry_are_refused(token):
    with pytest.raises(ConfigError):
        access.check_bind("0.0.0.0", token)


def test_token_travels_as_a_subprotocol():
    header = "bridge-edge.v1, token.abcDEF123_-"
    assert access.token_from_subprotocols(header) == "abcDEF123_-"
    assert access.token_from_subprotocols("bridge-edge.v1") is None
    assert access.token_from_subprotocols(None) is None


def test_token_comparison():
    assert access.token_ok(None, None)
    assert access.token_ok("abcdefgh", "abcdefgh")
    assert not access.token_ok("abcdefgh", "abcdefgX")
    assert not access.token_ok("abcdefgh", None)


def test_origin_must_be_the_page_itself():
    assert access.origin_ok(None, "127.0.0.1:8765")  # not a browser
    assert access.origin_ok("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not access.origin_ok("http://evil.example", "127.0.0.1:8765")
    assert not access.origin_ok("http://127.0.0.1:9999", "127.0.0.1:8765")


def test_dns_rebinding_host_is_refused_on_loopback():
    assert access.host_header_ok("127.0.0.1:8765", "127.0.0.1")
    assert access.host_header_ok("localhost:8765", "127.0.0.1")
    assert access.host_header_ok("[::1]:8765", "127.0.0.1")
    assert not access.host_header_ok("evil.example:8765", "127.0.0.1")
    assert not access.host_header_ok(None, "127.0.0.1")
    assert access.host_header_ok("monitor.ward3:8765", "0.0.0.0")  # token-protected anyway
