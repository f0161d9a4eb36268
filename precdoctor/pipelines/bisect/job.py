"""What the stages of one bisect share, built once: the model under test loaded, its samples (or a task's
clips, with their transcript cache), the backend, the acceptance, the output folder, and each plan's comparison.

A rewritten graph (fix.py) is the same job with another graph and a ``variant`` of its own, so its
evaluations journal apart and its comparisons are its own.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from ... import __version__
from ...core import progress
from ...analysis import acceptance as acc
from ...backends import Backend
from ...analysis.comparison import Comparison
from ...analysis.comparisonlog import ComparisonLog, RangeLog, StoredRanges
from ...analysis.controlflow import compare_plan, scan_ranges
from ...core.errors import BadInput
from ...core.files import ensure_dir
from ...core.formats import Format
from ...graph import GraphView, concrete_shapes, external_files, node_flops
from ...planning.plan import Plan
from ...core.recordlog import RecordLog
from ...runs import InputInfo
from ...search import Localization, code_digest, fingerprint, rank
from ...tasks.cache import TranscriptStore
from ...tasks.judge import TOKEN_AGREEMENT, TaskJudge
from ..common import check_sizes, gather, load_graph
from .params import BisectParams

log = logging.getLogger("precdoctor")
TRANSCRIPTS = "transcripts.jsonl"  # the task's transcripts kept across runs in --out (tasks/cache.py)


def _samples_digest(samples) -> str:
    h = hashlib.sha256()
    for s in samples:
        for k in sorted(s):
            h.update(k.encode())
            h.update(str(s[k].shape).encode())
            h.update(s[k].tobytes())
    return h.hexdigest()[:16]


@dataclass
class Job:
    """See the module docstring."""

    p: BisectParams
    graph: GraphView
    samples: list[dict]
    backend: Backend
    output_criteria: list[acc.Criterion]
    task_criteria: list[acc.Criterion]
    inside: bool  # finite-inside confirms the plan
    outdir: Path
    judge: TaskJudge | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # plan key -> its comparison (each plan compared once)
    variant: str = ""  # a rewritten graph's (fix.py): its own journals and fingerprint
    absorbed: frozenset = frozenset()  # a rewritten graph's tensors whose Inf a floor takes by design (log 0 -> max): not judged
    target_journal: RecordLog | None = None  # crosscheck.TargetJournal, opened on first use
    comparison_log: ComparisonLog | None = None  # comparisons kept across runs, opened on first use
    # the FP32 outputs of the model under test per sample, what every plan is judged against: from the naive plan's
    # comparison on first use; a rewritten graph's job (fix.py) is given the original's
    fp32_outputs: list[dict] | None = field(default=None, repr=False)

    def references(self) -> list[dict]:
        """The FP32 reference outputs, one dict per sample (see ``fp32_outputs``), computed once per job."""
        if self.fp32_outputs is None:
            self.fp32_outputs = [ref for ref, _ in self.compare(Plan(self.fmt.name)).pairs]
        return self.fp32_outputs

    def compare(self, plan: Plan) -> Comparison:
        """The plan compared tensor by tensor: once per run, and replayed from an earlier run of the same fingerprint."""
        key = plan.key()
        if key not in self.comparisons:
            if self.comparison_log is None:
                self.comparison_log = ComparisonLog(self.journal_path("comparisons"), self.fingerprint())
            c = self.comparison_log.get(key)
            if c is None:
                c = compare_plan(self.graph, plan, self.samples, self.backend)
                self.comparison_log.put(key, c)
            else:
                progress.step(note="replayed from the journal")
                log.info(f"{plan.precision} plan with {len(plan.pins)} pin(s): comparison replayed from {self.comparison_log.path.name}")
            c.tensors = [t for t in c.tensors if t.tensor not in self.absorbed]
            self.comparisons[key] = c
        return self.comparisons[key]

    @cached_property
    def plan_runners(self):
        """The runner of each plan the search judges: the backend's, one session for every plan where it can (gating.py);
        on Ray actors with --workers/--ray-address (distributed.py)."""
        if self.p.scale.distributed and self.backend.name == "emulate" and not self.variant:  # a rewritten graph: here
            from ...backends.distributed import RayRunners

            return RayRunners(self.graph, self.samples, self.backend, self.p.scale)
        return self.backend.runners(self.graph, self.samples)

    def close(self) -> None:
        """Give back what the job holds beyond this process (Ray actors): their CPU or GPU slots serve the next job."""
        runners = self.__dict__.get("plan_runners")
        if runners is not None and hasattr(runners, "close"):
            runners.close()

    @cached_property
    def node_flops(self) -> dict[str, int]:
        """FLOPs per node on the first sample's shapes (what the report and the costs of pins and rewrites count)."""
        return node_flops(self.graph, concrete_shapes(self.graph, self.samples[0]))

    def judge_plan(self, pins, refs: list[dict], backend: Backend | None = None) -> acc.Verdict:
        """The output criteria for the plan pinning ``pins``, run on ``backend`` (the job's own by default) over every
        sample, against the FP32 outputs ``refs``."""
        plan = Plan(self.fmt.name, frozenset(pins))
        if backend is None:
            outs = self.plan_runners.outputs(plan)
        else:
            runner = backend.runner(self.graph, plan, self.samples)
            outs = [runner(s) for s in self.samples]
        return acc.judge_outputs(self.output_criteria, list(zip(refs, outs)), self.graph.outputs)

    def submit_plan(self, pins):
        """Start the plan's evaluation on workers that would idle (distributed.py), or None where the runners cannot."""
        submit = getattr(self.plan_runners, "submit", None)
        return None if submit is None else submit(Plan(self.fmt.name, frozenset(pins)))

    def finish_plan(self, handle, refs: list) -> acc.Verdict:
        """The output criteria on a plan started by ``submit_plan``."""
        return acc.judge_outputs(self.output_criteria, list(zip(refs, self.plan_runners.collect(handle))), self.graph.outputs)

    def capacity(self) -> int:
        """Plans the runners can evaluate at once."""
        return getattr(self.plan_runners, "capacity", lambda: 1)()

    def localize(self, naive: Comparison) -> tuple[dict, Localization]:
        """The FP32 ranges (replayed from an earlier run of the same fingerprint) and the ranked candidates
        (search.Localization) from the naive plan's comparison, with constants judged as the target converts them."""
        ranges = self.ranges()
        return ranges, rank(self.graph, naive, self.fmt, ranges, self.p.engine.options().constants)

    def ranges(self) -> dict:
        journal = RangeLog(self.journal_path("ranges"), self.fingerprint())
        stored = journal.entries.get(self.fmt.name)
        if stored is not None:
            progress.step(note="replayed from the journal")
            log.info(f"FP32 ranges replayed from {journal.path.name}")
            return stored.ranges
        ranges, _ = scan_ranges(self.graph, self.samples, self.fmt)
        journal.append(StoredRanges(self.fmt.name, ranges))
        return ranges

    def accept(self) -> list[str]:
        return ([c.text() for c in self.output_criteria + self.task_criteria] + ([acc.INSIDE] if self.inside else [])
                + ([f"check: {self.p.check_cmd}"] if self.p.check_cmd is not None else []))

    @property
    def fmt(self) -> Format:
        return Plan(self.p.precision).format

    def journal_path(self, kind: str = "") -> Path:
        """Where this job journals its verdicts of one ``kind`` (the search's, ``confirm``, ``targets``): a rewritten
        graph's variant journals apart."""
        return self.outdir / ".".join(["journal", *([self.variant] if self.variant else []), *([kind] if kind else []), "jsonl"])

    def fingerprint(self) -> str:
        """What the journal's verdicts were judged on: code, model (its bytes, external weights included), samples,
        format, acceptance, engine, variant. Once per job: it reads the model and its weights (a rewritten graph's job
        is another Job, with its own)."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        return fingerprint(__version__, code_digest(), self.p.subject, *external_files(self.p.subject),
                           _samples_digest(self.samples), self.fmt.name,
                           acc.describe(self.output_criteria) + (f", {acc.INSIDE}" if self.inside else ""),
                           self.backend.info().to_json(), self.variant)


def setup(p: BisectParams) -> tuple[Job, InputInfo, list[str]]:
    """The job, what its inputs were, and the warnings gathering them gave; the output folder is made last."""
    output_criteria, task_criteria, inside = p.criteria()
    graph = load_graph(p.subject)
    acc.check_outputs(output_criteria, graph.outputs, [o for o in graph.outputs if graph.is_float(o)])
    judge, warnings = None, []
    if p.task is not None:
        from ...tasks.make import make_judge
        from ...tasks.placement import of_engine

        judge = make_judge(graph, p.model, p.task, of_engine(p.engine))
        if not judge.decodes and any(c.metric == TOKEN_AGREEMENT for c in task_criteria):
            raise BadInput(f"--accept {TOKEN_AGREEMENT}>=X needs a task that decodes tokens in a loop (--task whisper)")
        if (Path(p.out) / TRANSCRIPTS).is_file():  # a repeated run: FP32's transcripts are kept there already
            judge.keep(_transcript_store(judge, p, Path(p.out)))
        judge.check_baseline(p.task.force)  # before any comparison or search: a broken FP32 setup is refused here
        samples = judge.samples()
        check_sizes(graph, samples)
        info = InputInfo(len(samples), "task")
    else:
        samples, info, warnings = gather(graph, p.inputs)
    # the search computes FP32 islands in true FP32; crosscheck.check_tf32 then decides what the commands say about TF32
    backend = (replace(p.engine, tf32=False) if p.engine.backend == "emulate" else p.engine).make()
    outdir = ensure_dir(p.out)  # only now: a run refused for its input leaves no folder behind
    if judge is not None and judge.store is None:
        judge.keep(_transcript_store(judge, p, outdir))
    job = Job(p, graph, samples, backend, output_criteria, task_criteria, inside, outdir, judge)
    return job, info, warnings


def _transcript_store(judge: TaskJudge, p: BisectParams, outdir: Path) -> TranscriptStore:
    from ...tasks.cache import audio_digest

    fp = fingerprint(code_digest(), p.model, *external_files(p.model), *judge.files(), judge.task.describe(), audio_digest(judge.audio),
                     [c.text for c in judge.clips], p.engine, p.task.numbers, p.task.label_free)
    return TranscriptStore(outdir / TRANSCRIPTS, fp)
