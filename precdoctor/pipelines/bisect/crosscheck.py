"""The searched plan beyond the search's own assumptions: with TF32 in its FP32 islands, and under the other targets.

The search computes FP32 islands in true FP32 (what ``--noTF32`` guarantees). A target
that computes them in TF32 by default (all three do) then gets the final plan checked
with TF32: if it still passes, the commands leave TF32 on (and say so); if not, they
turn it off. Then the naive and the final plan are judged under every other target's
assumptions (targets.py), so the report can say where the verdicts differ. Both
checks judge the output criteria on the graph outputs (the task metric and
finite-inside confirm the plan under the run's own target only). Each verdict is journaled
beside the search's (``journal.targets.jsonl``), so a repeated or resumed run replays them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ...analysis import acceptance as acc
from ...core import progress
from ...backends.emulate import EmulationBackend
from ...numerics.emulation import EmulationOptions
from ...graph import GraphView
from ...core.ops import TF32_INPUTS
from ...planning.plan import Plan
from ...core.recordlog import RecordLog
from ...core.records import Record
from ...runs import TargetVerdict, Tf32Check
from ...numerics.schema import fp32_nodes
from ...search import fingerprint
from ...numerics.targets import TARGETS, describe
from .job import Job

log = logging.getLogger("precdoctor")


@dataclass
class TargetEvaluation(Record):
    """One plan judged under one set of engine assumptions, as the journal keeps it."""

    assumptions: str  # repr of the EmulationOptions: every field, so no two option sets share an entry
    pins: list[str]
    verdict: acc.Verdict


class TargetJournal(RecordLog):
    RECORD, HEADER, NAME = TargetEvaluation, {"journal": "precdoctor bisect, other targets"}, "journal"

    def key(self, entry: TargetEvaluation) -> tuple:
        return entry.assumptions, tuple(sorted(entry.pins))


def _journal(job: Job) -> TargetJournal:
    if job.target_journal is None:
        job.target_journal = TargetJournal(job.journal_path("targets"), fingerprint(job.fingerprint(), "targets"))
    return job.target_journal


def _judge(job: Job, options: EmulationOptions, pins) -> acc.Verdict:
    journal = _journal(job)
    key = (repr(options), tuple(sorted(pins)))
    if key in journal.entries:
        return journal.entries[key].verdict
    verdict = job.judge_plan(pins, job.references(), EmulationBackend(options, job.p.engine.memory_budget_gb))
    journal.append(TargetEvaluation(key[0], list(key[1]), verdict))
    progress.step()
    return verdict


def tf32_islands(graph: GraphView, plan: Plan) -> list[str]:
    return sorted(n for n in fp32_nodes(graph, plan) if graph.node(n).op_type in TF32_INPUTS)


def check_tf32(job: Job, plan: Plan, passed: bool) -> Tf32Check:
    """Decide the TF32 choice of the commands for ``plan`` (see the module docstring)."""
    wanted = job.p.engine.options()
    islands = tf32_islands(job.graph, plan)
    if job.p.engine.backend != "emulate":
        return Tf32Check(False, False, islands, note=f"verified on {job.p.engine.backend} with TF32 off: the commands turn it off")
    if not wanted.tf32:
        return Tf32Check(False, False, islands, note="the target (or --no-tf32) computes FP32 islands in true FP32: TF32 off")
    if not islands or not passed:
        why = "no MatMul/Gemm/Conv is computed in FP32" if not islands else "no plan passed"
        return Tf32Check(True, False, islands, note=f"TF32 left on: {why}")
    v = _judge(job, wanted, plan.pins)
    log.info(f"TF32 in the {len(islands)} FP32 inner product(s): {'PASS' if v.passed else 'fail'}")
    note = ("the plan holds with TF32 in its FP32 islands: TF32 left on" if v.passed else
            f"with TF32 in its FP32 islands the plan fails ({', '.join(v.failed)}): the commands turn TF32 off")
    return Tf32Check(v.passed, True, islands, v.failed, v.measures, note)


def other_targets(job: Job, plan: Plan, passed: bool, tf32: Tf32Check, naive_passed: bool,
                  what: str = "this plan") -> list[TargetVerdict]:
    """Every target's verdicts on the naive plan and on ``plan``; the run's own first. ``what``: how the progress lines
    name ``plan`` (a rewritten model's plan is not the run's pins, and its naive plan is the original's)."""
    if job.p.engine.backend != "emulate":
        return []
    own = replace(job.p.engine.options(), tf32=job.p.engine.options().tf32 and tf32.allowed)
    rows = [TargetVerdict(job.p.engine.target_name, describe(own), naive_passed, passed, own=True)]
    for name, t in TARGETS.items():
        if name == job.p.engine.target_name:
            continue
        options = replace(t.options(), tf32=t.tf32 and tf32.allowed)  # the commands' TF32 choice holds everywhere
        if options == own:
            rows.append(TargetVerdict(name, describe(options), naive_passed, passed))
            continue
        naive = _judge(job, options, ())
        v = _judge(job, options, plan.pins) if plan.pins else naive
        log.info(f"target {name}: {what}: {'PASS' if v.passed else 'fail'}" if what.startswith("the rewritten") else
                 f"target {name}: naive {'PASS' if naive.passed else 'fail'}, {what} {'PASS' if v.passed else 'fail'}")
        rows.append(TargetVerdict(name, describe(options), naive.passed, v.passed, v.failed))
    return rows
