"""Wiring for `bridge-edge monitor` and `demo`: sources -> pipeline -> feed -> server -> page."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass
from urllib.parse import quote

from bridge_edge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorOptions:
    sources: list[str]
    bundle: str = "default"
    engine: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    open_browser: bool = False
    seconds: float | None = None  # run this long, then stop (None = until Ctrl-C)
    playout_delay_s: float = 1.5
    alarm_onset_s: float = 30.0  # AlarmRules.onset_s

    def __post_init__(self) -> None:
        if not 0.0 <= self.alarm_onset_s < float("inf"):
            raise ConfigError(
                f"--alarm-onset must be a number of seconds >= 0, got {self.alarm_onset_s}",
                key="alarm_onset",
                value=self.alarm_onset_s,
                expected=">= 0 seconds",
            )


def demo_sources(beds: int, script: str, motion: float, seed: int = 1) -> list[str]:
    """One simulated patient (ECG + PPG, rhythm script) per bed, each with its own physiology."""
    if beds < 1:
        raise ConfigError(f"--beds must be at least 1, got {beds}", key="beds", value=beds, expected=">= 1")
    return [
        f"sim://ecg+ppg?seed={seed + i}&script={quote(script, safe=':,')}&motion={motion:g}"
        for i in range(beds)
    ]


def run_monitor(options: MonitorOptions) -> int:
    """Run until Ctrl-C (or ``options.seconds``); always stops the pipeline and sources."""
    from bridge_edge.devices.base import open_source
    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.monitor.alarms import AlarmRules
    from bridge_edge.monitor.feed import MonitorFeed
    from bridge_edge.monitor.server import MonitorServer
    from bridge_edge.runtime.pipeline import Pipeline

    server = MonitorServer(options.host, options.port, options.token)  # refuses an open bind first
    bundle = load_bundle(options.bundle)
    sources = [open_source(url) for url in options.sources]
    pipeline = Pipeline(sources, bundle, engine=options.engine)
    feed = MonitorFeed(
        server,
        streams=[s.info for s in sources],
        provenance=bundle_provenance(bundle.manifest),
        stats=pipeline.stats,
        # an HR is refreshed once per hop; two hops without one and it is blanked
        rules=AlarmRules(
            hr_timeout_s=max(6.0, 2.0 * bundle.manifest.input.hop_s), onset_s=options.alarm_onset_s
        ),
        playout_delay_s=options.playout_delay_s,
    )
    pipeline.add_listener(feed)
    stop = threading.Event()
    previous_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start()
        feed.start()
        pipeline.start()
        print(f"bridge-edge monitor: {server.url}  (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if options.open_browser:
            open_browser(server.url)
        deadline = None if options.seconds is None else time.monotonic() + options.seconds
        while not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        pipeline.stop()
        feed.stop()
        server.stop()
        log.info("monitor stopped")
    if pipeline.errors:
        raise pipeline.errors[0]
    return 0


def open_browser(url: str) -> None:
    """Open the page in the desktop's browser, in a thread: a console browser that
    ``webbrowser`` may pick on a machine without a display would otherwise block the monitor."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        log.info("no display: open %s in a browser", url)
        return
    threading.Thread(target=webbrowser.open, args=(url,), name="open-browser", daemon=True).start()


def bundle_provenance(manifest) -> dict:
    models = manifest.models
    return {
        "bundle_name": manifest.name,
        "bundle_version": manifest.version,
        "bridge": f"{models.new} -> {models.old}, blocks {models.k_in} -> {models.k_out}",
        "modality": manifest.input.modality,
        "input": f"{manifest.input.modality} {manifest.input.fs:g} Hz, {manifest.input.window_s:g} s windows",
        "labels": list(manifest.output.labels),
    }
