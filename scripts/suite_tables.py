"""Markdown tables of rhythm-suite results side by side (docs/method.md, "Real PPG").

    python3 scripts/suite_tables.py 0.6.0=benchmarks/results/rhythm_suite_0.6.0.json \
        0.7.0=benchmarks/results/rhythm_suite_0.7.0.json 0.8.0=benchmarks/results/rhythm_suite_0.8.0.json [--write docs/method.md]

Columns are the given results in order; the pulse-timing column comes from the last one (the
baseline is scored on the same windows in every run). With ``--write`` the tables replace what
sits between the ``<!-- suite-table:... -->`` and ``<!-- dev-table:... -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

VARIANTS = ("as_recorded", "inverted", "x0.8", "x1.25")
ROWS = (
    ("fixed_shape", "afib"),
    ("fixed_shape", "sinus"),
    ("resequenced", "afib"),
    ("resequenced", "sinus"),
    ("resequenced", "ectopic"),
)


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def suite_table(results: dict[str, dict]) -> str:
    names = list(results)
    last = results[names[-1]]["summary"]
    head = " | ".join(f"{n}: {' / '.join(VARIANTS).replace('as_recorded', 'as recorded')}" for n in names)
    lines = [f"| case | {head} | pulse timing: as recorded / x0.8 / x1.25 |", "|---" * (len(names) + 2) + "|"]
    for group, rhythm in ROWS:
        cells = [
            " / ".join(pct(r["summary"].get(f"{group}/{rhythm}/{v}", {}).get("bundle")) for v in VARIANTS)
            for r in results.values()
        ]
        timing = " / ".join(
            pct(last.get(f"{group}/{rhythm}/{v}", {}).get("rr_timing"))
            for v in ("as_recorded", "x0.8", "x1.25")
        )
        lines.append(f"| {group} {rhythm} | {' | '.join(cells)} | {timing} |")
    return "\n".join(lines)


def per_source(result: dict, group: str, variant: str | None) -> dict[str, list[int]]:
    """source -> [scored, called AF, timing called AF] over the cases of ``group``."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in result["cases"]:
        if c["group"] == group and (variant is None or c["variant"] == variant):
            row = out[f"{c['variant']} {c['source']}" if group == "probe" else c["source"]]
            row[0] += c["windows"] - c["gated"]
            row[1] += c["called_positive"]
            row[2] += c.get("rr_af_called") or 0
    return out


def short(source: str) -> str:
    return source.replace("biosignalsnotebooks/", "bsn/").replace("signal_sample_single_hub_", "")


def dev_table(results: dict[str, dict]) -> str:
    names = list(results)
    tables = {n: per_source(r, "dev_recordings", "as_recorded") for n, r in results.items()}
    last = tables[names[-1]]
    lines = [
        f"| recording | scored hops ({names[-1]}) | {' | '.join(names)} | pulse timing |",
        "|---" * (len(names) + 3) + "|",
    ]
    totals = {n: [0, 0, 0] for n in names}
    for source in last:
        cells = []
        for n in names:
            scored, called, _ = tables[n].get(source, [0, 0, 0])
            totals[n] = [a + b for a, b in zip(totals[n], tables[n].get(source, [0, 0, 0]))]
            cells.append(
                f"{called}/{scored}" + (f" ({pct(called / scored)})" if n == names[-1] and scored else "")
            )
        lines.append(
            f"| {short(source)} | {last[source][0]} | {' | '.join(cells)} | {last[source][2]}/{last[source][0]} |"
        )
    pooled = [f"{t[1]}/{t[0]} ({pct(t[1] / t[0] if t[0] else None)})" for t in totals.values()]
    t = totals[names[-1]]
    lines.append(
        f"| **pooled** | {t[0]} | {' | '.join(pooled)} | {t[2]}/{t[0]} ({pct(t[2] / t[0] if t[0] else None)}) |"
    )
    probes = {n: per_source(r, "probe", None) for n, r in results.items()}
    lines += [
        "",
        f"| probe (healthy: any AF call is false) | {' | '.join(names)} |",
        "|---" * (len(names) + 1) + "|",
    ]
    for key in probes[names[-1]]:
        cells = [f"{probes[n].get(key, [0, 0])[1]}/{probes[n].get(key, [0, 0])[0]}" for n in names]
        lines.append(f"| {short(key)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def replace_between(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers <!-- {marker}:start/end --> not found")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="LABEL=PATH to a rhythm_suite.json")
    parser.add_argument("--write", type=Path, help="rewrite the marked tables in this markdown file")
    args = parser.parse_args()
    results = {}
    for item in args.results:
        label, _, path = item.partition("=")
        results[label] = json.loads(Path(path).read_text())
    suite, dev = suite_table(results), dev_table(results)
    if args.write:
        text = replace_between(args.write.read_text(), "suite-table", suite)
        args.write.write_text(replace_between(text, "dev-table", dev))
    else:
        print(suite, "\n\n", dev, sep="")


if __name__ == "__main__":
    main()
