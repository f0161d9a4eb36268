"""``precdoctor compare``: the plan against FP32, every float tensor compared."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..backends import EngineParams
from ..comparison import Tolerance, compare_plan
from ..files import check_output_file, dump_json
from ..inputs import InputSpec
from ..plan import build_plan
from ..runs import CompareRun
from .common import begin, versions


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

    def check(self) -> None:
        self.inputs.check()
        self.engine.check()
        check_output_file(self.json_out)


def run(p: CompareParams) -> CompareRun:
    p.check()
    clock, graph, samples, info = begin(p.model, p.inputs)
    plan = build_plan(graph, p.precision, p.pins, p.pin_files)
    backend = p.engine.make()
    clock.lap("load")
    comparison = compare_plan(graph, plan, samples, backend, p.tolerance)
    clock.lap("compare")
    result = CompareRun(model=str(p.model), precision=plan.precision, pins=sorted(plan.pins), nodes=len(graph.nodes), inputs=info,
                        engine=backend.info(), comparison=comparison, timing=clock.timing(), versions=versions())
    if p.json_out:
        dump_json(p.json_out, result)
    return result
