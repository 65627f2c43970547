"""``run --record DIR``: raw chunks of every stream to disk with the devices area's writer.

One recording directory per stream (``DIR/stream<i>``, or ``DIR`` itself for a single stream),
in the ``bridge-edge record`` format, so ``replay://DIR`` plays the session back.
"""

from __future__ import annotations

from pathlib import Path

from bridge_edge.devices.base import Chunk, Source


class PipelineRecorder:
    def __init__(self, record_dir: str | Path, sources: list[Source]) -> None:
        from bridge_edge.devices.recording import RecordingWriter

        root = Path(record_dir)
        self._sources = sources
        self._writers = [
            RecordingWriter(root if len(sources) == 1 else root / f"stream{i}", s.info)
            for i, s in enumerate(sources)
        ]

    def write(self, stream_index: int, chunk: Chunk) -> None:
        self._writers[stream_index].write(chunk, self._sources[stream_index].stats)

    def close(self) -> None:
        for writer, source in zip(self._writers, self._sources):
            writer.close(source.stats)
