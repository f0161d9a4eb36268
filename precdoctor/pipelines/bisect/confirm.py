"""Confirming a searched plan with the checks too expensive to run on every evaluation.

The search judges plans by their graph outputs on a few samples (cheap). A plan it
finds is then confirmed by every check that applies: ``finite-inside`` (every tensor
of the graph compared: no new Inf/NaN born inside that the outputs hide) and the task
metric on the whole dataset. If any rejects the plan, that plan becomes a floor and a
second search, judged by the outputs and every check together (journaled apart),
adds the pins still needed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from ...analysis import acceptance as acc
from ...analysis.comparison import fault_nonfinite
from ...core.limits import evaluation_bound
from ...search import Evaluator, Journal, SearchResult, fingerprint, search
from ...core.status import SearchStatus

log = logging.getLogger("precdoctor")


@dataclass
class Check:
    name: str  # what it checks, for the log and the journal's fingerprint
    judge: Callable[[frozenset], acc.Verdict]


def merge(a: acc.Verdict, b: acc.Verdict) -> acc.Verdict:
    return acc.Verdict(a.passed and b.passed, {**a.measures, **b.measures}, a.failed + b.failed)


def finite_inside(comparison) -> acc.Verdict:
    """``finite-inside`` on a plan compared tensor by tensor: no new Inf/NaN anywhere in the graph, benign
    saturation aside (comparison.benign_saturation)."""
    new = fault_nonfinite(comparison)
    return acc.Verdict(new == 0, {acc.INSIDE: float(new)}, [acc.INSIDE] if new else [])


def chained(v: acc.Verdict, checks: list[Check], pins: frozenset) -> acc.Verdict:
    """``v`` merged with each check in turn while the plan still passes: the first failure ends it."""
    for c in checks:
        if not v.passed:
            break
        v = merge(v, c.judge(pins))
    return v


def _judged(checks: list[Check], pins: frozenset) -> tuple[acc.Verdict, dict[str, acc.Verdict]]:
    per = {c.name: c.judge(pins) for c in checks}
    verdict = acc.Verdict(True)
    for v in per.values():
        verdict = merge(verdict, v)
    return verdict, per


@dataclass
class Confirmed:
    result: SearchResult
    first: dict[str, acc.Verdict]  # each check's verdict on the searched plan
    bound: int  # evaluations the second search promises to stay within (0: none ran); the floor's re-check included
    log: list = field(default_factory=list)  # the second search's evaluations


def confirm(result: SearchResult, checks: list[Check], ev: Evaluator, journal_path, fp: str, order: list[str],
            suspects: int, budget: int) -> Confirmed:
    """The plan, confirmed or repaired."""
    if not checks or result.status is SearchStatus.UNFIXED:
        return Confirmed(result, {}, 0)
    verdict, first = _judged(checks, frozenset(result.pins))
    log.info(f"confirming {len(result.pins)} pin(s) with {', '.join(c.name for c in checks)}: "
             + ("PASS  " if verdict.passed else "fail  ") + ", ".join(f"{acc.measure_label(k)}: {v:.4g}" for k, v in verdict.measures.items()))
    if verdict.passed:
        return Confirmed(result, first, 0)

    def together(pins: frozenset) -> acc.Verdict:
        return chained(ev.judge(pins), checks, pins)

    journal = Journal(journal_path, fingerprint(fp, [c.name for c in checks]))
    ev2 = Evaluator(together, journal, max(budget - ev.count, 1))
    ev2.stage = ev.stage  # the repair search counts on in the search's progress
    floor = tuple(result.pins)
    rest = [n for n in order if n not in floor]
    second = search(rest, sum(1 for n in order[:suspects] if n not in floor), ev2, base=floor)  # the seed still leads
    second.evaluations += result.evaluations
    names = ", ".join(c.name for c in checks)
    if second.status is SearchStatus.FIXED:
        second.message = (f"{len(second.pins)} node(s) pinned to FP32; the output-level proxy's {len(floor)} were not enough "
                          f"for {names}" + ("; dropping any one breaks acceptance" if second.one_minimal else ""))
    else:
        second.message = f"no plan met {names}: " + second.message
    added = len(set(second.pins) - set(floor))  # the 1-minimality check may drop a floor pin: count what was added
    return Confirmed(second, first, evaluation_bound(added, len(rest)) + 1, list(ev2.log))
