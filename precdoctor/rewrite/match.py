"""The matcher core: every family's patterns, kept where they hold a localized culprit.

Families are tried in a fixed order (most specific first); a candidate that
touches a node an earlier one already changes is left out, so the rewrites of
one run never edit the same node twice. What a family matches is decided by
graph structure and FP32 ranges, never by names: the culprits (the pins the
search found and the suspects its evidence named) only say where to look.
Every constant a candidate creates or rescales must be one the engine's
conversion holds (Context.unheld); a candidate that loses one is refused,
with the constant named, in ``Context.refused``.
"""
from __future__ import annotations

from . import activations, epsilon, norm_scale, residual, softmax
from .core import Candidate, Context, created_constants

FINDERS = (residual.find, norm_scale.find, softmax.find, activations.find, epsilon.find)  # a stream past the range first: its norms follow


def match(ctx: Context) -> list[Candidate]:
    """The candidates whose subgraph holds a culprit, in the graph's order, pairwise disjoint in what they touch."""
    found = []
    for c in (c for find in FINDERS for c in find(ctx) if set(c.record.nodes) & ctx.culprits):
        lost = ctx.unheld(*created_constants(ctx.graph, c))
        if lost:
            ctx.refused[c.id] = "a constant it creates is lost in the format: " + "; ".join(lost)
        else:
            found.append(c)
    chosen, taken = [], set()
    for c in found:
        if c.touches & taken:
            continue
        chosen.append(c)
        taken |= c.touches
    order = {n.name: k for k, n in enumerate(ctx.graph.nodes)}
    return sorted(chosen, key=lambda c: order.get(c.record.anchor, len(order)))
