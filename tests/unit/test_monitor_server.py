"""The monitor server over real sockets: static page, WebSocket frames, token, origin, slow clients."""

from __future__ import annotations

import http.client
import json
import time

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bridge_edge.errors import ConfigError
from bridge_edge.monitor.frames import decode_block, encode_block
from bridge_edge.monitor.server import MonitorServer

TOKEN = "unit-test-token"


@pytest.fixture
def server():
    with MonitorServer("127.0.0.1", 0, token=TOKEN) as s:
        yield s


def ws_url(server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


def open_ws(server, token=TOKEN, **kwargs):
    protocols = ["bridge-edge.v1"] + ([f"token.{token}"] if token else [])
    return connect(ws_url(server), subprotocols=protocols, max_size=None, **kwargs)


def get(server, path, host=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path, headers={"Host": host} if host else {})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_serves_the_page_with_a_strict_content_security_policy(server):
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert b"monitor.js" in body
    status, headers, _ = get(server, "/monitor.js")
    assert status == 200 and "javascript" in headers["Content-Type"]


@pytest.mark.parametrize("path", ["/../server.py", "/%2e%2e/server.py", "/static/../server.py", "/nope.js"])
def test_only_files_in_static_are_served(server, path):
    status, _, body = get(server, path)
    assert status == 404 and b"import" not in body


def test_foreign_host_header_is_refused_on_loopback(server):
    status, _, _ = get(server, "/", host="evil.example:8765")
    assert status == 403


def test_binary_blocks_and_json_reach_a_client_with_the_token(server):
    with open_ws(server) as ws:
        assert ws.subprotocol == "bridge-edge.v1"
        time.sleep(0.2)  # let the server register the client
        x = np.arange(73, dtype=np.float32)
        server.send_block(encode_block(1, 0, 5.0, 130.0, x))
        server.send_json({"type": "status", "beds": []}, keep="latest")
        block = decode_block(ws.recv(timeout=5))
        assert block.bed == 1 and np.array_equal(block.samples, x)
        assert json.loads(ws.recv(timeout=5)) == {"type": "status", "beds": []}


def test_new_clients_get_the_latest_state_and_the_prediction_history(server):
    server.send_json({"type": "config", "beds": [1]}, keep="latest")
    server.send_json({"type": "config", "beds": [2]}, keep="latest")
    for i in range(3):
        server.send_json({"type": "prediction", "i": i}, keep="history")
    time.sleep(0.2)
    with open_ws(server) as ws:
        got = [json.loads(ws.recv(timeout=5)) for _ in range(4)]
    assert got[0] == {"type": "config", "beds": [2]}
    assert [m["i"] for m in got[1:]] == [0, 1, 2]


@pytest.mark.parametrize("token", [None, "wrong-token-42"])
def test_missing_or_wrong_token_is_refused(server, token):
    with pytest.raises(InvalidStatus) as err, open_ws(server, token=token):
        pass
    assert err.value.response.status_code == 403


def test_a_page_from_another_origin_is_refused(server):
    with pytest.raises(InvalidStatus) as err, open_ws(server, origin="http://evil.example"):
        pass
    assert err.value.response.status_code == 403


def test_open_bind_without_token_refuses_to_start():
    with pytest.raises(ConfigError):
        MonitorServer("0.0.0.0", 0, token=None)


def test_port_in_use_is_one_clear_error(server):
    with pytest.raises(ConfigError) as err:
        MonitorServer("127.0.0.1", server.port).start()
    assert err.value.key == "port"


def test_a_slow_client_drops_blocks_and_every_block_is_delivered_or_counted():
    with MonitorServer("127.0.0.1", 0, max_queued_blocks=4) as server, open_ws(server, token=None) as ws:
        time.sleep(0.2)
        big = np.zeros(16000, np.float32)  # 64 kB per block, so socket buffers fill up
        sent = 300
        for i in range(sent):
            server.send_block(encode_block(0, 0, float(i), 500.0, big))
        time.sleep(1.0)  # the client is not reading: its queue fills and drops
        received = 0
        while True:
            try:
                ws.recv(timeout=1.0)
            except TimeoutError:
                break
            received += 1
        dropped = server.stats()["dropped_blocks"]
    assert dropped > 0
    assert received + dropped == sent


def test_open_bind_with_token_serves_any_host_name_but_only_with_the_token():
    with MonitorServer("0.0.0.0", 0, token=TOKEN) as server:
        status, _, _ = get(server, "/", host=f"ward3-monitor:{server.port}")
        assert status == 200
        with open_ws(server) as ws:
            assert ws.subprotocol == "bridge-edge.v1"
        with pytest.raises(InvalidStatus), open_ws(server, token=None):
            pass
