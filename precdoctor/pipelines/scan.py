"""``precdoctor scan``: FP32-only risk report (ranges past FP16/BF16, vanishing epsilons, decomposed norms)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..files import check_output_file, dump_json
from ..inputs import InputSpec
from ..risks import find_risks
from ..runs import ScanRun
from .common import begin, versions


@dataclass(frozen=True)
class ScanParams:
    model: str
    inputs: InputSpec = field(default_factory=InputSpec)
    json_out: str | None = None

    def check(self) -> None:
        self.inputs.check()
        check_output_file(self.json_out, keep=(self.model, *self.inputs.files))


def run(p: ScanParams) -> ScanRun:
    p.check()
    clock, graph, samples, info, warnings = begin(p.model, p.inputs)
    clock.lap("load")
    risks, norms, ranges, coverage = find_risks(graph, samples)
    clock.lap("scan")
    result = ScanRun(model=str(p.model), nodes=len(graph.nodes), tensors=len(ranges), inputs=info, risks=risks,
                     decomposed_norms=norms, ranges=ranges, warnings=warnings, control_flow=coverage, timing=clock.timing(), versions=versions())
    if p.json_out:
        dump_json(p.json_out, result)
    return result
