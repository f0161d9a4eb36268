"""Verification on the user's engine: the references a bisect writes, and the scripts that check a build against them.

references.py writes the samples and FP32 reference outputs (raw and Polygraphy JSON)
and reads them back; mapping.py turns the acceptance into trtexec's and Polygraphy's
accuracy checks and says what they cannot check; scripts.py writes verify-trt11.sh
and verify-trt10.sh. ``precdoctor verify`` (pipelines/verify.py) checks the same
references on ONNX Runtime. What they check is the plan that is the run's verdict
(the rewritten model when a rewrite is the verdict, else the pins' mixed ONNX) and
its alternative where one was verified too (the pins beside a rewrite), each named.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...analysis.acceptance import Criterion
from ..artifacts import outputs_of
from ...numerics.constants import SHIPPED
from ...numerics.emulation import EmulationOptions
from ...core.files import write_text
from ...graph import GraphView
from ...core.limits import REFERENCE_MAX_BYTES
from ...planning.plan import Plan
from ...core.records import Record
from ...numerics.schema import forced_fp32
from .mapping import needs
from .references import FOLDER, MANIFEST, CheckedPlan, Manifest, write_references
from .scripts import PlanSpec, ScriptSpec, polygraphy_commands, verify_trt10, verify_trt11

SCRIPTS = ("verify-trt11.sh", "verify-trt10.sh")
FILES = SCRIPTS + (FOLDER,)
OWNED_DIRS = {FOLDER: MANIFEST}  # the references folder, replaced whole by the next run (destinations.Staging)


@dataclass
class Verification(Record):
    """What a bisect wrote to verify its plan elsewhere, and what those checks leave to precdoctor."""

    references: str  # the folder of samples and FP32 outputs
    scripts: list[str]
    samples: int
    of_samples: int = 0  # the run's samples; more than ``samples`` when reference/ would pass REFERENCE_MAX_BYTES
    unmapped: list[str] = field(default_factory=list)  # criteria no engine-side check can express
    not_checked: list[str] = field(default_factory=list)  # criteria of the run beyond the outputs (task, finite-inside)
    plans: list[CheckedPlan] = field(default_factory=list)  # what the scripts and verify check: the verdict's plan first


@dataclass
class PlanToCheck:
    """A plan the bisect verified, to be checked on the user's engine."""

    role: str  # verdict | alternative
    fix: str  # pins | rewrite
    graph: GraphView  # the model it applies to (the rewritten graph for a rewrite)
    plan: Plan
    model: str  # that model's path: the user's model, or the rewritten model's file name in the folder
    mixed: str  # its mixed ONNX's file name in the folder
    tf32: bool


def dynamic_inputs(graph: GraphView) -> list[str]:
    """Graph inputs with a dimension that is not a fixed number (TensorRT needs their shapes)."""
    out = []
    for vi in graph.model.graph.input:
        if vi.name in graph.initializers or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
            out.append(vi.name)
    return out


def write_verification(outdir: Path, plans: list[PlanToCheck], samples: list[dict], references: list[dict],
                       criteria: list[Criterion], not_checked: list[str], target: str | None, options: EmulationOptions,
                       relative_to: Path | None = None) -> tuple[Verification, tuple[str, list[str]]]:
    """Write ``reference/``, verify-trt11.sh and verify-trt10.sh into ``outdir`` (see the module docstring); with the
    Polygraphy commands (and their notes) that check the plan on the same references, for polygraphy.txt."""
    outdir = Path(outdir)
    specs = []
    for t in plans:
        model = t.model if t.fix == "rewrite" else os.path.relpath(Path(t.model).resolve(), Path(relative_to or outdir).resolve())
        full = Plan(t.plan.precision, frozenset(t.plan.pins) | frozenset(forced_fp32(t.graph, t.plan)), t.plan.why)
        specs.append(PlanSpec(CheckedPlan(t.role, t.fix, model, t.mixed, sorted(full.pins), t.tf32), full,
                              outputs_of(t.graph, full.pins)))
    pins = next((t for t in plans if t.fix == "pins"), plans[0])  # pins.json's plan: the manifest's legacy fields
    graph = plans[0].graph
    floats = [o for o in graph.outputs if graph.is_float(o)]
    nd = needs(criteria, floats)
    manifest = Manifest(pins.plan.precision, sorted(pins.plan.pins), target, [c.text() for c in criteria if c.is_output],
                        not_checked, pins.tf32, SHIPPED, options.profile, options.recurrent, plans=[p.checked for p in specs])
    keep = reference_subset([_bytes(s) + _bytes(r) for s, r in zip(samples, references)], REFERENCE_MAX_BYTES)
    samples, references, of = [samples[i] for i in keep], [references[i] for i in keep], len(samples)
    manifest = write_references(outdir / FOLDER, samples, references, manifest)
    spec = ScriptSpec(specs, target, dynamic_inputs(graph), manifest, nd, references, not_checked)
    write_text(outdir / SCRIPTS[0], verify_trt11(spec))
    write_text(outdir / SCRIPTS[1], verify_trt10(spec))
    pin_spec = next((ps for ps in specs if ps.checked.fix == "pins"), specs[0])
    return (Verification(FOLDER, list(SCRIPTS), len(samples), of, nd.unmapped, not_checked, [p.checked for p in specs]),
            polygraphy_commands(spec, pin_spec))


def saved_polygraphy_commands(folder: Path, graph: GraphView, plan: Plan, tf32: bool | None, model: str,
                              relative_to: Path) -> tuple[str, list[str]] | None:
    """polygraphy.txt's commands for ``plan`` on the references a bisect saved in ``folder`` (``precdoctor pins``
    re-emitting it), or None where the folder holds none."""
    from ...analysis.acceptance import parse
    from .references import read_manifest, read_sample

    refs = Path(folder) / FOLDER
    if not (refs / MANIFEST).is_file():
        return None
    manifest = read_manifest(refs)
    references = [read_sample(refs, s)[1] for s in manifest.samples]
    full = Plan(plan.precision, frozenset(plan.pins) | frozenset(forced_fp32(graph, plan)), plan.why)
    ps = PlanSpec(CheckedPlan("verdict", "pins", model, "model.mixed.onnx", sorted(full.pins), bool(tf32)), full,
                  outputs_of(graph, full.pins))
    nd = needs(parse(manifest.accept), [o for o in graph.outputs if graph.is_float(o)])
    spec = ScriptSpec([ps], manifest.target, dynamic_inputs(graph), manifest, nd, references)
    return polygraphy_commands(spec, ps, os.path.relpath(refs.resolve(), Path(relative_to).resolve()))


def _bytes(arrays: dict) -> int:
    return sum(np.asarray(a).nbytes for a in arrays.values())


def reference_subset(sizes: list[int], budget: int) -> list[int]:
    """The samples reference/ holds: all of them, or as many as fit ``budget`` (each written about 2.4 times its
    size: raw, and base64 inside JSON), evenly spread so that every part of the data (every clip's steps) is seen."""
    per = [2.4 * b for b in sizes]
    if sum(per) <= budget:
        return list(range(len(sizes)))
    k = max(1, int(budget // (sum(per) / len(per))))
    return sorted({round(i * (len(sizes) - 1) / max(k - 1, 1)) for i in range(k)})
