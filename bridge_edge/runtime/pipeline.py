"""The streaming pipeline: sources -> rings -> streaming DSP -> windows -> SQI gate -> engine.

Threads: one ingest thread per source (stamps samples with the fitted clock, pushes them into
the stream's ring, tells listeners about the raw chunk) and one inference thread (reads every
ring, runs the streaming preprocessing, cuts windows, gates them, batches all streams' windows
into engine calls, smooths, emits ``Prediction``s). Windows that become ready within
``batch_wait_s`` of each other across streams are gathered together (``runtime/batching.py``) and
run in calls of the engine batch (``runtime/engine_batch.py``: on a CPU, the call size measured
cheapest per window at start). Listeners are plain objects with any of
``on_chunk(stream_index, info, chunk)``, ``on_prediction(pred)``, ``on_event(stream_index, event)``;
they run on the pipeline's threads, so they must return quickly.

Nothing is lost silently: gaps reported by the source, samples a slow reader lost to ring
overwrites, non-finite samples dropped at ingest, windows skipped for a gap or gated for low SQI
or non-finite input are all counted in ``stats()`` and carried on the predictions they touch.
A NaN or inf never reaches the filter or the model (docs/runtime.md, "Non-finite samples").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from bridge_edge.devices.base import Source
from bridge_edge.errors import BridgeEdgeError, ConfigError
from bridge_edge.runtime.batching import MAX_GATHERED, BatchCollector
from bridge_edge.runtime.engine_batch import choose_engine_batch
from bridge_edge.runtime.engines import EngineChoice, select_engine
from bridge_edge.runtime.native_memory import release_free_memory
from bridge_edge.runtime.outputs import LatencyMs, Prediction, ProbabilitySmoother, StreamRef
from bridge_edge.runtime.stats import PipelineStats, StageTimer
from bridge_edge.runtime.stream import ModelInput, StreamState, WindowJob
from bridge_edge.runtime.window_reading import WindowReading, read_windows, rule_out_regular
from bridge_edge.signals.preprocess import normalise_windows
from bridge_edge.signals.quality import LOW_SQI
from bridge_edge.signals.regular_rhythm import RegularRhythmRule

log = logging.getLogger(__name__)

GAP_POLICIES = ("flag", "skip")
SQI_POLICIES = ("skip", "flag", "off")
STALE_AFTER_S = 2.0


@dataclass(frozen=True)
class PipelineConfig:
    gap_policy: str = "flag"  # windows overlapping a gap: "flag" (infer, gap=True) or "skip"
    sqi_policy: str = "skip"  # windows with SQI < sqi_threshold: "skip" the model, "flag", or "off"
    sqi_threshold: float = LOW_SQI
    smoothing_alpha: float = 0.5  # EMA weight of the newest hop
    ring_seconds: float = 60.0
    lossless: bool = False  # replays only: ingest waits for the reader instead of overwriting
    threads: int | None = None  # ORT intra-op threads (None = cores - 1)
    spinning: bool = False
    batch_wait_s: float = 0.05  # hold a ready window up to this long so other streams' windows join its call
    trim_every_s: float = 60.0  # free heap back to the OS this often, 0: never (native_memory.py)
    regular_rhythm_rule: bool = True  # AF ruled out where the beats are regular (signals.regular_rhythm)
    engine_batch: int | None = None  # most windows per engine call; None: measured on a CPU at start


class Pipeline:
    def __init__(
        self,
        sources: list[Source],
        bundle,
        engine: str = "auto",
        precision: str = "auto",
        record_dir=None,
        gap_policy: str = "flag",
        config: PipelineConfig | None = None,
        engine_choice: EngineChoice | None = None,
    ) -> None:
        cfg = config or PipelineConfig(gap_policy=gap_policy)
        if cfg.gap_policy not in GAP_POLICIES or cfg.sqi_policy not in SQI_POLICIES:
            raise ConfigError(
                f"gap_policy {cfg.gap_policy!r} / sqi_policy {cfg.sqi_policy!r}; expected one of "
                f"{GAP_POLICIES} / {SQI_POLICIES}",
                key="policy",
                value=(cfg.gap_policy, cfg.sqi_policy),
                expected=(GAP_POLICIES, SQI_POLICIES),
            )
        if not sources:
            raise ConfigError("the pipeline needs at least one source", key="sources", value=0)
        self.config = cfg
        self.bundle = bundle
        self.model = ModelInput.from_manifest(bundle.manifest)
        self.choice = engine_choice or select_engine(
            engine, bundle, precision, threads=cfg.threads, spinning=cfg.spinning
        )
        self.engine = self.choice.engine
        bundle_key = (self.model.bundle_name, self.model.bundle_version)
        self.engine_batch = choose_engine_batch(
            self.engine, self.model.window_len, cfg.engine_batch, bundle_key
        )
        self.streams = [StreamState.open(i, s, self.model, cfg.ring_seconds) for i, s in enumerate(sources)]
        self._listeners: list[object] = []
        self._smoother = ProbabilitySmoother(self.model.labels, cfg.smoothing_alpha)
        on = cfg.regular_rhythm_rule
        self._rule = RegularRhythmRule.for_model(self.model.labels, self.model.modality) if on else None
        self._timer = StageTimer()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inference_done = threading.Event()
        self._unix_minus_mono = time.time() - time.monotonic_ns() / 1e9  # fixed, taken once
        self._recorder = _open_recorder(record_dir, sources)
        self._collector = BatchCollector.from_seconds(cfg.batch_wait_s, MAX_GATHERED)
        self.hops = 0
        self.infer_calls = 0  # engine calls (each one batch)
        self.inferred_windows = 0  # windows the engine saw, over all calls
        self.memory_trims = 0  # times free heap went back to the OS
        self._next_trim_s = time.monotonic() + cfg.trim_every_s
        self.windows_skipped = {"warmup": 0, "gap": 0, "low_sqi": 0, "nonfinite": 0}
        self.low_sqi_causes: dict[str, int] = {}  # the "low_sqi" windows by Prediction.sqi_cause
        self.errors: list[BaseException] = []

    # --- listeners ---------------------------------------------------------------------------

    def add_listener(self, listener: object) -> None:
        self._listeners.append(listener)

    def _notify(self, hook: str, *args) -> None:
        for listener in self._listeners:
            fn = getattr(listener, hook, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:  # a broken display must not stop the pipeline
                log.exception("listener %r failed in %s", listener, hook)

    def _event(self, stream_index: int, event: dict) -> None:
        self.streams[stream_index].events += 1
        log.info("stream %d event: %s", stream_index, event)
        self._notify("on_event", stream_index, event)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for st in self.streams:
            t = threading.Thread(target=self._ingest, args=(st,), name=f"ingest-{st.index}", daemon=True)
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._inference_loop, name="inference", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop ingest and inference; sources are closed (a BLE sensor is told to stop)."""
        self._stop.set()
        for st in self.streams:
            try:
                st.source.close()
            except Exception:
                log.exception("closing source %s failed", st.info.name)
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5.0)
        if self._recorder is not None:
            self._recorder.close()
        self.engine.close()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every source ended and was processed (True) or ``timeout_s`` passed.

        Waits in short steps so Ctrl-C reaches the calling thread promptly."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._inference_done.is_set():
            step = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if step <= 0:
                return False
            self._inference_done.wait(step)
        return True

    def run_until_done(self, timeout_s: float | None = None) -> PipelineStats:
        """Start (if needed), run until every source ends (or ``timeout_s``), stop, return stats."""
        if not self._threads:
            self.start()
        try:
            self.wait(timeout_s)
        finally:
            self.stop()
        if self.errors:
            raise self.errors[0]
        return self.stats()

    # --- ingest (one thread per source) ------------------------------------------------------

    def _ingest(self, st: StreamState) -> None:
        try:
            for chunk in st.source:
                if self._stop.is_set():
                    break
                if self.config.lossless:
                    self._wait_for_room(st, len(chunk.samples))
                for event in st.ingest(chunk):
                    self._event(st.index, event)
                for event in st.new_source_events():
                    self._event(st.index, event)
                if self._recorder is not None:
                    self._recorder.write(st.index, chunk)
                self._notify("on_chunk", st.index, st.info, chunk)
                if st.ready():  # wake inference only when a window can be completed
                    with self._wake:
                        self._wake.notify_all()
        except Exception as err:
            if isinstance(err, BridgeEdgeError):  # a typed error is its own one-line report
                log.debug("source %s failed", st.info.name, exc_info=True)
            else:
                log.exception("source %s failed", st.info.name)
            self.errors.append(err)
            self._event(st.index, {"kind": "source_error", "error": str(err)})
        finally:
            for event in st.finish():
                self._event(st.index, event)
            st.ended = True
            self._event(st.index, {"kind": "end", "samples": st.pushed})
            with self._wake:
                self._wake.notify_all()

    def _wait_for_room(self, st: StreamState, n: int) -> None:
        with self._wake:
            while st.ring.lag(st.cursor) + n > st.ring.capacity and not self._stop.is_set():
                self._wake.wait(0.05)

    # --- inference (one thread) ----------------------------------------------------------------

    def _inference_loop(self) -> None:
        collector = self._collector
        try:
            while not self._stop.is_set():
                # read before the pass: a source that ended after it may still have pushed rows
                all_ended = all(st.ended for st in self.streams)
                for st in self.streams:
                    collector.add(st.advance(self._timer))
                    self._check_stale(st)
                now = time.monotonic_ns()
                if collector.pending and (all_ended or collector.due(now, self._due_elsewhere(collector))):
                    self._flush(collector)
                    continue
                if all_ended and not collector.pending:
                    break  # every source ended and its last rows were read: nothing more to cut
                with self._wake:
                    # ready() means a window can be completed, so the next pass has work; the
                    # short wait is a guard against spinning should it ever not (a finite source
                    # used to spin at 100 % CPU after its end). Held windows wait at most until
                    # their deadline; an ingest thread completing a window wakes this earlier.
                    wait_s = 0.002 if any(st.ready() for st in self.streams) else 0.05
                    deadline = collector.deadline_ns()
                    if deadline is not None:
                        wait_s = min(wait_s, max(deadline - now, 0) / 1e9)
                    self._wake.wait(wait_s)
            self._flush(collector)  # stopped while holding windows: they are still emitted
        except Exception as err:
            log.exception("inference loop failed")
            self.errors.append(err)
        finally:
            self._inference_done.set()

    def _flush(self, collector: BatchCollector) -> None:
        jobs = collector.take()
        for call in self.engine_batch.calls(len(jobs)):
            self._run_jobs(jobs[call])
        if jobs:
            with self._wake:
                self._wake.notify_all()  # a lossless producer may be waiting for room
        if self.config.trim_every_s and time.monotonic() >= self._next_trim_s:
            self._next_trim_s = time.monotonic() + self.config.trim_every_s
            self.memory_trims += release_free_memory()

    def _due_elsewhere(self, collector: BatchCollector) -> list[float]:
        """When each live stream with no window held is expected to complete its next one."""
        held = collector.streams()
        due = (st.next_window_due_ns() for st in self.streams if st.index not in held)
        return [t for t in due if t is not None]

    def _check_stale(self, st: StreamState) -> None:
        if st.ended or st.last_arrival_ns is None:
            return
        quiet_s = (time.monotonic_ns() - st.last_arrival_ns) / 1e9
        if quiet_s > STALE_AFTER_S and not st.stale:
            st.stale = True
            self._event(st.index, {"kind": "stale", "quiet_s": round(quiet_s, 3)})

    def _run_jobs(self, jobs: list[WindowJob]) -> None:
        t0 = time.perf_counter_ns()
        read = read_windows(np.stack([j.window.values for j in jobs]), self.model)
        gated = [self._gate(j, float(q)) for j, q in zip(jobs, read.sqi)]
        run = [i for i, g in enumerate(gated) if g is None]
        batch = normalise_windows(read.windows[run], self.model.preprocess, [read.beats[i] for i in run])
        bad = ~np.isfinite(batch).all(axis=1)
        if bad.any():  # cannot happen after ingest's check; kept so no NaN ever reaches a model
            for i in np.asarray(run)[bad]:
                gated[i] = "nonfinite"
            batch = batch[~bad]
            run = [i for i, g in enumerate(gated) if g is None]
        t1, call_ns = time.perf_counter_ns(), time.monotonic_ns()
        probs = self.engine.infer(batch) if run else np.empty((0, len(self.model.labels)), np.float32)
        t2 = time.perf_counter_ns()
        self._timer.add("infer", (t2 - t1) / 1e6, n=1 if run else 0)
        if run:
            self.infer_calls += 1
            self.inferred_windows += len(run)
            for i in run:  # queue wait: the window's last sample arrived -> its engine call started
                self._timer.add("wait", (call_ns - jobs[i].arrival_ns) / 1e6)
        probs_of = dict(zip(run, rule_out_regular(read, self._rule, run, probs, self.model)))
        for i, job in enumerate(jobs):
            self._emit(job, probs_of.get(i), read.at(i), gated[i], (t1 - t0) / 1e6, (t2 - t1) / 1e6)

    def _gate(self, job: WindowJob, sqi: float) -> str | None:
        """Why the model does not see this window, or None. A window touching non-finite input
        is always gated; a non-finite SQI (a flat or degenerate window) counts as low."""
        if job.window.nonfinite:
            return "nonfinite"
        if job.warmup:
            return "warmup"
        if job.window.gap and self.config.gap_policy == "skip":
            return "gap"
        if not sqi >= self.config.sqi_threshold and self.config.sqi_policy == "skip":
            return "low_sqi"
        return None

    def _emit(
        self,
        job: WindowJob,
        p,
        reading: WindowReading,
        gated: str | None,
        batch_pre_ms: float,
        infer_ms: float,
    ) -> None:
        """One hop's prediction from the window's readings and the engine's probabilities ``p``."""
        sqi, hr, rr_af, af_ruled_out = reading.sqi, reading.hr_bpm, reading.rr_af, reading.af_ruled_out
        st = self.streams[job.stream_index]
        labels = self.model.labels
        if gated == "nonfinite":  # no label carried across poisoned input: smoothing restarts after it
            self._smoother.reset(st.index)
        smoothed = self._smoother.update(st.index, p)
        cause = reading.sqi_cause if gated == "low_sqi" else None  # what the prediction reports
        if gated is not None:
            self.windows_skipped[gated] += 1
            if cause is not None:
                self.low_sqi_causes[cause] = self.low_sqi_causes.get(cause, 0) + 1
                self._event(
                    st.index,
                    {
                        "kind": "low_sqi",
                        "sqi": round(sqi, 3) if np.isfinite(sqi) else None,
                        "cause": cause,
                        "window": job.window.index,
                    },
                )
        now = time.monotonic_ns()
        pre_ms = job.dsp_ms + batch_pre_ms
        total_ms = (now - job.arrival_ns) / 1e6
        self._timer.add("preprocess", pre_ms)
        self._timer.add("total", total_ms)
        st.hop_lag_ms.append(total_ms)  # backlog included: queue wait + inference + emit
        self.hops += 1
        pred = Prediction(
            stream=StreamRef(st.index, st.info.name),
            window_index=job.window.index,
            t_start=self._unix(job.t_end_ns) - (self.model.window_len - 1) / self.model.fs,
            t_end=self._unix(job.t_end_ns),
            label=labels[int(np.argmax(p))] if p is not None else None,
            probs={lab: float(v) for lab, v in zip(labels, p)} if p is not None else None,
            smoothed_label=labels[int(np.argmax(smoothed))] if smoothed is not None else None,
            smoothed_probs={lab: float(v) for lab, v in zip(labels, smoothed)}
            if smoothed is not None
            else None,
            sqi=sqi,
            hr_bpm=hr,
            latency_ms=LatencyMs(preprocess=pre_ms, infer=infer_ms if p is not None else 0.0, total=total_ms),
            dropped_samples=job.window.missing_samples,
            gap=job.window.gap,
            gated=gated,
            engine=self.engine.name,
            precision=self.engine.precision,
            bundle_name=self.model.bundle_name,
            bundle_version=self.model.bundle_version,
            rr_af_score=float(rr_af) if np.isfinite(rr_af) else None,
            af_ruled_out=af_ruled_out,
            sqi_cause=cause,
        )
        self._notify("on_prediction", pred)

    def _unix(self, mono_ns: float) -> float:
        return mono_ns / 1e9 + self._unix_minus_mono

    # --- stats -------------------------------------------------------------------------------

    def stats(self) -> PipelineStats:
        return PipelineStats.collect(self)


def _open_recorder(record_dir, sources):
    """The devices area's recorder, when ``record_dir`` is given (raw chunks to WFDB + events)."""
    if record_dir is None:
        return None
    from bridge_edge.runtime.recording import PipelineRecorder

    return PipelineRecorder(record_dir, sources)
