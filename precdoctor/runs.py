"""The run records: what each command returns, writes as JSON and the report reads back.

``schema_version`` changes whenever a field changes meaning or shape; a run
file of another version, or one with unknown or mistyped fields, is refused by
``read_run`` with one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .ship.artifacts import Artifacts
from .backends import EngineInfo
from .analysis.comparison import Comparison
from .core.errors import BadInput
from .core.files import read_json
from .analysis.flatten import Coverage
from .graph import LayerNormPattern
from .analysis.ranges import TensorRange
from .core.records import Record, Signed
from .rewrite.core import Rewrite
from .rewrite.edges import EdgeCheck
from .analysis.risks import Risk
from .search import Baselines, Evaluation
from .core.status import BisectVerdict, CompareVerdict, RewriteStatus
from .tasks.judge import TaskReport
from .ship.verification import Verification

SCHEMA_VERSION = 7  # 3: warnings, the FP32 reference's own Inf/NaN, hidden Inf/NaN, compare's stored verdict;
#                     4: control-flow coverage, recurrent mode, forced FP32 nodes, bound notes, subnormal ranges;
#                     5: targets (engine assumptions, TF32 check, verdicts per target), verification files, verify runs;
#                     6: bisect's fix by rewrite (fix, rewrite);
#                     7: decodes against FP32's (task reports), compare's task report


@dataclass
class InputInfo(Record):
    """Where the samples came from; verdicts on random data say so."""

    samples: int
    source: Literal["files", "arrays", "random", "task"]
    files: list[str] = field(default_factory=list)
    seed: int | None = None

    @property
    def random(self) -> bool:
        return self.source == "random"


@dataclass
class Flops(Record):
    """FLOPs of the first sample: the whole model, and what the pins leave in FP32."""

    total: int
    pinned: dict[str, int]
    pinned_total: int
    complete: bool  # every node's FLOPs known (shape inference reached everything)


@dataclass
class BisectComparisons(Record):
    naive: Comparison
    pinned: Comparison | None = None
    other: Comparison | None = None  # the other format's naive plan, for the report


@dataclass
class Cost(Record):
    """What a fix costs at inference: nodes computed in FP32, Cast nodes in the mixed ONNX, FP32 FLOPs (first sample),
    and for a rewrite what it adds, computed in the low format."""

    fp32_nodes: int
    casts: int
    fp32_flops: int
    nodes_added: Signed = 0  # net: nodes added minus nodes removed
    flops_added: Signed = 0  # net, on the first sample


@dataclass
class Tf32Check(Record):
    """Whether the plan holds with TF32 in its FP32 islands, and so whether the commands may leave TF32 on."""

    allowed: bool  # the commands leave TF32 on (trtexec's default; Polygraphy --tf32)
    checked: bool  # an evaluation with TF32 decided it (False: nothing to decide, or not emulated)
    islands: list[str] = field(default_factory=list)  # FP32 nodes whose inner products TF32 rounds
    failed: list[str] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class TargetVerdict(Record):
    """The naive plan and the searched plan judged under one target's assumptions (output criteria)."""

    target: str
    assumptions: str
    naive: bool | None  # None: not judged
    plan: bool | None
    failed: list[str] = field(default_factory=list)  # criteria the plan fails there
    own: bool = False  # the run's own target (its verdicts are the run's)

    def plan_word(self) -> str:
        return "not judged" if self.plan is None else ("passes" if self.plan else "fails" + (f": {', '.join(self.failed)}" if self.failed else ""))


@dataclass
class RewriteCheck(Record):
    """One applied rewrite, verified: its FP32 difference, what fails without it, and the pins it replaces."""

    rewrite: Rewrite
    fp32_max_rel: float  # over the tensors it matched (scaled ones unscaled)
    without: list[str]  # criteria that fail when it alone is dropped (its necessity)
    pins: list[str]  # the pin alternative: pins of the pin search inside its subgraph
    pin_cost: Cost
    cost: Cost


@dataclass
class RewriteAlternative(Record):
    """Another rewrite of the same culprit (LayerNorm fusion), judged on every engine profile it depends on."""

    rewrite: Rewrite
    replaces: str  # the id of the applied rewrite it could stand in for
    fp32_max_rel: float
    passes: dict[str, bool]  # engine profile -> passes the output acceptance
    failed: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RewriteFiles(Record):
    """File names (in the output folder) of the rewritten model and its commands."""

    model: str | None = None  # model.rewritten.onnx, FP32
    mixed_onnx: str | None = None  # the rewritten model in the low format (FP32 islands only for the pins left)
    trtexec: str | None = None  # TensorRT 8.6-10 flags, layer precisions only for the pins left
    trtexec11: str | None = None
    casts: int | None = None

    def validate(self, where: str) -> None:
        from .ship.artifacts import check_file_names

        check_file_names(self, ("model", "mixed_onnx", "trtexec", "trtexec11"), where)


@dataclass
class RewriteResult(Record):
    """The fix by rewrite (``--fix rewrite|auto``): what was matched, verified and applied, and what it costs."""

    mode: Literal["rewrite", "auto"]
    status: RewriteStatus  # partial: rewrites plus pins (auto); refused: never shipped (status.RewriteStatus)
    message: str
    rewrites: list[RewriteCheck]
    dropped: dict[str, str]  # matched rewrite -> why it is not applied
    alternatives: list[RewriteAlternative]
    pins: list[str]  # nodes of the rewritten graph still pinned to FP32 (auto)
    evaluations: int  # plans judged in the low format by this stage
    evaluation_log: list[Evaluation]
    fp32_outputs: dict[str, float]  # graph output -> max relative error of the rewritten model in FP32
    fp32_tensors: dict[str, float]  # matched tensor -> the same
    measures: dict[str, float]  # the applied fix's acceptance measures
    cost: Cost
    pins_cost: Cost  # the pin alternative's, on the original model
    files: RewriteFiles = field(default_factory=RewriteFiles)
    targets: list[TargetVerdict] = field(default_factory=list)  # the rewritten model with and without its pins under every target
    tf32: Tf32Check | None = None  # the pins left (auto) with TF32 in their FP32 islands
    edges: list[EdgeCheck] = field(default_factory=list)  # the settled fix on inputs derived from the samples (rewrite.edges)

    @property
    def applied(self) -> bool:
        return RewriteStatus(self.status).applied


@dataclass(kw_only=True)
class Run(Record):
    """What every run record carries: the schema version, the command, the model, stage times and versions."""

    schema_version: int = SCHEMA_VERSION
    command: str
    model: str
    timing: dict[str, float]
    versions: dict[str, str]
    warnings: list[str] = field(default_factory=list)  # what a reader of the verdict must know (random data, FP32 Inf/NaN...)


@dataclass(kw_only=True)
class CompareRun(Run):
    command: Literal["compare"] = "compare"
    precision: Literal["fp16", "bf16"]
    pins: list[str]
    nodes: int
    inputs: InputInfo
    engine: EngineInfo
    comparison: Comparison
    verdict: CompareVerdict  # the comparison's, with FP32 NaN and hidden Inf/NaN (verdicts.py)
    reasons: list[str] = field(default_factory=list)
    allow_internal_nonfinite: bool = False
    task: TaskReport | None = None  # --task: the proxy clips' WER and decodes

    def validate(self, where: str) -> None:
        if self.nodes < 1:
            raise BadInput(f"{where}.nodes: a model has at least one node")


@dataclass(kw_only=True)
class ScanRun(Run):
    command: Literal["scan"] = "scan"
    nodes: int
    tensors: int
    inputs: InputInfo
    risks: list[Risk]
    decomposed_norms: list[LayerNormPattern]
    ranges: dict[str, TensorRange]
    control_flow: list[Coverage] = field(default_factory=list)  # how each If/Loop/Scan was scanned
    target: str | None = None  # its constant conversion decides the constant risks (targets.py)


@dataclass(kw_only=True)
class BisectRun(Run):
    command: Literal["bisect"] = "bisect"
    precision: Literal["fp16", "bf16"]
    verdict: BisectVerdict
    message: str
    pins: list[str]
    why: dict[str, str]
    one_minimal: bool
    evaluations: int
    evaluations_resumed: int
    evaluation_bound: int
    bound_note: str | None = None  # why the evaluations exceeded the bound (None: within it)
    budget: int
    budget_exhausted: bool
    accept: list[str]
    accept_default: bool
    candidates: int
    suspects: list[str]
    evidence: dict[str, str]
    baselines: Baselines | None
    task: TaskReport | None
    nodes: int
    node_ops: dict[str, str]
    inputs: InputInfo
    engine: EngineInfo
    comparison: BisectComparisons
    flops: Flops
    evaluation_log: list[Evaluation]
    artifacts: Artifacts
    allow_internal_nonfinite: bool = False
    internal_nonfinite: str | None = None  # the shipped plan passes while new Inf/NaN is born inside (allowed); None when unfixed
    target: str | None = None  # the target engine the plan is for (targets.py); engine.* holds its assumptions
    tf32: Tf32Check | None = None  # whether the commands leave TF32 on
    targets: list[TargetVerdict] = field(default_factory=list)  # the naive and the searched plan under every target
    verification: Verification | None = None  # reference/, verify-trt11.sh, verify-trt10.sh
    fix: Literal["pins", "rewrite", "auto"] = "pins"
    rewrite: RewriteResult | None = None  # --fix rewrite|auto: the rewrite stage (pins stay the pin alternative)

    def validate(self, where: str) -> None:
        if self.nodes < 1 or self.budget < 1:
            raise BadInput(f"{where}: a bisect run of {self.nodes} node(s) and a budget of {self.budget} is not one precdoctor wrote")
        unknown = next((p for p in self.pins if p not in self.node_ops), None)
        if unknown is not None:
            raise BadInput(f"{where}.pins: {unknown!r} is not a node of the run (node_ops)")

    @property
    def origin(self) -> str | None:
        return self.comparison.naive.origin

    @property
    def first_divergence(self) -> str | None:
        return self.comparison.naive.first_divergence


@dataclass(kw_only=True)
class WerRun(Run):
    command: Literal["wer"] = "wer"
    precision: Literal["fp32", "fp16", "bf16"]
    pins: list[str]
    engine: EngineInfo
    task: TaskReport


@dataclass
class SampleVerdict(Record):
    sample: int
    passed: bool
    measures: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


@dataclass
class PlanVerdict(Record):
    """One plan of the folder (the verdict's, or its alternative) run on the engine against the references."""

    role: Literal["verdict", "alternative"]
    fix: Literal["pins", "rewrite"]
    model: str  # the mixed ONNX (what ort-cuda runs; emulate runs the plan it describes)
    pins: list[str]
    samples: list[SampleVerdict]
    passed: bool


@dataclass(kw_only=True)
class VerifyRun(Run):
    """A shipped plan run on an engine against the FP32 references its bisect saved."""

    command: Literal["verify"] = "verify"
    folder: str
    precision: Literal["fp16", "bf16"]
    pins: list[str]
    target: str | None
    engine: EngineInfo
    accept: list[str]
    samples: list[SampleVerdict]
    passed: bool
    not_checked: list[str] = field(default_factory=list)  # criteria of the bisect that outputs alone cannot check
    plans: list[PlanVerdict] = field(default_factory=list)  # every plan checked, the verdict's first (model, pins, samples:
    #                                                        the verdict's; passed: every plan's)


RUNS = {"compare": CompareRun, "scan": ScanRun, "bisect": BisectRun, "wer": WerRun, "verify": VerifyRun}


def read_run(path: str | Path) -> CompareRun | ScanRun | BisectRun | WerRun | VerifyRun:
    """A run JSON of this version, validated; anything else is one BadInput line."""
    data = read_json(path, "run JSON")
    if not isinstance(data, dict) or not isinstance(data.get("command"), str) or data.get("command") not in RUNS:
        raise BadInput(f"{path} is not a precdoctor run JSON (no 'command' of {', '.join(RUNS)})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BadInput(f"{path} is a run JSON of schema version {data.get('schema_version')!r}; "
                       f"this precdoctor reads version {SCHEMA_VERSION} (re-run the command)")
    return RUNS[data["command"]].from_json(data, where=Path(path).name)
