"""The pin search: the fewest nodes to keep in FP32 so that acceptance holds.

The ranked candidates' shortest passing prefix is found first: the evidence
seed, else the seed grown by 1, 2, 4, ... candidates. Within that prefix the
culprits are found by the cheaper of two strategies for the printed bound
k*ceil(log2 N)+3: *deletion* (drop each node whose removal still passes; about
prefix + k evaluations, chosen for prefixes up to log2(N)+1) or *extraction*
(a binary search finds the shortest passing prefix, whose last node is
necessary; repeat on the nodes before it, QuickXplain-style: about
k*(log2(prefix)+2)). Then every pin is verified: dropping any single pin must
break acceptance (1-minimal); a pin whose removal still passes is dropped and
the check repeats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..core.records import Record
from ..core.status import SearchStatus
from .evaluator import BudgetExhausted, Evaluator


@dataclass
class SearchResult(Record):
    status: SearchStatus
    pins: list[str]
    one_minimal: bool
    evaluations: int
    message: str
    necessity: dict[str, list[str]] = field(default_factory=dict)  # pin -> criteria that fail without it
    budget_exhausted: bool = False
    prefix: int | None = None  # how many ranked candidates the first passing plan needed
    seed: int = 0  # how many of them the evidence named
    strategy: str | None = None  # "deletion" or "extraction" (see search)


IMPOSSIBLE = ("acceptance fails even with every candidate node in FP32: the criterion cannot be met in this precision "
              "(loosen --accept, or check the reference itself)")


def search(order: list[str], seed_len: int, ev: Evaluator, base: tuple[str, ...] = (), candidates: int | None = None) -> SearchResult:
    """Fewest pins from ``order`` (on top of the always-pinned ``base``) that pass ``ev``; ``candidates``
    (default ``len(order)``) is the N of the printed bound the strategy is chosen to honour."""
    base = list(base)
    levels = math.ceil(math.log2(max(candidates or len(order), 2)))

    def plan(extra):
        return frozenset(base + list(extra))

    try:
        if ev(plan([])):
            if not base:
                return SearchResult(SearchStatus.HEALTHY, [], True, ev.count, "the naive plan already passes: nothing to pin")
            necessity = minimize(base, ev)
            return SearchResult(SearchStatus.FIXED, [n for n in base if n in necessity], True, ev.count, "", necessity)
        lo, hi = _passing_prefix(order, seed_len, ev, plan)
        if hi is None:
            return SearchResult(SearchStatus.UNFIXED, [], False, ev.count, IMPOSSIBLE)
        pool = order[:hi]
        if hi <= levels + 1:  # deletion costs hi + k: within the bound for any k
            found, how = _delete(pool, base, ev), "deletion"
        else:  # extraction costs k (log2 hi + 2): within the bound when hi <= N / 4
            found, how = _extract(pool, base, ev, lo), "extraction"
        necessity = minimize(base + found, ev)
        pins = [n for n in base + [n for n in order if n not in base] if n in necessity]
        return SearchResult(SearchStatus.FIXED, pins, True, ev.count, f"{len(pins)} node(s) pinned to FP32; dropping any one breaks acceptance",
                            necessity, prefix=hi, seed=seed_len, strategy=how)
    except BudgetExhausted:
        return _out_of_budget(ev)


def _growth(lo: int, step: int, n: int):
    """The prefix lengths the growth tries after ``lo`` while each fails: lo + 1, + 2, + 4, ..."""
    while lo + step < n:
        yield lo + step
        lo, step = lo + step, step * 2


def _passing_prefix(order: list[str], seed_len: int, ev: Evaluator, plan) -> tuple[int, int | None]:
    """(longest prefix known to fail, shortest prefix found to pass): the seed first, then growing past it
    1, 2, 4, ... candidates (the ranking puts likely culprits early), else everything."""
    if seed_len:
        ev.prefetch([plan(order[:k]) for k in [seed_len, *_growth(seed_len, 1, len(order))]])
    if seed_len and ev(plan(order[:seed_len])):
        return 0, seed_len
    lo, step = seed_len, 1
    while lo + step < len(order):
        ev.prefetch([plan(order[:k]) for k in _growth(lo, step, len(order))])
        if ev(plan(order[: lo + step])):
            return lo, lo + step
        lo, step = lo + step, step * 2
    return (lo, len(order)) if ev(plan(order)) else (lo, None)


def _delete(pool: list[str], base: list[str], ev: Evaluator) -> list[str]:
    """Drop each node whose removal still passes, least suspicious first."""
    current = list(pool)
    for p in reversed(pool):
        rest = [q for q in current if q != p]
        if ev(frozenset(base + rest)):
            current = rest
    return current


def shortest_passing_prefix(passes: Callable[[int], bool], lo: int, hi: int, prefetch: Callable[[list[int]], None] | None = None) -> int:
    """The smallest k in (lo, hi] with ``passes(k)``, by bisection: the prefix of length ``lo`` fails, ``hi`` passes,
    and a longer prefix passes whenever a shorter one does. ``prefetch``: told the cut points the next rounds may
    ask for (this round's, then both of the next), so that idle workers start them."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prefetch is not None:
            prefetch([k for k in (mid, (lo + mid) // 2, (mid + hi) // 2) if lo < k < hi])
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _extract(pool: list[str], base: list[str], ev: Evaluator, known_failing: int = 0) -> list[str]:
    """QuickXplain-style: the last node of the shortest passing prefix is necessary; repeat before it.
    ``known_failing``: a prefix length already seen to fail with nothing found yet."""
    found: list[str] = []
    while not ev(frozenset(base + found)):
        hi = shortest_passing_prefix(lambda k: ev(frozenset(base + found + pool[:k])), known_failing if not found else 0, len(pool),  # noqa: B023 (called before pool changes)
                                     lambda ks, head=base + found, pool=pool: ev.prefetch([frozenset(head + pool[:k]) for k in ks]))
        found.append(pool[hi - 1])
        pool = pool[: hi - 1]
    return found


def _out_of_budget(ev: Evaluator) -> SearchResult:
    best = ev.best_passing()
    if best is None:
        return SearchResult(SearchStatus.UNFIXED, [], False, ev.count, f"the budget of {ev.budget} evaluations ran out before any plan passed",
                            budget_exhausted=True)
    return SearchResult(SearchStatus.FIXED, list(best.pins), False, ev.count,
                        f"the budget of {ev.budget} evaluations ran out; best passing plan found has {len(best.pins)} pins "
                        "(not verified 1-minimal)", budget_exhausted=True)


def minimize(found: list[str], ev: Evaluator) -> dict[str, list[str]]:
    """Drop pins whose removal still passes until every remaining one is necessary (checked against the
    final set: a pass that drops one checks all again)."""
    current = list(found)
    while True:
        necessity: dict[str, list[str]] = {}
        dropped = False
        ev.prefetch([frozenset(q for q in current if q != p) for p in current])  # independent until one passes
        for p in list(current):
            e = ev.evaluate([q for q in current if q != p])
            if e.passed:
                current.remove(p)
                dropped = True
            else:
                necessity[p] = e.failed
        if not dropped:
            return {p: necessity[p] for p in current}
