"""``precdoctor compare``: the plan against FP32, every float tensor compared."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..backends import EngineParams
from ..comparison import Tolerance, compare_plan
from ..errors import BadInput
from ..files import check_output_file, dump_json
from ..inputs import InputSpec
from ..plan import PRECISIONS, build_plan
from ..runs import CompareRun
from ..verdicts import compare_verdict, warnings_of
from .common import begin, refuse_empty_outputs, versions


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

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        check_tolerance(self.tolerance)
        self.inputs.check()
        self.engine.check()
        check_output_file(self.json_out, keep=(self.model, *self.inputs.files, *self.pin_files))


def check_tolerance(tol: Tolerance) -> None:
    for name, value in (("--rtol", tol.rel_l2), ("--atol", tol.atol)):
        if math.isnan(value) or value < 0:
            raise BadInput(f"{name} must be 0 or more, not {value}")


def run(p: CompareParams) -> CompareRun:
    p.check()
    clock, graph, samples, info, warnings = begin(p.model, p.inputs)
    plan = build_plan(graph, p.precision, p.pins, p.pin_files)
    backend = p.engine.make()
    clock.lap("load")
    comparison = compare_plan(graph, plan, samples, backend, p.tolerance)
    refuse_empty_outputs(comparison)
    clock.lap("compare")
    verdict, reasons = compare_verdict(comparison, p.allow_internal_nonfinite)
    result = CompareRun(model=str(p.model), precision=plan.precision, pins=sorted(plan.pins), nodes=len(graph.nodes), inputs=info,
                        engine=backend.info(), comparison=comparison, verdict=verdict, reasons=reasons,
                        allow_internal_nonfinite=p.allow_internal_nonfinite,
                        warnings=warnings + warnings_of(comparison, p.allow_internal_nonfinite), timing=clock.timing(),
                        versions=versions())
    if p.json_out:
        dump_json(p.json_out, result)
    return result
