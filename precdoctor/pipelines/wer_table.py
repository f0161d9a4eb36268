"""``precdoctor wer``: WER/CER per configuration (FP32, naive FP16/BF16, pinned) on a dataset."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..backends import EngineParams
from ..core.destinations import check_output_file
from ..core.errors import BadInput
from ..core.files import dump_json
from ..planning.pinsfile import build_plan
from ..planning.plan import PRECISIONS
from ..runs import WerRun
from ..tasks.judge import configs
from ..tasks.registry import TaskParams
from .common import Clock, load_graph, versions


@dataclass(frozen=True)
class WerParams:
    model: str
    task: TaskParams
    precision: str = "fp16"  # or "fp32": the reference row only
    pins: tuple[str, ...] = ()  # selectors
    pin_files: tuple[str, ...] = ()
    other: bool = False  # also the other reduced format
    engine: EngineParams = field(default_factory=EngineParams)
    json_out: str | None = None

    def check(self) -> None:
        if self.precision not in PRECISIONS + ("fp32",):
            raise BadInput(f"unknown precision {self.precision!r}; expected fp32, {', '.join(PRECISIONS)}")
        self.task.check()
        self.task.check_files(self.model)
        self.engine.check()
        check_output_file(self.json_out, keep=(self.model, *self.task.reads(self.model), *self.pin_files))


def run(p: WerParams) -> WerRun:
    from ..tasks.make import make_judge
    from ..tasks.placement import of_engine

    p.check()
    clock = Clock()
    model = p.task.under_test(p.model)
    graph = load_graph(model)
    judge = make_judge(graph, p.model, p.task, of_engine(p.engine))
    judge.check_baseline(p.task.force)  # FP32 first: a broken setup stops here, before any reduced precision runs
    low = "fp16" if p.precision == "fp32" else p.precision
    pins = build_plan(graph, low, p.pins, p.pin_files).pins
    backend = p.engine.make()
    clock.lap("load")
    report = judge.report([])
    if p.precision == "fp32":
        base = judge.fp32()
        report.rows = [judge.row(base, judge.references(base))]
    else:
        report.rows, report.worst, report.normalization = judge.table(backend, p.precision, pins, p.other)
        report.decodes = judge.decode_reports(backend, configs(p.precision, pins, p.other))
    clock.lap("transcribe")
    result = WerRun(model=model, precision=p.precision, pins=sorted(pins), engine=backend.info(), task=report,
                    timing=clock.timing(), versions=versions())
    if p.json_out:
        dump_json(p.json_out, result)
    return result
