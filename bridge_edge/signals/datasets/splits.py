"""Subject-disjoint, deterministic splits: sorted ids, shuffled by a seeded generator.

The same ids and seed always give the same splits, whatever order the ids came in.
Fractions: train 40 % (probe), val 10 %, pair 30 % (unlabelled ECG+PPG for the bridge),
test 20 %; with four or more subjects every split gets at least one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bridge_edge.signals.types import SPLIT_NAMES, Splits

FRACTIONS = {"train": 0.4, "val": 0.1, "pair": 0.3, "test": 0.2}


def split_subjects(subject_ids: Iterable[str], seed: int) -> Splits:
    ids = sorted(set(subject_ids))
    order = [ids[i] for i in np.random.default_rng(int(seed)).permutation(len(ids))]
    n = len(ids)
    counts = {name: int(np.floor(FRACTIONS[name] * n)) for name in SPLIT_NAMES}
    if n >= len(SPLIT_NAMES):
        for name in SPLIT_NAMES:
            counts[name] = max(counts[name], 1)
    # hand the remainder (or take the excess) from the largest split, train
    counts["train"] += n - sum(counts.values())
    if n < len(SPLIT_NAMES):  # too few subjects for four splits: fill in order
        counts = {name: int(i < n) for i, name in enumerate(SPLIT_NAMES)}
    parts, start = {}, 0
    for name in SPLIT_NAMES:
        parts[name] = tuple(sorted(order[start : start + counts[name]]))
        start += counts[name]
    return Splits(**parts)
