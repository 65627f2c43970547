"""scripts/fuzz.py itself (docs/sources.md, "Fuzzing"): its inputs and its verdicts, on a few
hundred inputs per target. The long runs are the script's; the properties are
tests/unit/test_fuzz_properties.py."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import random
from pathlib import Path

import pytest

from bridge_edge.errors import BundleError
from bridge_edge.export.bundle_checks import manifest_problems
from bridge_edge.export.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_script", ROOT / "scripts" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reparsed_structural(fuzz, rng: random.Random) -> dict:
    """The mutation as the script first made it: the manifest parsed afresh, edited in place."""
    doc = json.loads(fuzz.MANIFEST_TEXT)
    for _ in range(rng.randrange(1, 5)):
        parent, key, node = None, None, doc
        while isinstance(node, (dict, list)) and node and (parent is None or rng.random() < 0.6):
            parent, key = node, rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            node = parent[key]
        if parent is None:
            continue
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[key]
        else:
            parent[key] = copy.deepcopy(rng.choice(fuzz.LEAVES))
    return doc


def _same(a, b) -> bool:
    """Equal JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def test_copy_on_write_mutation_gives_the_same_manifests_and_leaves_the_base_alone(fuzz):
    base = json.dumps(fuzz.MANIFEST_BASE)
    changed = 0
    for seed in range(300):
        doc = fuzz._structural(random.Random(seed))
        assert _same(doc, _reparsed_structural(fuzz, random.Random(seed))), seed
        changed += not _same(doc, fuzz.MANIFEST_BASE)
    assert json.dumps(fuzz.MANIFEST_BASE) == base
    assert changed > 250  # nearly every input is a different manifest


def _outcome(read, source):
    try:
        return manifest_problems(read(source))
    except BundleError as err:
        return str(err)


def test_a_structural_mutation_checked_as_a_dict_is_checked_as_its_json_text(fuzz):
    for seed in range(200):
        doc = fuzz._structural(random.Random(seed))
        direct = _outcome(Manifest.from_dict, doc)
        via_text = _outcome(Manifest.parse, json.dumps(doc).encode())
        assert direct == via_text, seed


@pytest.mark.parametrize("target", ["frame", "csv", "sparkfun", "ad8232", "pmd", "manifest"])
def test_every_target_answers_a_few_hundred_inputs_with_results_or_typed_errors(fuzz, target):
    result = fuzz.fuzz_target(target, n=300, seed=1, max_len=4096, hang_ms=10.0)
    assert result["tried"] == 300
    assert result["ok"] + result["typed_errors"] + result["other_exceptions"] == 300
    assert result["other_exceptions"] == 0, result["examples"]
