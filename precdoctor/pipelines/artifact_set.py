"""What ``bisect`` leaves in ``--out``, written as one set: the artifacts, the references and verify
scripts, pins.json, the rewritten model, the report and run.json.

Everything goes into a staging folder and moves into place together at the end (run.json last), so a
failure leaves the previous set whole. The report is rendered from the record run.json holds; ``--json``
gets the same record, written just before the move.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import acceptance as acc
from ..artifacts import FILES, write_artifacts
from ..destinations import Staging
from ..files import dump_json
from ..limits import REFERENCE_MAX_BYTES
from ..mixed import constants_note
from ..pinsfile import PinsFile
from ..plan import Plan
from ..rewrite.artifacts import FILES as REWRITE_FILES
from ..rewrite.artifacts import MIXED as REWRITTEN_MIXED
from ..rewrite.artifacts import MODEL as REWRITTEN_MODEL
from ..rewrite.artifacts import write as write_rewrite
from ..runs import BisectRun
from ..targets import describe
from ..verification import FILES as VERIFY_FILES
from ..verification import OWNED_DIRS, PlanToCheck, write_verification
from .common import Clock

if TYPE_CHECKING:
    from .job import Job

RUN_FILES = ("pins.json", "run.json", "index.html") + tuple(f for files in FILES.values() for f in files) + VERIFY_FILES + REWRITE_FILES


def _plans(job: Job, record: BisectRun, plan: Plan, fixed) -> list[PlanToCheck]:
    """The plans the checks cover: the verdict's first. A rewrite that is the verdict leads, with the pins as its
    alternative where the pin search fixed the model on its own; else the pins (the naive plan when none passed)."""
    pins = PlanToCheck("verdict", "pins", job.graph, plan, job.p.subject, "model.mixed.onnx", record.tf32.allowed)
    w = record.rewrite
    if fixed is None or fixed.graph is None or w is None or not w.applied:
        return [pins]
    rewritten = PlanToCheck("verdict", "rewrite", fixed.graph, fixed.plan, REWRITTEN_MODEL, REWRITTEN_MIXED,
                            w.tf32.allowed if w.tf32 is not None else record.tf32.allowed)
    return [rewritten] + ([replace(pins, role="alternative")] if fixed.pins_fixed else [])


def _write_verification(job: Job, record: BisectRun, plan: Plan, stage: Path, fixed=None) -> tuple[str, list[str]]:
    """reference/ and the verify scripts, for the plans ``_plans`` names; returns the Polygraphy commands that check the
    pins on the same references (polygraphy.txt)."""
    refs = [ref for ref, _ in job.compare(Plan(job.fmt.name)).pairs]
    beyond = [c.text() for c in job.task_criteria] + ([acc.INSIDE] if job.inside else [])
    record.verification, polygraphy = write_verification(stage, _plans(job, record, plan, fixed), job.samples, refs,
                                                         job.output_criteria, beyond, record.target, job.p.engine.options(),
                                                         relative_to=job.outdir)
    v = record.verification
    if v.samples < v.of_samples:
        record.warnings.append(f"reference/ holds {v.samples} of the {v.of_samples} samples, evenly spread (all of them would "
                               f"pass {REFERENCE_MAX_BYTES >> 20} MB): the verify scripts check those")
    return polygraphy


def _pins_file(job: Job, record: BisectRun, plan: Plan) -> PinsFile:
    return PinsFile(plan.precision, sorted(plan.pins), {k: plan.why[k] for k in sorted(plan.why)}, dict(record.artifacts.forced),
                    model=os.path.relpath(Path(job.p.subject).resolve(), job.outdir.resolve()), accept=record.accept,
                    verdict=record.verdict, one_minimal=record.one_minimal, evaluations=record.evaluations,
                    casts=record.artifacts.casts, profile=record.engine.profile, backend=record.engine.backend,
                    warnings=list(record.warnings), target=record.target, assumptions=describe(job.p.engine.options()),
                    constants=constants_note(plan.format), tf32=record.tf32.allowed,
                    targets={t.target: t.plan_word() for t in record.targets})


def write_set(job: Job, record: BisectRun, plan: Plan, clock: Clock, fixed=None) -> None:
    """See the module docstring; ``record`` gets the names of what was written, and the timing."""
    outdir = job.outdir
    with Staging(outdir, owned=RUN_FILES, marker="run.json", owned_dirs=OWNED_DIRS) as stage:
        polygraphy = _write_verification(job, record, plan, stage.dir, fixed)
        record.artifacts = write_artifacts(stage.dir, job.p.subject, job.graph, plan, relative_to=outdir, tf32=record.tf32.allowed,
                                           polygraphy=polygraphy)
        record.artifacts.verify_trt11, record.artifacts.verify_trt10 = record.verification.scripts
        record.warnings += [f"{fmt} cannot name {len(names)} pinned node(s) exactly; see {getattr(record.artifacts, fmt)}"
                            for fmt, names in record.artifacts.unexpressible.items()]
        dump_json(stage.dir / "pins.json", _pins_file(job, record, plan))
        if fixed is not None and fixed.graph is not None:
            record.rewrite.files = write_rewrite(stage.dir, fixed.graph, fixed.plan, len(record.rewrite.rewrites))
        if job.p.report:
            record.artifacts.report = "index.html"
        record.timing = clock.timing()
        if job.p.report:
            from ..report import render_to

            render_to(record, stage.dir / "index.html", stage.dir)
        dump_json(stage.dir / "run.json", record)
        if job.p.json_out:  # before the set moves in: a --json that cannot be written leaves the previous set whole
            dump_json(job.p.json_out, record)
        stage.commit()
