"""Cross-stream batching: windows that become ready close together share one engine call.

Independent streams start at different times, so their hops complete at different instants and
an inference thread that runs whatever is ready gets one window per call. The collector holds
the windows of one pass for at most ``wait_s`` after the first of them became ready (its last
sample's arrival), so the windows other streams complete meanwhile join the same call: N
streams cost about N / B calls instead of N (docs/runtime.md, "Cross-stream batching").

It waits only when waiting can pay: as soon as no other live stream is expected to complete a
window before the deadline (each stream's next window is due when its missing input samples
have arrived at the stream's sample rate), the held windows run at once, so a single stream
or streams far apart in phase pay no extra latency. A backlog (windows whose last sample
arrived more than ``wait_s`` ago) is never held. Jobs keep their order, so each stream's
windows reach the engine and the listeners in stream order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge_edge.errors import ConfigError
from bridge_edge.runtime.stream import WindowJob

MAX_GATHERED = 64  # most windows one flush carries; runtime/engine_batch.py splits it into engine calls


@dataclass
class BatchCollector:
    wait_ns: int  # longest a ready window is held for others to join its call; 0 = never
    max_batch: int = MAX_GATHERED
    _jobs: list[WindowJob] = field(default_factory=list)
    _first_ns: int | None = None  # arrival of the earliest held window's last sample

    @classmethod
    def from_seconds(cls, wait_s: float, max_batch: int = MAX_GATHERED) -> BatchCollector:
        if not wait_s >= 0 or max_batch < 1:
            raise ConfigError(
                f"batch wait {wait_s!r} s / max batch {max_batch!r}; expected a wait >= 0 s and a batch >= 1",
                key="batch_wait_s",
                value=(wait_s, max_batch),
                expected=">= 0 s, >= 1",
            )
        return cls(int(round(wait_s * 1e9)), max_batch)

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def streams(self) -> set[int]:
        return {j.stream_index for j in self._jobs}

    def add(self, jobs: list[WindowJob]) -> None:
        if not jobs:
            return
        first = min(j.arrival_ns for j in jobs)
        self._first_ns = first if self._first_ns is None else min(self._first_ns, first)
        self._jobs.extend(jobs)

    def deadline_ns(self) -> int | None:
        """When the held windows must run (None: nothing held)."""
        return None if self._first_ns is None else self._first_ns + self.wait_ns

    def due(self, now_ns: int, expected_ns: list[float]) -> bool:
        """Whether the held windows should run now.

        ``expected_ns``: for each live stream with no window held, when its next window is
        expected to complete (host-monotonic ns)."""
        deadline = self.deadline_ns()
        if deadline is None:
            return False
        if self.wait_ns <= 0 or len(self._jobs) >= self.max_batch or now_ns >= deadline:
            return True
        return not any(t <= deadline for t in expected_ns)

    def take(self) -> list[WindowJob]:
        jobs, self._jobs, self._first_ns = self._jobs, [], None
        return jobs
