"""Verification on the user's engine: the references a bisect writes, and the scripts that check a build against them.

references.py writes the samples and FP32 reference outputs (raw and Polygraphy JSON)
and reads them back; mapping.py turns the acceptance into trtexec's and Polygraphy's
accuracy checks and says what they cannot check; scripts.py writes verify-trt11.sh
and verify-trt10.sh. ``precdoctor verify`` (pipelines/verify.py) checks the same
references on ONNX Runtime.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..acceptance import Criterion
from ..artifacts import outputs_of
from ..constants import SHIPPED
from ..emulation import EmulationOptions
from ..files import write_text
from ..graph import GraphView
from ..limits import REFERENCE_MAX_BYTES
from ..plan import Plan
from ..records import Record
from ..schema import forced_fp32
from .mapping import needs
from .references import FOLDER, MANIFEST, Manifest, write_references
from .scripts import ScriptSpec, polygraphy_commands, verify_trt10, verify_trt11

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


def write_verification(outdir: Path, model_path: str, graph: GraphView, plan: Plan, samples: list[dict], references: list[dict],
                       criteria: list[Criterion], not_checked: list[str], target: str | None, options: EmulationOptions,
                       tf32: bool, relative_to: Path | None = None) -> tuple[Verification, tuple[str, list[str]]]:
    """Write ``reference/``, verify-trt11.sh and verify-trt10.sh into ``outdir`` (see the module docstring); with the
    Polygraphy commands (and their notes) that check the plan on the same references, for polygraphy.txt."""
    outdir = Path(outdir)
    model = os.path.relpath(Path(model_path).resolve(), Path(relative_to or outdir).resolve())
    floats = [o for o in graph.outputs if graph.is_float(o)]
    nd = needs(criteria, floats)
    manifest = Manifest(plan.precision, sorted(plan.pins), target, [c.text() for c in criteria if c.is_output], not_checked,
                        tf32, SHIPPED, options.profile, options.recurrent)
    keep = reference_subset([_bytes(s) + _bytes(r) for s, r in zip(samples, references)], REFERENCE_MAX_BYTES)
    samples, references, of = [samples[i] for i in keep], [references[i] for i in keep], len(samples)
    manifest = write_references(outdir / FOLDER, samples, references, manifest)
    full = Plan(plan.precision, frozenset(plan.pins) | frozenset(forced_fp32(graph, plan)), plan.why)
    spec = ScriptSpec(full, target, tf32, model, "model.mixed.onnx", dynamic_inputs(graph), outputs_of(graph, full.pins), manifest,
                      nd, references, not_checked)
    write_text(outdir / SCRIPTS[0], verify_trt11(spec))
    write_text(outdir / SCRIPTS[1], verify_trt10(spec))
    return Verification(FOLDER, list(SCRIPTS), len(samples), of, nd.unmapped, not_checked), polygraphy_commands(spec)


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
