"""Judging pin sets: each plan once, within a budget, journaled, with progress on the log."""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

from ..core import progress
from ..analysis.acceptance import Verdict, measure_label
from .journal import Evaluation, Journal

log = logging.getLogger("precdoctor")


class BudgetExhausted(Exception):
    """The search asked for one evaluation more than its budget allows."""


def _g(v) -> str:
    return "inf" if v is None or (isinstance(v, float) and math.isinf(v)) else f"{v:.4g}"


class Evaluator:
    """Evaluates pin sets once each (cached, then journaled), at most ``budget`` new ones."""

    def __init__(self, judge: Callable[[frozenset], Verdict], journal: Journal, budget: int, verbose: bool = True,
                 bound: int | None = None):
        self.judge, self.journal, self.budget, self.verbose = judge, journal, budget, verbose
        self.bound = bound  # the evaluations the search expects (limits.evaluation_bound); counts are shown against it
        self.stage: progress.Stage | None = None  # the progress stage these evaluations count in (its owner opens it)
        self.log: list[Evaluation] = []
        self.seen: dict[tuple[str, ...], Evaluation] = {}
        self.pending: dict[tuple[str, ...], object] = {}  # plans started ahead on idle workers: counted when asked for

    def prefetch(self, plans) -> None:
        """Start plans the search may ask for next on workers that would otherwise idle (a judge with ``submit`` and
        ``capacity``: distributed.py); nothing is counted or journaled until the search asks, so the run is the same."""
        submit = getattr(self.judge, "submit", None)
        if submit is None or self.judge.capacity() <= 1:  # one plan at a time: the one asked next runs when asked
            return
        wanted = [tuple(sorted(pins)) for pins in plans]
        for stale in [k for k in self.pending if k not in wanted]:  # the search went elsewhere: free the slot
            del self.pending[stale]
        for key in wanted:
            if len(self.pending) >= self.judge.capacity():  # the plan asked next is among them, listed first
                return
            if key not in self.seen and key not in self.journal.entries and key not in self.pending:
                handle = submit(frozenset(key))
                if handle is not None:
                    self.pending[key] = handle

    @property
    def count(self) -> int:
        return len(self.log)

    def __call__(self, pins) -> bool:
        return self.evaluate(pins).passed

    def evaluate(self, pins) -> Evaluation:
        key = tuple(sorted(pins))
        if key in self.seen:
            return self.seen[key]
        ev = self.journal.entries.get(key)
        if ev is None:
            if self.count >= self.budget:
                raise BudgetExhausted
            t = time.perf_counter()
            v = self.judge.finish(self.pending.pop(key)) if key in self.pending else self.judge(frozenset(key))
            ev = Evaluation(list(key), v.passed, v.measures, v.failed, time.perf_counter() - t)
            self.journal.append(ev)
        self.seen[key] = ev
        self.log.append(ev)
        verdict = f"{len(key)} pins -> {'PASS' if ev.passed else 'fail'}" + (" (journal)" if ev.resumed else "")
        if self.stage is not None:
            if self.bound is not None and self.count > self.bound:
                self.stage.retotal(self.budget)  # past the promised bound: what is left is the budget
            self.stage.advance(note=verdict)
        if self.verbose:
            m = ", ".join(f"{measure_label(k)}: {_g(v)}" for k, v in ev.measures.items())
            log.info(f"  evaluation {self.count}/{self.of()}: {len(key):3d} pins -> {'PASS' if ev.passed else 'fail'}"
                     f"{' (journal)' if ev.resumed else f' ({ev.seconds:.1f}s)'}  {m}")
        return ev

    def of(self) -> str:
        """What the count is shown against: the expected bound, or the budget once the count passed it."""
        if self.bound is None:
            return f"{self.budget} (budget)"
        return str(self.bound) if self.count <= self.bound else f"{self.budget} (budget; past the bound {self.bound})"

    def best_passing(self) -> Evaluation | None:
        passing = [e for e in self.seen.values() if e.passed]
        return min(passing, key=lambda e: len(e.pins)) if passing else None
