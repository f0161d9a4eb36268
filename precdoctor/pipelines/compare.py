"""``precdoctor compare``: the plan against FP32, every float tensor compared.

With a task (``--task``/``--data``) the samples are the task's inputs on its first proxy clips;
with a decode loop (Whisper) those clips are decoded too, the plan against FP32, and reported. A
departing decode does not change the verdict by itself: in BF16 a healthy decoder flips near-tied
tokens ("If" / "if") without any loss of WER; the task metric judges that (bisect's ``--accept``).
With ``--under-test decoder`` the decoder is the model under test and the samples are its inputs at
every step of FP32's decode (tasks/decoder_judge.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core import progress
from ..backends import EngineParams
from ..analysis.comparison import Tolerance
from ..analysis.controlflow import compare_plan
from ..core.destinations import check_output_file
from ..core.errors import BadInput
from ..core.files import dump_json
from ..planning.inputs import InputSpec
from ..planning.pinsfile import build_plan
from ..planning.plan import PRECISIONS, config_name
from ..runs import CompareRun, InputInfo
from ..tasks.registry import TaskParams
from ..analysis.verdicts import compare_verdict, warnings_of
from .common import Clock, Loaded, begin, load_graph, refuse_empty_outputs, versions


@dataclass(frozen=True)
class CompareParams:
    model: str
    precision: str = "fp16"
    inputs: InputSpec = field(default_factory=InputSpec)
    pins: tuple[str, ...] = ()  # selectors
    pin_files: tuple[str, ...] = ()
    engine: EngineParams = field(default_factory=EngineParams)
    tolerance: Tolerance = field(default_factory=Tolerance)
    json_out: str | None = None
    allow_internal_nonfinite: bool = False  # new Inf/NaN inside the graph that the outputs do not show: not a failure
    task: TaskParams | None = None  # samples from the task's proxy clips, and their decode judged
    report_out: str | None = None  # the HTML report of this comparison, written with the record

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        check_tolerance(self.tolerance)
        self.inputs.check()
        self.engine.check()
        if self.task is not None:
            if not self.inputs.random or self.inputs.shapes:
                raise BadInput("--task gives compare its samples (the task's clips): leave out --inputs and --input-shapes")
            self.task.check()
            self.task.check_files(self.model)
        task_files = self.task.reads(self.model) if self.task is not None else ()
        reads = (self.model, *task_files, *self.inputs.files, *self.pin_files)
        check_output_file(self.json_out, keep=reads)
        check_output_file(self.report_out, keep=reads + ((self.json_out,) if self.json_out else ()))


def check_tolerance(tol: Tolerance) -> None:
    for name, value in (("--rtol", tol.rel_l2), ("--atol", tol.atol)):
        if value is not None and (math.isnan(value) or value < 0):
            raise BadInput(f"{name} must be 0 or more, not {value}")


def _begin_task(p: CompareParams) -> Loaded:
    """The model under test and the task's samples: the first proxy clips of the dataset, no more."""
    from ..tasks.make import make_judge
    from ..tasks.placement import of_engine

    clock = Clock()
    task = replace(p.task, limit=min(p.task.limit or p.task.proxy_clips, p.task.proxy_clips))
    model = task.under_test(p.model)
    graph = load_graph(model)
    judge = make_judge(graph, p.model, task, of_engine(p.engine))
    judge.check_baseline(task.force)  # before the comparison: a broken FP32 setup is refused here
    samples = judge.samples()
    return Loaded(clock, model, graph, samples, InputInfo(len(samples), "task"), [], judge)


def run(p: CompareParams) -> CompareRun:
    p.check()
    loaded = _begin_task(p) if p.task is not None else begin(p.model, p.inputs)
    clock, model, graph, judge, samples, info, warnings = (loaded.clock, loaded.model, loaded.graph, loaded.judge, loaded.samples,
                                                           loaded.info, loaded.warnings)
    plan = build_plan(graph, p.precision, p.pins, p.pin_files)
    backend = p.engine.make()
    clock.lap("load")
    with progress.stage(f"{config_name(plan.precision, plan.pins)} comparison", unit="pass"):
        comparison = compare_plan(graph, plan, samples, backend, p.tolerance)
    refuse_empty_outputs(comparison)
    clock.lap("compare")
    verdict, reasons = compare_verdict(comparison, p.allow_internal_nonfinite)
    task = _decode(judge, backend, plan, comparison) if judge is not None else None
    if task is not None:
        clock.lap("task")
    result = CompareRun(model=model, precision=plan.precision, pins=sorted(plan.pins),
                        nodes=len(graph.nodes), inputs=info, engine=backend.info(), comparison=comparison, verdict=verdict,
                        reasons=reasons, allow_internal_nonfinite=p.allow_internal_nonfinite,
                        warnings=warnings + warnings_of(comparison, p.allow_internal_nonfinite), timing=clock.timing(),
                        versions=versions(), task=task)
    if p.json_out:
        dump_json(p.json_out, result)
    if p.report_out:
        from ..report import render_to

        render_to(result, Path(p.report_out))
    return result


def _decode(judge, backend, plan, comparison):
    """The task report of the proxy clips: WER of FP32 and the plan, the decodes against FP32's."""
    report = judge.report([])
    base = judge.fp32()
    refs = judge.references(base)
    config = config_name(plan.precision, plan.pins)
    tr = judge.run_plan(backend, plan, config)
    report.rows = [judge.row(base, refs), judge.row(tr, refs)]
    report.decodes = judge.decode_reports(backend, [(config, plan)], {plan.key(): comparison.pairs})
    return report
