"""One way in for every paired ECG+PPG dataset: ``load_dataset(spec) -> PairedDataset``.

Spec grammar: ``[kind:]PATH[?fs=HZ&seed=N]`` with kind one of ``sim``, ``wesad``, ``csv``,
``wfdb``. Without a kind the format is recognised from PATH:

- a directory with ``dataset.json``            -> ``bridge-edge simulate`` output (sim)
- a directory with ``S<k>/S<k>.pkl``            -> WESAD (wesad)
- a ``.csv`` file or a directory of them        -> paired CSV (csv; ``fs`` needed without a time_s column)
- a ``.hea`` record or a directory with ``.hea``-> WFDB (wfdb)

``seed`` picks the subject-disjoint splits of formats that do not store their own (all but sim).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from bridge_edge.errors import ConfigError, DatasetNotFoundError
from bridge_edge.signals.types import PairedDataset

KINDS = ("sim", "wesad", "csv", "wfdb")
GRAMMAR = "[sim:|wesad:|csv:|wfdb:]PATH[?fs=HZ&seed=N]"


def load_dataset(spec: str | Path) -> PairedDataset:
    kind, path, options = _parse(str(spec))
    seed = int(options.get("seed", 0))
    fs = float(options["fs"]) if "fs" in options else None
    if not path.exists() and not path.with_suffix(".hea").exists():
        raise DatasetNotFoundError(
            f"dataset {path} does not exist; expected {GRAMMAR}", path=str(path), expected=GRAMMAR
        )
    kind = kind or _detect(path)
    if kind == "sim":
        from bridge_edge.signals.datasets.simulated import load_simulated

        return load_simulated(path)
    if kind == "wesad":
        from bridge_edge.signals.datasets.wesad import load_wesad

        return load_wesad(path, seed=seed)
    if kind == "csv":
        from bridge_edge.signals.datasets.paired_csv import load_csv_dataset

        return load_csv_dataset(path, fs=fs, seed=seed)
    from bridge_edge.signals.datasets.wfdb_record import load_wfdb_dataset

    return load_wfdb_dataset(path, seed=seed)


def _parse(spec: str) -> tuple[str | None, Path, dict[str, str]]:
    body, _, query = spec.partition("?")
    kind = None
    head, sep, rest = body.partition(":")
    if sep and head in KINDS:
        kind, body = head, rest
    try:
        options = {k: v[-1] for k, v in parse_qs(query, strict_parsing=bool(query)).items()}
        if "fs" in options:
            float(options["fs"])
        if "seed" in options:
            int(options["seed"])
    except ValueError as err:
        raise ConfigError(
            f"bad dataset spec {spec!r} ({err}); expected {GRAMMAR}", key="data", value=spec, expected=GRAMMAR
        ) from err
    unknown = set(options) - {"fs", "seed"}
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)} in dataset spec {spec!r}; expected {GRAMMAR}",
            key="data",
            value=spec,
            expected=GRAMMAR,
        )
    return kind, Path(body).expanduser(), options


def _detect(path: Path) -> str:
    from bridge_edge.signals.datasets.simulated import is_simulated
    from bridge_edge.signals.datasets.wesad import is_wesad
    from bridge_edge.signals.datasets.wfdb_record import is_wfdb

    if path.is_dir() and is_simulated(path):
        return "sim"
    if is_wesad(path):
        return "wesad"
    if path.suffix.lower() == ".csv" or (path.is_dir() and any(path.glob("*.csv"))):
        return "csv"
    if is_wfdb(path):
        return "wfdb"
    raise DatasetNotFoundError(
        f"{path} is not a dataset this project reads; expected a simulate output (dataset.json), "
        f"WESAD (S<k>/S<k>.pkl), paired CSV (*.csv) or WFDB (*.hea)",
        path=str(path),
        expected="dataset.json | S<k>/S<k>.pkl | *.csv | *.hea",
    )
