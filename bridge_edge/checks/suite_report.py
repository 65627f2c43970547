"""The rhythm suite's results: per case what was scored and called, pooled shares per
(group, rhythm, variant), and the goals of docs/method.md ("Real PPG") checked against them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

VARIANTS = {"as_recorded": 1.0, "inverted": -1.0, "x0.8": 0.8, "x1.25": 1.25}

# Goals (docs/method.md): AF recall, and the largest share of non-AF windows called AF.
GOALS = {
    "fixed_shape_af_recall": 0.90,
    "resequenced_af_recall": 0.90,
    "resequenced_sinus_false_af": 0.05,
    "resequenced_ectopic_false_af": 0.10,
    "variant_tolerance": 0.05,
    "dev_pooled_false_af": 0.03,
    "dev_each_false_af": 0.05,
}


@dataclass(frozen=True)
class CaseResult:
    group: str
    rhythm: str
    variant: str
    source: str
    windows: int
    gated: int
    called_positive: int
    rr_af_called: int | None = None  # the pulse-timing baseline on the same windows, where available
    # AF alarms a bedside monitor raises over the case's scored hops played in order (runtime
    # smoothing and alarm onset; monitor.alarms.rhythm_alarm_onsets): development recordings only
    af_alarms: int | None = None
    # the model's own AF calls before the runtime's regular-rhythm rule (signals.regular_rhythm);
    # None where the rule was not run. ``called_positive`` is what the runtime shows.
    model_called: int | None = None

    @property
    def scored(self) -> int:
        return self.windows - self.gated

    @property
    def positive_share(self) -> float | None:
        return self.called_positive / self.scored if self.scored else None


@dataclass
class SuiteReport:
    bundle: str
    engine: str
    precision: str
    cases: list[CaseResult]

    def share(
        self, group: str, rhythm: str, variant: str = "as_recorded", model: str = "bundle"
    ) -> float | None:
        """Pooled share of scored windows called AF over every case of (group, rhythm, variant)."""
        rows = [c for c in self.cases if (c.group, c.rhythm, c.variant) == (group, rhythm, variant)]
        rows = [c for c in rows if _calls(c, model) is not None]
        scored = sum(c.scored for c in rows)
        called = sum(_calls(c, model) for c in rows)
        return called / scored if scored else None

    def summary(self) -> dict:
        out: dict = {}
        for group, rhythms in (
            ("fixed_shape", ("afib", "sinus")),
            ("resequenced", ("afib", "sinus", "ectopic")),
        ):
            for rhythm in rhythms:
                for variant in VARIANTS:
                    key = f"{group}/{rhythm}/{variant}"
                    out[key] = {m: _round(self.share(group, rhythm, variant, m)) for m in MODELS}
        for group, rhythm in (("dev_recordings", "sinus"), ("probe", "sinus")):
            for c in self.cases:
                if (c.group, c.rhythm) == (group, rhythm):
                    out[f"{group}/{c.variant}/{c.source}"] = {
                        "bundle": _round(c.positive_share),
                        "model_alone": _round(_share(c, "model_alone")),
                        "scored": c.scored,
                        "windows": c.windows,
                    }
        out["dev_recordings/pooled"] = {
            m: _round(self.share("dev_recordings", "sinus", "as_recorded", m))
            for m in ("bundle", "model_alone")
        }
        alarms = [c.af_alarms for c in self.cases if c.group == "dev_recordings" and c.af_alarms is not None]
        out["dev_recordings/af_alarms"] = {
            "bundle": sum(alarms) if alarms else None,
            "recordings": len(alarms),
        }
        return out

    def targets(self, model: str = "bundle") -> dict:
        """Each goal: the measured value and whether it is met (None: not measurable here), for
        what the runtime shows (``bundle``) or the model before the regular-rhythm rule."""

        def worst_variant(
            group: str, rhythm: str, higher_is_better: bool
        ) -> tuple[float | None, float | None]:
            base = self.share(group, rhythm, model=model)
            others = [self.share(group, rhythm, v, model) for v in VARIANTS if v != "as_recorded"]
            others = [o for o in others if o is not None]
            if base is None or not others:
                return base, None
            return base, max(abs(o - base) for o in others)

        rows = {}
        for key, group, rhythm, goal, higher in (
            ("fixed_shape_af_recall", "fixed_shape", "afib", GOALS["fixed_shape_af_recall"], True),
            ("resequenced_af_recall", "resequenced", "afib", GOALS["resequenced_af_recall"], True),
            (
                "resequenced_sinus_false_af",
                "resequenced",
                "sinus",
                GOALS["resequenced_sinus_false_af"],
                False,
            ),
            (
                "resequenced_ectopic_false_af",
                "resequenced",
                "ectopic",
                GOALS["resequenced_ectopic_false_af"],
                False,
            ),
        ):
            value, spread = worst_variant(group, rhythm, higher)
            met = None if value is None else (value >= goal if higher else value <= goal)
            rows[key] = {"value": _round(value), "goal": goal, "met": met}
            rows[key + "_variant_spread"] = {
                "value": _round(spread),
                "goal": GOALS["variant_tolerance"],
                "met": None if spread is None else spread <= GOALS["variant_tolerance"],
            }
        pooled = self.share("dev_recordings", "sinus", model=model)
        rows["dev_pooled_false_af"] = {
            "value": _round(pooled),
            "goal": GOALS["dev_pooled_false_af"],
            "met": None if pooled is None else pooled <= GOALS["dev_pooled_false_af"],
        }
        each = [_share(c, model) for c in self.cases if c.group == "dev_recordings"]
        each = [e for e in each if e is not None]
        rows["dev_each_false_af"] = {
            "value": _round(max(each) if each else None),
            "goal": GOALS["dev_each_false_af"],
            "met": None if not each else max(each) <= GOALS["dev_each_false_af"],
        }
        return rows

    def as_dict(self) -> dict:
        return {
            "suite": "rhythm",
            "bundle": self.bundle,
            "engine": self.engine,
            "precision": self.precision,
            "summary": self.summary(),
            "targets": self.targets(),
            "targets_model_alone": self.targets("model_alone")
            if any(c.model_called is not None for c in self.cases)
            else None,
            "cases": [asdict(c) | {"positive_share": _round(c.positive_share)} for c in self.cases],
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


MODELS = ("bundle", "model_alone", "rr_timing")  # what the runtime shows; the model; pulse timing


def _calls(c: CaseResult, model: str) -> int | None:
    return {"bundle": c.called_positive, "model_alone": c.model_called, "rr_timing": c.rr_af_called}[model]


def _share(c: CaseResult, model: str) -> float | None:
    called = _calls(c, model)
    return called / c.scored if called is not None and c.scored else None
