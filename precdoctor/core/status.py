"""The kinds of result a command reaches, as types: one enum per kind, each member's value its word in run.json.

Members are ``str`` enums, so a run.json written before them reads back unchanged and a member equals its word;
code compares members, never words. What each verdict means for the exit code lives here too, once.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A status whose text (terminal, f-strings, JSON) is its value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class CompareVerdict(Status):
    """compare's verdict (verdicts.compare_verdict): the outputs judged, FP32's own NaN and hidden Inf/NaN accounted for."""

    OK = "ok"
    DIVERGES = "diverges"
    REFERENCE_NONFINITE = "reference-nonfinite"  # the FP32 reference itself is NaN at an output

    @property
    def failed(self) -> bool:
        return self is not CompareVerdict.OK


class SearchStatus(Status):
    """What the pin search found (search.strategy)."""

    HEALTHY = "healthy"  # the naive plan passes
    FIXED = "fixed"
    UNFIXED = "unfixed"  # no plan passed within the budget, or none can


class BisectVerdict(Status):
    """bisect's verdict: the search's, the rewrite stage's, or a plan that is the FP32 model (limits.MOSTLY_FP32_SHARE)."""

    HEALTHY = "healthy"
    FIXED = "fixed"
    MOSTLY_FP32 = "mostly-fp32"  # only a plan keeping (nearly) every node or FLOP in FP32 passes: a failure
    UNFIXED = "unfixed"

    @property
    def failed(self) -> bool:
        return self in (BisectVerdict.MOSTLY_FP32, BisectVerdict.UNFIXED)


class RewriteStatus(Status):
    """The rewrite stage's result (pipelines/bisect/fix.py)."""

    FIXED = "fixed"  # rewrites alone: every node in the low format
    PARTIAL = "partial"  # rewrites plus the pins they do not cover (auto)
    INSUFFICIENT = "insufficient"  # the rewrites alone do not meet the acceptance
    # the rewrites found would add a failure (a constant the format loses, a scan risk the original lacks, a
    # non-finite output on an edge input): never shipped
    REFUSED = "refused"
    NONE = "none"  # no rewrite applies

    @property
    def applied(self) -> bool:
        return self in (RewriteStatus.FIXED, RewriteStatus.PARTIAL)
