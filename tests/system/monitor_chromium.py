"""Headless Debian Chromium driven over the DevTools protocol (CDP), for the monitor tests.

No selenium or playwright: Chromium is started with ``--remote-debugging-port=0``, the port is
read from ``DevToolsActivePort`` in its profile directory, and CDP commands go over one
WebSocket (``websockets`` sync client) with flattened target sessions.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # keep rAF and timers at full rate in an unfocused headless page
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


class Chromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, width: int = 1600, height: int = 900) -> None:
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="bridge-edge-chromium-"))
        self.process: subprocess.Popen | None = None
        self.ws = None
        self._stack = contextlib.ExitStack()
        self.session: str | None = None
        self._ids = itertools.count(1)

    def __enter__(self):
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # its singleton socket directory goes inside the profile, removed on exit
            env={**os.environ, "TMPDIR": str(self.profile)},
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
        )
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, session: bool = False, **params) -> dict:
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:  # skip events until our answer comes
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"CDP {method}: {reply['error']}")
                return reply["result"]

    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page exception: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float, poll_s: float = 0.25):
        """Poll a JS expression until it is truthy; returns its value (or raises TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None  # page still loading
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} stayed falsy for {timeout_s} s")
            time.sleep(poll_s)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))


WAVE_PIXELS = """(() => Array.from(document.querySelectorAll('canvas.wave')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) lit++;
  return lit; }))()"""


def median_fps(browser: Chromium, seconds: int = 5) -> float:
    """The page's own draw-rate counter, sampled once a second (median, so one hiccup of a
    shared CI machine does not decide)."""
    samples = []
    for _ in range(seconds):
        time.sleep(1.0)
        samples.append(browser.evaluate("monitorState.fps"))
    return float(np.median(samples))
