"""What makes a fit stage rerun: the ``Stage`` record, its reuse key, and the run context.

A stage declares the recipe fields it reads (``"seed"``, a section ``"bridge"``, or one key
``"bridge.sensor_variants"``) and the stages it comes after. Its key hashes the values of what
it reads and the keys of the stages before it, so a stage reruns exactly when something it
reads, or something upstream, changed. While a stage runs it sees the recipe through a
``RecipeView`` that admits only what it and the stages before it declare: reading anything
else is a ``StageReadError``, so a declaration cannot silently fall behind the code.

A disabled stage (``enabled`` false, or skipped by the caller) does not run; its outputs are
removed and its key says "disabled", so stages after it do not depend on its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge_edge.bridge.data import WindowSet
from bridge_edge.bridge.distributed import SINGLE, Dist
from bridge_edge.bridge.memory import PeakMemory
from bridge_edge.bridge.recipe import Recipe, load_recipe
from bridge_edge.bridge.rundir import RunDir
from bridge_edge.errors import StageReadError
from bridge_edge.runtime.native_memory import release_free_memory

log = logging.getLogger(__name__)

Reads = tuple[str, ...]


def _always(recipe: Recipe) -> bool:
    return True


def _no_outputs(run_dir: RunDir) -> tuple[Path, ...]:
    return ()


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Run], None]
    reads: Reads | Callable[[Recipe], Reads]  # recipe fields; a function when they depend on the recipe
    after: tuple[str, ...] = ()
    enabled: Callable[[Recipe], bool] = _always
    disabled_by: str = ""  # the setting that turns it off, as the report says it
    outputs: Callable[[RunDir], tuple[Path, ...]] = _no_outputs  # removed while it is disabled

    def reads_of(self, recipe: Recipe) -> Reads:
        return self.reads(recipe) if callable(self.reads) else self.reads


def read_field(recipe: Any, ref: str) -> Any:
    value = recipe
    for part in ref.split("."):
        value = getattr(value, part)
    return value


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


def _digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=_plain).encode()).hexdigest()


DISABLED_KEY = _digest({"disabled": True})


@dataclass(frozen=True)
class Plan:
    """Per stage: its key, whether it runs, and the recipe fields it may read."""

    keys: dict[str, str]
    active: dict[str, bool]
    allowed: dict[str, frozenset[str]]


def plan(recipe: Recipe, stages: Iterable[Stage], skip: Iterable[str] = ()) -> Plan:
    stages, skip = tuple(stages), set(skip)
    keys: dict[str, str] = {}
    active: dict[str, bool] = {}
    allowed: dict[str, frozenset[str]] = {}
    for s in stages:
        reads = s.reads_of(recipe)
        allowed[s.name] = frozenset(reads).union(*(allowed[a] for a in s.after if active[a]))
        view = RecipeView(recipe, allowed[s.name], s.name)
        active[s.name] = s.name not in skip and bool(s.enabled(view))
        if not active[s.name]:
            keys[s.name] = DISABLED_KEY
            continue
        doc = {"reads": {ref: read_field(recipe, ref) for ref in reads}, "after": [keys[a] for a in s.after]}
        keys[s.name] = _digest(doc)
    return Plan(keys, active, allowed)


class RecipeView:
    """A recipe (or one of its sections) that admits only the fields in ``allowed``."""

    def __init__(self, target: Any, allowed: frozenset[str], stage: str, prefix: str = "") -> None:
        self._target, self._allowed, self._stage, self._prefix = target, allowed, stage, prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        ref = self._prefix + name
        value = getattr(self._target, name)
        if ref in self._allowed:
            return value
        if any(a.startswith(ref + ".") for a in self._allowed):
            return RecipeView(value, self._allowed, self._stage, ref + ".")
        raise StageReadError(
            f"fit stage {self._stage!r} read recipe field {ref!r}, which neither it nor a stage "
            f"before it declares; add it to the stage's reads in bridge_edge/bridge/fit.py",
            stage=self._stage,
            key=ref,
            declared=sorted(self._allowed),
        )


@dataclass
class Run:
    """What a stage works on: the run directory, the recipe (as the stage may read it), the
    device, the frozen models, the stage times, and this process's place in a torchrun job."""

    dir: RunDir
    recipe: Recipe | RecipeView
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)
    dist: Dist = SINGLE
    memory: dict[str, dict] = field(default_factory=dict)  # stage -> bridge.memory.StageMemory
    _models: tuple | None = None

    @classmethod
    def open(cls, run_dir: str | Path, device: str = "cpu") -> Run:
        rd = RunDir(run_dir)
        return cls(rd, load_recipe(rd.recipe), device)

    @property
    def run_dir(self) -> Path:
        return self.dir.root

    def models(self):
        """(old, new) frozen adapters; the new one with the run's pretrained weights once they exist."""
        if self._models is None:
            from bridge_edge.bridge.compose import build_models

            self._models = build_models(
                self.recipe.old_model, self.recipe.new_model, self.run_dir, self.device
            )
        return self._models

    def forget_models(self) -> None:
        """The next ``models()`` rebuilds them (a probe or pretrained weights changed)."""
        self._models = None

    def windows(self, split: str) -> WindowSet:
        return self.dir.windows(split)

    @contextlib.contextmanager
    def stage(self, name: str, allowed: frozenset[str] | None = None):
        """Time stage ``name``; with ``allowed``, the stage sees only those recipe fields."""
        log.info("stage %s ...", name)
        recipe = self.recipe
        if allowed is not None:
            self.recipe = RecipeView(recipe, allowed, name)
        start = time.perf_counter()
        # the heap an earlier stage freed goes back to the OS first, so the stage's peak is what
        # it holds, not glibc's free lists (docs/scale.md)
        release_free_memory()
        try:
            with PeakMemory() as peak:
                yield
        finally:
            self.recipe = recipe
        self.timings[name] = round(time.perf_counter() - start, 2)
        self.memory[name] = peak.result.as_dict()
        log.info("stage %s done in %.1f s", name, self.timings[name])
