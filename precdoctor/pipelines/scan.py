"""``precdoctor scan``: FP32-only risk report (ranges past FP16/BF16, vanishing epsilons, decomposed norms)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core import progress
from ..core.destinations import check_output_file
from ..core.files import dump_json
from ..planning.inputs import InputSpec
from ..analysis.risks import find_risks
from ..runs import ScanRun
from ..numerics.targets import DEFAULT_TARGET, get_target
from .common import begin, versions


@dataclass(frozen=True)
class ScanParams:
    model: str
    inputs: InputSpec = field(default_factory=InputSpec)
    json_out: str | None = None
    target: str = DEFAULT_TARGET  # how the target converts constants decides whether a tiny one is a risk

    def check(self) -> None:
        get_target(self.target)
        self.inputs.check()
        check_output_file(self.json_out, keep=(self.model, *self.inputs.files))


def run(p: ScanParams) -> ScanRun:
    p.check()
    loaded = begin(p.model, p.inputs, what="these ranges and risks are")
    clock, graph, samples, info, warnings = loaded.clock, loaded.graph, loaded.samples, loaded.info, loaded.warnings
    clock.lap("load")
    with progress.stage("FP32 ranges", unit="sample"):
        risks, norms, ranges, coverage = find_risks(graph, samples, get_target(p.target).constants)
    clock.lap("scan")
    result = ScanRun(model=str(p.model), nodes=len(graph.nodes), tensors=len(ranges), inputs=info, risks=risks,
                     decomposed_norms=norms, ranges=ranges, warnings=warnings, control_flow=coverage, timing=clock.timing(), versions=versions(),
                     target=p.target)
    if p.json_out:
        dump_json(p.json_out, result)
    return result
