"""The run records: what each command returns, writes as JSON and the report reads back.

``schema_version`` changes whenever a field changes meaning or shape; a run
file of another version, or one with unknown or mistyped fields, is refused by
``read_run`` with one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .artifacts import Artifacts
from .backends import EngineInfo
from .comparison import Comparison
from .errors import BadInput
from .files import read_json
from .graph import LayerNormPattern
from .records import Record
from .flatten import Coverage
from .ranges import TensorRange
from .risks import Risk
from .search import Baselines, Evaluation
from .tasks.judge import TaskReport

SCHEMA_VERSION = 5  # 3: warnings, the FP32 reference's own Inf/NaN, hidden Inf/NaN, compare's stored verdict;
#                     4: control-flow coverage, recurrent mode, forced FP32 nodes, bound notes, subnormal ranges;
#                     5: decodes against FP32's (task reports), compare's task report


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
    verdict: Literal["ok", "diverges", "reference-nonfinite"]  # the comparison's, with FP32 NaN and hidden Inf/NaN (verdicts.py)
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


@dataclass(kw_only=True)
class BisectRun(Run):
    command: Literal["bisect"] = "bisect"
    precision: Literal["fp16", "bf16"]
    verdict: Literal["healthy", "fixed", "unfixed"]
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
    internal_nonfinite: str | None = None  # the plan passes while new Inf/NaN is born inside (only when allowed, or unfixed)

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


RUNS = {"compare": CompareRun, "scan": ScanRun, "bisect": BisectRun, "wer": WerRun}


def read_run(path: str | Path) -> CompareRun | ScanRun | BisectRun | WerRun:
    """A run JSON of this version, validated; anything else is one BadInput line."""
    data = read_json(path, "run JSON")
    if not isinstance(data, dict) or not isinstance(data.get("command"), str) or data.get("command") not in RUNS:
        raise BadInput(f"{path} is not a precdoctor run JSON (no 'command' of {', '.join(RUNS)})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BadInput(f"{path} is a run JSON of schema version {data.get('schema_version')!r}; "
                       f"this precdoctor reads version {SCHEMA_VERSION} (re-run the command)")
    return RUNS[data["command"]].from_json(data, where=Path(path).name)
