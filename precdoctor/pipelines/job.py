"""What the stages of one bisect share, built once: the model under test loaded, its samples (or a task's
clips, with their transcript cache), the backend, the acceptance, the output folder, and each plan's comparison.

A rewritten graph (fix.py) is the same job with another graph and a ``variant`` of its own, so its
evaluations journal apart and its comparisons are its own.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from .. import acceptance as acc
from ..comparison import compare_plan
from ..controlflow import scan_ranges
from ..errors import BadInput
from ..files import ensure_dir
from ..graph import concrete_shapes, node_flops
from ..plan import Plan
from ..runs import InputInfo
from ..search import code_digest, fingerprint, rank
from ..tasks.judge import TOKEN_AGREEMENT
from .common import gather, load_graph

if TYPE_CHECKING:
    from .bisect import BisectParams


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
    graph: object
    samples: list
    backend: object
    output_criteria: list
    task_criteria: list
    inside: bool  # finite-inside confirms the plan
    outdir: Path
    judge: object = None  # tasks.judge.TaskJudge
    comparisons: dict = field(default_factory=dict)  # plan key -> Comparison (each plan compared tensor by tensor once)
    variant: str = ""  # a rewritten graph's (fix.py): its own journals and fingerprint
    absorbed: frozenset = frozenset()  # a rewritten graph's tensors whose Inf a floor takes by design (log 0 -> max): not judged
    target_journal: object = None  # crosscheck.TargetJournal, opened on first use

    def compare(self, plan: Plan):
        if plan.key() not in self.comparisons:
            c = compare_plan(self.graph, plan, self.samples, self.backend)
            c.tensors = [t for t in c.tensors if t.tensor not in self.absorbed]
            self.comparisons[plan.key()] = c
        return self.comparisons[plan.key()]

    @cached_property
    def plan_runners(self):
        """The runner of each plan the search judges: the backend's, one session for every plan where it can (gating.py);
        on Ray actors with --workers/--ray-address (distributed.py)."""
        if self.p.scale.distributed and self.backend.name == "emulate" and not self.variant:  # a rewritten graph: here
            from ..distributed import RayRunners

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

    def judge_plan(self, pins, refs: list, backend=None) -> acc.Verdict:
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

    def localize(self, naive) -> tuple[dict, object]:
        """The FP32 ranges and the ranked candidates (search.Localization) from the naive plan's comparison, with
        constants judged as the target converts them."""
        ranges, _ = scan_ranges(self.graph, self.samples, self.fmt)
        return ranges, rank(self.graph, naive, self.fmt, ranges, self.p.engine.options().constants)

    def accept(self) -> list[str]:
        return [c.text() for c in self.output_criteria + self.task_criteria] + ([acc.INSIDE] if self.inside else [])

    @property
    def fmt(self):
        return Plan(self.p.precision).format

    def journal_path(self, kind: str = "") -> Path:
        """Where this job journals its verdicts of one ``kind`` (the search's, ``confirm``, ``targets``): a rewritten
        graph's variant journals apart."""
        return self.outdir / ".".join(["journal", *([self.variant] if self.variant else []), *([kind] if kind else []), "jsonl"])

    def fingerprint(self) -> str:
        """What the journal's verdicts were judged on: code, model, samples, format, acceptance, engine, variant."""
        return fingerprint(__version__, code_digest(), self.p.subject, _samples_digest(self.samples), self.fmt.name,
                           acc.describe(self.output_criteria) + (f", {acc.INSIDE}" if self.inside else ""),
                           self.backend.info().to_json(), self.variant)


def setup(p: BisectParams) -> tuple[Job, InputInfo, list[str]]:
    """The job, what its inputs were, and the warnings gathering them gave; the output folder is made last."""
    output_criteria, task_criteria, inside = p.criteria()
    graph = load_graph(p.subject)
    acc.check_outputs(output_criteria, graph.outputs, [o for o in graph.outputs if graph.is_float(o)])
    judge, warnings = None, []
    if p.task is not None:
        from ..tasks.judge import make_judge

        judge = make_judge(graph, p.model, p.task)
        if not judge.decodes and any(c.metric == TOKEN_AGREEMENT for c in task_criteria):
            raise BadInput(f"--accept {TOKEN_AGREEMENT}>=X needs a task that decodes tokens in a loop (--task whisper)")
        samples = judge.samples()
        info = InputInfo(len(samples), "task")
    else:
        samples, info, warnings = gather(graph, p.inputs)
    # the search computes FP32 islands in true FP32; crosscheck.check_tf32 then decides what the commands say about TF32
    backend = (replace(p.engine, tf32=False) if p.engine.backend == "emulate" else p.engine).make()
    outdir = ensure_dir(p.out)  # only now: a run refused for its input leaves no folder behind
    if judge is not None:
        judge.store = _transcript_store(judge, p, outdir)
    job = Job(p, graph, samples, backend, output_criteria, task_criteria, inside, outdir, judge)
    return job, info, warnings


def _transcript_store(judge, p: BisectParams, outdir: Path):
    from ..tasks.cache import TranscriptStore, audio_digest

    fp = fingerprint(code_digest(), p.model, *judge.files(), judge.task.describe(), audio_digest(judge.audio),
                     [c.text for c in judge.clips], p.engine, p.task.numbers, p.task.label_free)
    return TranscriptStore(outdir / "transcripts.jsonl", fp)
