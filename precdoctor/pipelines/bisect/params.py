"""bisect's parameters, checked before any work."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...analysis import acceptance as acc
from ...backends import EngineParams
from ...backends.distributed import ScaleParams
from ...core.errors import BadInput
from ...ship.external import ExternalCheck
from ...planning.inputs import InputSpec
from ...core.limits import DEFAULT_BUDGET
from ...planning.plan import FIX_MODES, PRECISIONS
from ...tasks.registry import TaskParams


@dataclass(frozen=True)
class BisectParams:
    model: str
    out: str
    precision: str = "fp16"
    inputs: InputSpec = field(default_factory=InputSpec)
    accept: tuple[str, ...] = ()
    budget: int = DEFAULT_BUDGET
    engine: EngineParams = field(default_factory=EngineParams)
    task: TaskParams | None = None
    baselines: bool = True
    report: bool = True
    other_precision: bool = True  # also compare the other format's naive plan, for the report
    json_out: str | None = None
    allow_internal_nonfinite: bool = False  # accept plans whose outputs pass while new Inf/NaN is born inside
    fix: str = "pins"  # pins | rewrite | auto (fix.py)
    check_cmd: str | None = None  # an external command judging each confirmed plan (external.py)
    scale: ScaleParams = field(default_factory=ScaleParams)  # workers evaluating plans (distributed.py): not in any record

    def criteria(self) -> tuple[list[acc.Criterion], list[acc.Criterion], bool]:
        """(output criteria the search judges by, task criteria that confirm, whether ``finite-inside`` confirms);
        a task criterion alone searches on the default output-level proxy."""
        criteria = acc.parse(self.accept)
        output = [c for c in criteria if c.is_output] or acc.parse(())
        task = [c for c in criteria if c.is_task]
        if task and self.task is None:
            raise BadInput(f"--accept {task[0].text()} needs --task and --data")
        if self.allow_internal_nonfinite and any(c.is_inside for c in criteria):
            raise BadInput(f"--accept {acc.INSIDE} and --allow-internal-nonfinite contradict each other")
        return output, task, not self.allow_internal_nonfinite

    @property
    def subject(self) -> str:
        """The model under test: ``model``, or the decoder a Whisper task puts under test."""
        return self.task.under_test(self.model) if self.task is not None else str(self.model)

    def reads(self) -> tuple[str, ...]:
        """Every file the run reads: no output may name one."""
        return (self.model, self.subject, *(self.task.reads(self.model) if self.task is not None else ()), *self.inputs.files)

    def check(self) -> None:
        """Every parameter, before any work (the output folder is checked by artifact_set.refuse_destinations)."""
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.fix not in FIX_MODES:
            raise BadInput(f"unknown --fix {self.fix!r}; expected one of {', '.join(FIX_MODES)}")
        if not isinstance(self.budget, int) or self.budget < 1:
            raise BadInput(f"--budget must be 1 or more evaluations, not {self.budget}")
        self.criteria()
        if self.check_cmd is not None:
            ExternalCheck(self.check_cmd).check()
        self.inputs.check()
        self.engine.check()
        self.scale.check()
        if self.scale.distributed and self.engine.backend != "emulate":
            raise BadInput(f"--workers/--ray-address spread the emulation (--backend emulate), not --backend {self.engine.backend}")
        if self.task is not None:
            self.task.check()
            self.task.check_files(self.model)
