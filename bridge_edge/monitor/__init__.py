"""Bedside web monitor: a live page for the streaming pipeline (docs/monitor.md).

- ``frames.py``   binary waveform frame format (pure)
- ``access.py``   bind / token / origin / Host rules (pure)
- ``alarms.py``   IEC 60601-1-8 style alarm rules and HR validity (pure)
- ``feed.py``     pipeline listener: chunks -> display-filtered frames, predictions -> status
- ``server.py``   websockets server in a background thread: static page + one WebSocket
- ``app.py``      wiring for `bridge-edge monitor` and `demo`
- ``static/``     the page: index.html, monitor.js (Canvas2D sweep traces), monitor.css
"""
