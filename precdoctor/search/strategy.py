"""The pin search: the fewest nodes to keep in FP32 so that acceptance holds.

With an ordering whose prefix C[:hi] passes, a binary search finds the
shortest passing prefix; its last node is necessary, so it joins the result
and the search repeats on the nodes before it (QuickXplain-style), about
log2(N) evaluations per culprit and one check per culprit. Then every pin is
verified: dropping any single pin must break acceptance (1-minimal); a pin
whose removal still passes is dropped and the check repeats.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..records import Record
from .evaluator import BudgetExhausted, Evaluator


@dataclass
class SearchResult(Record):
    status: Literal["healthy", "fixed", "unfixed"]
    pins: list[str]
    one_minimal: bool
    evaluations: int
    message: str
    necessity: dict[str, list[str]] = field(default_factory=dict)  # pin -> criteria that fail without it
    budget_exhausted: bool = False


IMPOSSIBLE = ("acceptance fails even with every candidate node in FP32: the criterion cannot be met in this precision "
              "(loosen --accept, or check the reference itself)")


def search(order: list[str], seed_len: int, ev: Evaluator, base: tuple[str, ...] = ()) -> SearchResult:
    """Fewest pins from ``order`` (on top of the always-pinned ``base``) that pass ``ev``."""
    base = list(base)

    def plan(extra):
        return frozenset(base + list(extra))

    try:
        if ev(plan([])):
            if not base:
                return SearchResult("healthy", [], True, ev.count, "the naive plan already passes: nothing to pin")
            necessity = minimize(base, ev)
            return SearchResult("fixed", [n for n in base if n in necessity], True, ev.count, "", necessity)
        hi = seed_len if seed_len and ev(plan(order[:seed_len])) else (len(order) if ev(plan(order)) else None)
        if hi is None:
            return SearchResult("unfixed", [], False, ev.count, IMPOSSIBLE)
        found = _extract(order[:hi], base, ev)
        necessity = minimize(base + found, ev)
        pins = [n for n in base + [n for n in order if n not in base] if n in necessity]
        return SearchResult("fixed", pins, True, ev.count, f"{len(pins)} node(s) pinned to FP32; dropping any one breaks acceptance",
                            necessity)
    except BudgetExhausted:
        return _out_of_budget(ev)


def _extract(pool: list[str], base: list[str], ev: Evaluator) -> list[str]:
    """QuickXplain-style: the last node of the shortest passing prefix is necessary; repeat before it."""
    found: list[str] = []
    while not ev(frozenset(base + found)):
        lo, hi = 0, len(pool)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ev(frozenset(base + found + pool[:mid])):
                hi = mid
            else:
                lo = mid
        found.append(pool[hi - 1])
        pool = pool[: hi - 1]
    return found


def _out_of_budget(ev: Evaluator) -> SearchResult:
    best = ev.best_passing()
    if best is None:
        return SearchResult("unfixed", [], False, ev.count, f"the budget of {ev.budget} evaluations ran out before any plan passed",
                            budget_exhausted=True)
    return SearchResult("fixed", list(best.pins), False, ev.count,
                        f"the budget of {ev.budget} evaluations ran out; best passing plan found has {len(best.pins)} pins "
                        "(not verified 1-minimal)", budget_exhausted=True)


def minimize(found: list[str], ev: Evaluator) -> dict[str, list[str]]:
    """Drop pins whose removal still passes until every remaining one is necessary."""
    current = list(found)
    changed = True
    necessity: dict[str, list[str]] = {}
    while changed:
        changed = False
        for p in list(current):
            rest = [q for q in current if q != p]
            e = ev.evaluate(rest)
            if e.passed:
                current = rest
                changed = True
                necessity.clear()
                break
            necessity[p] = e.failed
    return {p: necessity.get(p, []) for p in current}
