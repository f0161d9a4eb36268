"""The precision plan: one low-precision format plus the nodes pinned to FP32.

Pins are exact node names (what TensorRT and AutoCast need); the selectors a
user types (``glob:``, ``re:``, ``op:``) are resolved against the graph when
the plan is built, so a saved plan means the same thing everywhere.
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field

from ..core.errors import BadInput
from ..core.formats import FORMATS, Format, get_format
from ..graph import GraphView
from ..core.limits import limit, raise_hint

PRECISIONS = tuple(FORMATS)
# how bisect ships a fix: FP32 pins, rewritten subgraphs with no FP32 island, or rewrites with pins for the rest
FIX_MODES = ("pins", "rewrite", "auto")


def config_name(precision: str, pins=(), rewritten: bool = False) -> str:
    """A configuration's name in task tables (fp16, fp16+pins, fp16+rewrite+pins): rows are looked up by it."""
    return precision + ("+rewrite" if rewritten else "") + ("+pins" if pins else "")


def other_precision(precision: str) -> str:
    """The other reduced format, which reports show beside the one under test."""
    return "bf16" if precision == "fp16" else "fp16"


@dataclass(frozen=True)
class Plan:
    precision: str  # "fp16" | "bf16"
    pins: frozenset[str] = frozenset()
    why: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def format(self) -> Format:
        return get_format(self.precision)

    def key(self) -> str:
        """Stable identity of the plan, for caches and journals."""
        return self.precision + ":" + "\n".join(sorted(self.pins))


def resolve_selectors(graph: GraphView, selectors) -> dict[str, str]:
    """Map each selector to the node names it picks; returns {node: selector}.

    ``name`` exact, ``glob:pattern``, ``re:regex`` (full match), ``op:OpType``.
    A selector that matches nothing is an error: a silently empty pin is the
    bug this tool exists to catch.
    """
    nodes = graph.all_nodes()  # If/Loop/Scan body nodes too
    names = [n.name for n in nodes]
    picked: dict[str, str] = {}
    for sel in selectors:
        if sel.startswith("op:"):
            hit = [n.name for n in nodes if n.op_type == sel[3:]]
        elif sel.startswith("glob:"):
            hit = fnmatch.filter(names, sel[5:])
        elif sel.startswith("re:"):
            hit = _regex_hits(sel, names)
        else:
            hit = [sel] if graph.has_node(sel) else []
        if not hit:
            raise BadInput(f"pin selector {sel!r} matches no node of the model")
        for n in hit:
            picked.setdefault(n, sel)
    return picked


def _regex_hits(sel: str, names: list[str]) -> list[str]:
    """The names a ``re:`` selector fully matches, within SELECTOR_MATCH_SECONDS for all of them: the ``regex``
    engine (Python's ``re`` syntax) takes a timeout, so a pattern that backtracks catastrophically (``^(a+)+$`` on
    a long name) is one line, not a run that never ends."""
    import regex

    seconds = limit("SELECTOR_MATCH_SECONDS")
    try:
        rx = regex.compile(sel[3:])
    except (regex.error, RecursionError, OverflowError) as exc:
        raise BadInput(f"bad regex in pin selector {sel!r}: {exc}") from None
    deadline = time.monotonic() + seconds
    hit = []
    try:
        for n in names:
            if rx.fullmatch(n, timeout=max(deadline - time.monotonic(), 1e-3)):
                hit.append(n)
    except TimeoutError:
        raise BadInput(f"pin selector {sel!r} took more than {seconds:g} s to match {len(names)} node names (a pattern "
                       f"that backtracks, such as nested repeats); simplify it, or {raise_hint('SELECTOR_MATCH_SECONDS')}"
                       ) from None
    return hit

