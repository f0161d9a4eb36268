"""What ``bisect`` leaves in ``--out``, written as one set: the artifacts, the references and verify
scripts, pins.json, the rewritten model, the report and run.json.

Everything goes into a staging folder and moves into place together at the end (run.json last), so a
failure leaves the previous set whole. ``write`` returns what it wrote, so the run builds its record once,
last; ``seal`` writes pins.json, the report (rendered from that record), run.json and ``--json`` (just
before the move), then moves the set in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...analysis import acceptance as acc
from ...ship.artifacts import FILES, Artifacts, write_artifacts
from ...core.destinations import Staging, check_output_dir, check_output_file, check_outside_set, check_owned_dirs, check_set
from ...core.files import dump_json
from ...core.limits import REFERENCE_MAX_BYTES
from ...numerics.mixed import constants_note
from ...planning.pinsfile import PinsFile
from ...planning.plan import Plan
from ...rewrite.shipped import FILES as REWRITE_FILES
from ...rewrite.shipped import MIXED as REWRITTEN_MIXED
from ...rewrite.shipped import MODEL as REWRITTEN_MODEL
from ...rewrite.shipped import write as write_rewrite
from ...runs import BisectRun, RewriteResult
from ...numerics.targets import describe
from ...ship.verification import FILES as VERIFY_FILES
from ...ship.verification import OWNED_DIRS, PlanToCheck, Verification, write_verification
from .fix import Fixed
from .job import Job
from .params import BisectParams

RUN_STATE = ("journal*.jsonl", "transcripts*.jsonl", ".precdoctor*")  # what a rerun in --out reads back: journals, caches, lock
RUN_FILES = ("pins.json", "run.json", "index.html") + tuple(f for files in FILES.values() for f in files) + VERIFY_FILES + REWRITE_FILES


def refuse_destinations(p: BisectParams) -> None:
    """The output folder and ``--json``, refused before any work where they would overwrite an input or a foreign file
    (``--json`` may not name a file of the set, a journal, a cache or the lock either)."""
    check_output_dir(p.out)
    reads = p.reads()
    check_set(p.out, RUN_FILES, keep=reads)
    check_owned_dirs(p.out, OWNED_DIRS)
    check_output_file(p.json_out, keep=reads)
    check_outside_set(p.json_out, p.out, RUN_FILES + tuple(OWNED_DIRS), RUN_STATE)


@dataclass
class Written:
    """What ``ArtifactSet.write`` put in the set, for the run record."""

    artifacts: Artifacts
    verification: Verification
    warnings: list[str] = field(default_factory=list)  # what writing found: a subset of samples, names a format cannot express
    rewrite: RewriteResult | None = None  # the rewrite stage's result with the files it wrote


def _plans(job: Job, plan: Plan, tf32: bool, fixed: Fixed | None) -> list[PlanToCheck]:
    """The plans the checks cover: the verdict's first. A rewrite that is the verdict leads, with the pins as its
    alternative where the pin search fixed the model on its own; else the pins (the naive plan when none passed)."""
    pins = PlanToCheck("verdict", "pins", job.graph, plan, job.p.subject, "model.mixed.onnx", tf32)
    w = fixed.result if fixed is not None else None
    if fixed is None or fixed.graph is None or w is None or not w.applied:
        return [pins]
    rewritten = PlanToCheck("verdict", "rewrite", fixed.graph, fixed.plan, REWRITTEN_MODEL, REWRITTEN_MIXED,
                            w.tf32.allowed if w.tf32 is not None else tf32)
    return [rewritten] + ([replace(pins, role="alternative")] if fixed.pins_fixed else [])


def _write_verification(job: Job, plan: Plan, stage: Path, tf32: bool, fixed: Fixed | None
                        ) -> tuple[Verification, list[str], list[str]]:
    """reference/ and the verify scripts, for the plans ``_plans`` names: (what was written, the Polygraphy commands that
    check the pins on the same references (polygraphy.txt), warnings)."""
    beyond = [c.text() for c in job.task_criteria] + ([acc.INSIDE] if job.inside else [])
    v, polygraphy = write_verification(stage, _plans(job, plan, tf32, fixed), job.samples, job.references(),
                                       job.output_criteria, beyond, job.p.engine.target_name, job.p.engine.options(),
                                       relative_to=job.outdir)
    if v.samples < v.of_samples:
        return v, polygraphy, [f"reference/ holds {v.samples} of the {v.of_samples} samples, evenly spread (all of them "
                               f"would pass {REFERENCE_MAX_BYTES >> 20} MB): the verify scripts check those"]
    return v, polygraphy, []


def _pins_file(job: Job, record: BisectRun, plan: Plan) -> PinsFile:
    return PinsFile(plan.precision, sorted(plan.pins), {k: plan.why[k] for k in sorted(plan.why)}, dict(record.artifacts.forced),
                    model=os.path.relpath(Path(job.p.subject).resolve(), job.outdir.resolve()), accept=record.accept,
                    verdict=record.verdict, one_minimal=record.one_minimal, evaluations=record.evaluations,
                    casts=record.artifacts.casts, profile=record.engine.profile, backend=record.engine.backend,
                    warnings=list(record.warnings), target=record.target, assumptions=describe(job.p.engine.options()),
                    constants=constants_note(plan.format), tf32=record.tf32.allowed,
                    targets={t.target: t.plan_word() for t in record.targets})


class ArtifactSet:
    """The set being written into a staging folder (see the module docstring); a context manager: leaving it before
    ``seal`` (an error) leaves the previous set whole."""

    def __init__(self, job: Job):
        self.job = job
        self._staging = Staging(job.outdir, owned=RUN_FILES, marker="run.json", owned_dirs=OWNED_DIRS)

    def __enter__(self) -> ArtifactSet:
        self.stage = self._staging.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return self._staging.__exit__(*exc)

    def write(self, plan: Plan, tf32: bool, fixed: Fixed | None) -> Written:
        """The artifacts for ``plan`` (TF32 left on in the commands when ``tf32``), the references and verify scripts, the
        rewritten model."""
        job, stage = self.job, self.stage
        verification, polygraphy, warnings = _write_verification(job, plan, stage.dir, tf32, fixed)
        artifacts = write_artifacts(stage.dir, job.p.subject, job.graph, plan, relative_to=job.outdir, tf32=tf32,
                                    polygraphy=polygraphy)
        artifacts.verify_trt11, artifacts.verify_trt10 = verification.scripts
        warnings += [f"{fmt} cannot name {len(names)} pinned node(s) exactly; see {getattr(artifacts, fmt)}"
                     for fmt, names in artifacts.unexpressible.items()]
        rewrite = fixed.result if fixed is not None else None
        if fixed is not None and fixed.graph is not None:
            rewrite = replace(fixed.result, files=write_rewrite(stage.dir, fixed.graph, fixed.plan, len(fixed.result.rewrites)))
        if job.p.report:
            artifacts.report = "index.html"
        return Written(artifacts, verification, warnings, rewrite)

    def seal(self, record: BisectRun, plan: Plan) -> None:
        """pins.json, the report and run.json from the finished ``record``, ``--json``; then the set moves in."""
        job, stage = self.job, self.stage
        dump_json(stage.dir / "pins.json", _pins_file(job, record, plan))
        if job.p.report:
            from ...report import render_to

            render_to(record, stage.dir / "index.html", stage.dir)
        dump_json(stage.dir / "run.json", record)
        if job.p.json_out:  # before the set moves in: a --json that cannot be written leaves the previous set whole
            dump_json(job.p.json_out, record)
        stage.commit()
