"""Pin-set search: the fewest nodes to keep in FP32 so that acceptance holds.

1. Localize. The naive run's comparison ranks candidates: nodes whose FP32
   output leaves the format's range and the nodes reading such tensors (their
   input would be rounded to inf at the border), the Inf/NaN origin and the
   first divergence with the producers of their inputs, nodes reading
   constants that the format flushes to 0 or inf. These form the *seed*; the
   other candidates follow by error growth.
2. Search. With an ordering whose prefix C[:hi] passes, a binary search finds
   the shortest passing prefix; its last node is necessary, so it joins the
   result and the search repeats on the nodes before it (QuickXplain-style),
   about log2(N) evaluations per culprit and one check per culprit.
3. Verify. Dropping any single pin must break acceptance (1-minimal); a pin
   whose removal still passes is dropped and the check repeats.

Every evaluation is cached by plan and appended to a journal, so a killed run
resumes without repeating one; ``budget`` caps the evaluations.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable



from .accept import Verdict
from .formats import Format
from .graph import GraphView

SHAPE_ONLY_OPS = {"Shape", "Size", "ConstantOfShape", "NonZero", "Range"}


class BudgetExhausted(Exception):
    pass


@dataclass
class Evaluation:
    pins: tuple[str, ...]
    passed: bool
    measures: dict
    failed: list[str]
    seconds: float
    resumed: bool = False

    def to_json(self) -> dict:
        return {"pins": list(self.pins), "passed": self.passed, "measures": self.measures, "failed": self.failed,
                "seconds": round(self.seconds, 3), "resumed": self.resumed}


def code_digest() -> str:
    """The package's own source: a journal written by other code must not be replayed."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (str, os.PathLike)) and Path(p).is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class Journal:
    """Append-only JSON lines: a header with the run's fingerprint, then one line per evaluation."""

    def __init__(self, path: Path | None, fp: str):
        self.path, self.fp = path, fp
        self.entries: dict[tuple[str, ...], Evaluation] = {}
        if path is None:
            return
        if path.is_file():
            lines = path.read_text().splitlines()
            head = json.loads(lines[0]) if lines else {}
            if head.get("fingerprint") == fp:
                for line in lines[1:]:
                    try:
                        e = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by a kill
                        continue
                    ev = Evaluation(tuple(e["pins"]), e["passed"], e["measures"], e["failed"], e["seconds"], True)
                    self.entries[ev.pins] = ev
                return
            path.rename(path.with_suffix(".stale.jsonl"))
        path.write_text(json.dumps({"fingerprint": fp, "journal": "precdoctor bisect"}) + "\n")

    def append(self, ev: Evaluation) -> None:
        self.entries[ev.pins] = ev
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(ev.to_json()) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


class Evaluator:
    """Evaluates pin sets once each, within a budget, journaling and reporting progress."""

    def __init__(self, judge: Callable[[frozenset], Verdict], journal: Journal, budget: int, quiet: bool = False):
        self.judge, self.journal, self.budget, self.quiet = judge, journal, budget, quiet
        self.log: list[Evaluation] = []
        self.seen: dict[tuple[str, ...], Evaluation] = {}

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
            v = self.judge(frozenset(key))
            ev = Evaluation(key, v.passed, v.measures, v.failed, time.perf_counter() - t)
            self.journal.append(ev)
        self.seen[key] = ev
        self.log.append(ev)
        if not self.quiet:
            m = ", ".join(f"{k}={_g(v)}" for k, v in ev.measures.items())
            print(f"  evaluation {self.count}/{self.budget}: {len(key):3d} pins -> {'PASS' if ev.passed else 'fail'}"
                  f"{' (journal)' if ev.resumed else f' ({ev.seconds:.1f}s)'}  {m}", file=sys.stderr, flush=True)
        return ev

    def best_passing(self) -> Evaluation | None:
        passing = [e for e in self.seen.values() if e.passed]
        return min(passing, key=lambda e: len(e.pins)) if passing else None


def _g(v) -> str:
    return "inf" if v is None or (isinstance(v, float) and math.isinf(v)) else f"{v:.4g}"


# ------------------------------------------------------------------ localization


def candidates(graph: GraphView) -> list[str]:
    """Nodes that compute on floats: the ones a plan can pin."""
    out = []
    for n in graph.nodes:
        if n.op_type in SHAPE_ONLY_OPS:
            continue
        if graph.float_outputs(n) or any(graph.is_float(i) for i in n.input if i):
            out.append(n.name)
    return out


def _flushed_constants(graph: GraphView, fmt: Format) -> dict[str, str]:
    """Nodes reading a constant that the format turns to 0 (nonzero in FP32) or to inf."""
    hits: dict[str, str] = {}
    for name, init in graph.initializers.items():
        if init.data_type != 1:
            continue
        a = graph.array(name)
        r = fmt.round(a)
        lost = ((a != 0) & (r == 0)).sum()
        inf = (~(abs(r) < float("inf")) & (abs(a) < float("inf"))).sum()
        if lost or inf:
            what = f"constant {name} " + (f"has {lost} value(s) that become 0" if lost else f"has {inf} value(s) that become inf") + f" in {fmt.name}"
            for c in graph.consumers.get(name, []):
                hits.setdefault(c.name, what)
    return hits


def rank(graph: GraphView, findings, fmt: Format) -> tuple[list[str], int, dict[str, str]]:
    """Order candidates most suspicious first; returns (order, seed length, evidence per node)."""
    cands = candidates(graph)
    pos = {n: k for k, n in enumerate(cands)}
    per = {t["tensor"]: t for t in findings.tensors}
    evidence: dict[str, str] = {}

    def flag(node: str, why: str):
        if node in pos:
            evidence.setdefault(node, why)

    for t in findings.tensors:
        if t["overflow_frac"] and t["overflow_frac"] > 0:
            n_over = round(t["overflow_frac"] * t["elements"])
            flag(t["node"], f"FP32 output |max| {t['ref_absmax']:.4g} exceeds {fmt.name} max {fmt.max_finite:.6g} "
                            f"on {n_over} of {t['elements']} elements")
            for c in graph.consumers.get(t["tensor"], []):
                flag(c.name, f"reads {t['tensor']}, whose FP32 values exceed the {fmt.name} range")
        uf = t.get("underflow_frac")
        if uf is not None and uf == uf and uf > 0.01:  # NaN: not measured
            flag(t["node"], f"{uf:.1%} of its nonzero FP32 output values flush to 0 in {fmt.name}")
            for c in graph.consumers.get(t["tensor"], []):
                flag(c.name, f"reads {t['tensor']}, whose small values flush to 0 in {fmt.name}")
    for node, why in _flushed_constants(graph, fmt).items():
        flag(node, "reads " + why)
    for label, node in (("Inf/NaN origin", findings.origin), ("first divergence", findings.first_divergence)):
        if node:
            growth = next((t["growth"] for t in findings.tensors if t["node"] == node), None)
            flag(node, label + (f" (error grows {growth:.3g}x over its inputs)" if growth else " (error jumps over its inputs)"))
            for i in graph.node(node).input:
                p = graph.producer.get(i)
                if p is not None and i in per:
                    flag(p.name, f"feeds the {label} {node}")
    seed = sorted(evidence, key=pos.get)
    rest = [n for n in cands if n not in evidence]
    growth_of = {}
    for t in findings.tensors:
        g = t["growth"] if t["growth"] is not None else math.inf
        growth_of[t["node"]] = max(growth_of.get(t["node"], 0.0), g if t["rel_l2"] is None or t["rel_l2"] > fmt.unit_roundoff else 0.0)
    rest.sort(key=lambda n: (-growth_of.get(n, 0.0), pos[n]))
    return seed + rest, len(seed), evidence


# ------------------------------------------------------------------ search


@dataclass
class SearchResult:
    status: str  # "healthy" | "fixed" | "unfixed"
    pins: list[str]
    one_minimal: bool
    evaluations: int
    message: str
    necessity: dict[str, list[str]] = field(default_factory=dict)  # pin -> criteria that fail without it
    budget_exhausted: bool = False


def search(order: list[str], seed_len: int, ev: Evaluator, base: tuple[str, ...] = ()) -> SearchResult:
    """Fewest pins from ``order`` (on top of the always-pinned ``base``) that pass ``ev``."""
    base = list(base)
    plan = lambda extra: frozenset(base + list(extra))
    try:
        if ev(plan([])):
            if not base:
                return SearchResult("healthy", [], True, ev.count, "the naive plan already passes: nothing to pin")
            necessity = _minimize(base, ev)
            return SearchResult("fixed", [n for n in base if n in necessity], True, ev.count, "", necessity)
        hi = None
        if seed_len and ev(plan(order[:seed_len])):
            hi = seed_len
        elif ev(plan(order)):
            hi = len(order)
        if hi is None:
            return SearchResult("unfixed", [], False, ev.count,
                                "acceptance fails even with every candidate node in FP32: the criterion cannot be met in this precision "
                                "(loosen --accept, or check the reference itself)")
        found: list[str] = []
        pool = order[:hi]
        while not ev(plan(found)):
            lo, hi = 0, len(pool)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ev(plan(found + pool[:mid])):
                    hi = mid
                else:
                    lo = mid
            found.append(pool[hi - 1])
            pool = pool[: hi - 1]
        necessity = _minimize(base + found, ev)
        pins = [n for n in base + [n for n in order if n not in base] if n in necessity]
        return SearchResult("fixed", pins, True, ev.count, f"{len(pins)} node(s) pinned to FP32; dropping any one breaks acceptance",
                            necessity)
    except BudgetExhausted:
        best = ev.best_passing()
        if best is None:
            return SearchResult("unfixed", [], False, ev.count, f"the budget of {ev.budget} evaluations ran out before any plan passed",
                                budget_exhausted=True)
        return SearchResult("fixed", list(best.pins), False, ev.count,
                            f"the budget of {ev.budget} evaluations ran out; best passing plan found has {len(best.pins)} pins "
                            "(not verified 1-minimal)", budget_exhausted=True)


def _minimize(found: list[str], ev: Evaluator) -> dict[str, list[str]]:
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


def prefix_bisection(topo: list[str], ev: Evaluator) -> dict:
    """Polygraphy ``debug precision``-style baseline: the smallest K such that the first K nodes in FP32 pass."""
    start = ev.count
    try:
        if ev(frozenset()):
            return {"k": 0, "evaluations": ev.count - start, "passed": True}
        if not ev(frozenset(topo)):
            return {"k": None, "evaluations": ev.count - start, "passed": False}
        lo, hi = 0, len(topo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ev(frozenset(topo[:mid])):
                hi = mid
            else:
                lo = mid
        return {"k": hi, "evaluations": ev.count - start, "passed": True, "last_node": topo[hi - 1]}
    except BudgetExhausted:
        return {"k": None, "evaluations": ev.count - start, "passed": False, "budget_exhausted": True}


def range_rule(graph: GraphView, findings, data_max: float = 512.0, init_max: float = 65504.0) -> list[str]:
    """AutoCast-style baseline: pin every node whose FP32 input or output |max| exceeds data_max,
    or that reads an initializer past init_max. Rule-based: it never runs the converted model."""
    absmax = {t["tensor"]: t["ref_absmax"] or 0.0 for t in findings.tensors}
    big_init = {n for n, i in graph.initializers.items() if i.data_type == 1 and graph.array(n).size
                and float(abs(graph.array(n)).max()) > init_max}
    pins = []
    for name in candidates(graph):
        node = graph.node(name)
        ranges = [absmax.get(t, 0.0) for t in list(node.input) + list(node.output) if t]
        if any(r > data_max for r in ranges) or any(i in big_init for i in node.input):
            pins.append(name)
    return pins
