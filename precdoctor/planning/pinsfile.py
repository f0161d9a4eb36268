"""pins.json: a verified plan as a file, and what precdoctor accepts as one.

What ``bisect`` writes: exact node names in ``pins`` (a node literally named
``op:Mul`` stays that node), why each is there, and the facts of the run that
verified them. What a user may write: the same object with only ``pins``, or
``selectors`` (``glob:``, ``re:``, ``op:`` as on the command line), or a plain
JSON list, which is read as selectors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..core.errors import BadInput
from ..core.files import read_json
from ..graph import GraphView
from .plan import PRECISIONS, Plan, resolve_selectors
from ..core.records import Record

PINS_SCHEMA = 5  # 3: warnings; 4: forced (the nodes the schema keeps FP32, pinned in every artifact); 5: target, constants, tf32
READABLE = (2, 3, 4, 5)  # each version is the next without its new fields


@dataclass
class PinsFile(Record):
    precision: Literal["fp16", "bf16"] = "fp16"
    pins: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    forced: dict[str, str] = field(default_factory=dict)  # FP32 by the ONNX schema, not by the search: node -> why
    selectors: list[str] = field(default_factory=list)
    model: str | None = None  # relative to the pins file's folder when written by bisect
    accept: list[str] = field(default_factory=list)
    verdict: str | None = None
    one_minimal: bool | None = None
    evaluations: int | None = None
    casts: int | None = None
    profile: str | None = None
    backend: str | None = None
    warnings: list[str] = field(default_factory=list)  # what the verdict rests on (random data, Inf/NaN accepted inside...)
    target: str | None = None  # the engine the plan was verified for (targets.py)
    assumptions: str | None = None  # that target's assumptions as the search used them
    constants: str | None = None  # how the mixed ONNX written with it converts constants (clamp), in words
    tf32: bool | None = None  # the plan holds with TF32 in its FP32 islands (False: build with --noTF32; None: not verified)
    targets: dict[str, str] = field(default_factory=dict)  # target -> "passes" / "fails: ..." for this plan
    schema_version: int = PINS_SCHEMA

    def validate(self, where: str) -> None:
        if self.schema_version not in READABLE:
            raise BadInput(f"{where}: pins file of schema version {self.schema_version}; this precdoctor reads "
                           f"{', '.join(map(str, READABLE))}")
        for what, names in (("pins", self.pins), ("selectors", self.selectors)):
            bad = next((n for n in names if not n), None)
            if bad is not None:
                raise BadInput(f"{where}.{what}: an empty name names no node")
        for what, n in (("evaluations", self.evaluations), ("casts", self.casts)):
            if n is not None and n < 0:
                raise BadInput(f"{where}.{what}: expected a count, found {n}")

    def model_path(self, pins_file: str | Path) -> Path | None:
        """The model this plan was verified on, resolved against the pins file's folder."""
        if not self.model:
            return None
        p = Path(self.model)
        return p if p.is_absolute() else Path(pins_file).parent / p

    def check_nodes(self, graph, where: str, model: str = "the model") -> None:
        """Refuse exact pins (or forced FP32 nodes) naming a node ``graph`` lacks: the plan was verified on another
        model, and a pin silently dropped would judge another plan than the file's."""
        missing = [n for n in [*self.pins, *self.forced] if not graph.has_node(n)]
        if missing:
            raise BadInput(f"{where} pins node {missing[0]!r}, which {model} does not have")

    def nodes_in(self, graph, where: str, model: str = "the model") -> set[str]:
        """Every node of ``graph`` this file pins: its exact names (each must be there) and what its selectors match."""
        self.check_nodes(graph, where, model)
        return set(self.pins) | set(resolve_selectors(graph, self.selectors))


def read_pins(path: str | Path) -> PinsFile:
    """Read and validate a pins file; any problem is one BadInput line naming the file."""
    data = read_json(path, "pins file")
    if isinstance(data, list):
        data = {"selectors": data}
    return PinsFile.from_json(data, where=str(path))


def build_plan(graph: GraphView, precision: str, selectors=(), pin_files=()) -> Plan:
    """The plan a user asked for: selectors typed on the command line plus saved pins files."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    why: dict[str, str] = {}
    pins: set[str] = set()
    for f in pin_files:
        saved = read_pins(f)
        saved.check_nodes(graph, f)
        pins.update(saved.pins)
        why.update({p: w for p, w in saved.why.items() if p in saved.pins})
        for node, sel in resolve_selectors(graph, saved.selectors).items():
            pins.add(node)
            why.setdefault(node, f"pinned by {f} ({sel})")
    for node, sel in resolve_selectors(graph, selectors).items():
        pins.add(node)
        why.setdefault(node, f"pinned by the user ({sel})")
    return Plan(precision, frozenset(pins), why)
