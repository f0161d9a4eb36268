"""The pin search's promises, with a fake judge (no model): the culprits found exactly, within the printed bound
k*ceil(log2 N)+3 when the evidence seeds them, and 1-minimal for any monotone acceptance."""
from __future__ import annotations

import random

from precdoctor.analysis.acceptance import Verdict
from precdoctor.core.limits import evaluation_bound
from precdoctor.search import Evaluator, search


class MemoryJournal:
    """The evaluator's journal, in memory: nothing replayed."""

    def __init__(self):
        self.entries = {}

    def append(self, e):
        self.entries[tuple(e.pins)] = e


def _evaluator(passes, budget=10**6) -> tuple[Evaluator, list]:
    calls = []

    def judge(pins: frozenset) -> Verdict:
        calls.append(pins)
        ok = passes(pins)
        return Verdict(ok, {"fake": float(not ok)}, [] if ok else ["fake"])

    return Evaluator(judge, MemoryJournal(), budget, verbose=False), calls


def test_the_culprits_exactly_within_the_bound_when_the_evidence_seeds_them():
    """Every node of a random culprit set needed (acceptance holds iff all are pinned), the ranked suspects (the seed)
    holding them within the first quarter of N candidates: the search returns exactly them, 1-minimal, in at most
    k*ceil(log2 N)+3 evaluations, and each plan is judged once."""
    rng = random.Random(19)
    for _ in range(1500):
        n = rng.randint(2, 400)
        k = rng.randint(1, min(6, n))
        region = max(k, n // 4)
        where = rng.sample(range(region), k)
        seed = rng.randint(max(where) + 1, max(region, max(where) + 1))
        order = [f"node{i}" for i in range(n)]
        culprits = {order[i] for i in where}
        ev, calls = _evaluator(lambda pins, culprits=culprits: culprits <= pins)
        r = search(order, seed, ev)
        case = f"N={n} culprits at {sorted(where)} seed {seed}"
        assert r.status == "fixed" and set(r.pins) == culprits and r.one_minimal, case
        assert r.evaluations == len(calls) == len(set(calls)), case
        assert r.evaluations <= evaluation_bound(k, n), f"{case}: {r.evaluations} > {evaluation_bound(k, n)}"


def test_any_monotone_acceptance_gets_a_1_minimal_plan():
    """Acceptance that holds when any of several culprit sets is pinned (a fix has alternatives), culprits anywhere in
    the ranking, any seed, with and without a floor of pins already required (confirm.py's second search): the plan
    passes, and dropping any one of its pins fails."""
    rng = random.Random(22)
    for _ in range(800):
        n = rng.randint(2, 120)
        order = [f"n{i}" for i in range(n)]
        fixes = [set(rng.sample(order, rng.randint(1, min(4, n)))) for _ in range(rng.randint(1, 3))]
        base = tuple(rng.sample(order, rng.randint(0, 2)))
        rest = [x for x in order if x not in base]

        def passes(pins, fixes=fixes):
            return any(f <= pins for f in fixes)

        ev, _ = _evaluator(passes)
        r = search(rest, rng.randint(0, len(rest)), ev, base=base)
        pins = frozenset(r.pins)
        assert r.status in ("fixed", "healthy") and r.one_minimal
        assert passes(pins), (fixes, r.pins)
        for p in pins:
            assert not passes(pins - {p}), f"{p} is not needed in {sorted(pins)} (fixes {fixes})"


def test_healthy_impossible_and_out_of_budget():
    order = [f"n{i}" for i in range(50)]
    ev, calls = _evaluator(lambda pins: True)
    r = search(order, 3, ev)
    assert (r.status, r.pins, r.evaluations, len(calls)) == ("healthy", [], 1, 1)

    ev, _ = _evaluator(lambda pins: False)
    r = search(order, 3, ev)
    assert r.status == "unfixed" and r.pins == [] and not r.one_minimal

    culprits = {"n7", "n30", "n41"}
    ev, calls = _evaluator(lambda pins: culprits <= pins, budget=6)
    r = search(order, 0, ev)
    assert r.budget_exhausted and len(calls) <= 6 and not r.one_minimal
    assert r.status == "unfixed" or culprits <= set(r.pins)  # the best passing plan seen, never one that fails
