"""Splits are subject-disjoint, deterministic, order-independent and seeded."""

from bridge_edge.signals.datasets.splits import split_subjects


def test_splits_are_disjoint_complete_and_deterministic():
    ids = [f"s{i:02d}" for i in range(17)]
    a = split_subjects(ids, seed=4)
    b = split_subjects(list(reversed(ids)), seed=4)
    assert a == b
    parts = [set(getattr(a, n)) for n in ("train", "val", "pair", "test")]
    assert all(parts) and set.union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    assert split_subjects(ids, seed=5) != a


def test_few_subjects_still_give_disjoint_splits():
    s = split_subjects(["b", "a", "c"], seed=0)
    assert sorted(s.train + s.val + s.pair + s.test) == ["a", "b", "c"]
    assert s.test == ()
