"""Artifacts to ship a plan: flags for TensorRT 8.6-10, the mixed ONNX for TensorRT 11, AutoCast.

Every command names files relative to the output folder it is written in, so
each runs as pasted from that folder. Quoting follows the parsers that read them:
- trtexec (samples/common/sampleOptions.cpp) splits ``--layerPrecisions`` on
  ',' with no escape, then each item on its *last* ':' and strips single
  quotes from the name. So a name is wrapped in '...', a name holding ',' or
  ''' cannot be expressed at all (reported, not silently mangled), and the
  whole flag is shell-quoted.
- Polygraphy takes one shell word per ``name:float32`` and splits on the last
  ':' (args_util.parse_arglist_to_dict), so any name works once shell-quoted.
- AutoCast's ``--nodes_to_exclude`` takes regexes: anchored and escaped.
- Names in comment lines are JSON-quoted ASCII, so no line break can end the comment.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .files import save_model, write_text
from .graph import GraphView
from .mixed import check, mixed_model
from .plan import Plan
from .records import Record

FORMATS = ("trtexec", "polygraphy", "autocast", "mixed-onnx")


@dataclass
class Artifacts(Record):
    """File names (in the output folder) of what a run wrote, and what they could not express."""

    trtexec: str | None = None
    polygraphy: str | None = None
    autocast: str | None = None
    mixed_onnx: str | None = None
    trtexec11: str | None = None
    report: str | None = None
    trtexec_unsupported: list[str] = field(default_factory=list)
    casts: int | None = None

    def command_files(self) -> dict[str, str]:
        """Artifact -> file name, for the command files the report shows."""
        return {k: v for k, v in (("trtexec", self.trtexec), ("polygraphy", self.polygraphy), ("trtexec11", self.trtexec11),
                                  ("autocast", self.autocast)) if v}


def comment_safe(name: str) -> str:
    """A name as it may appear in a comment line: JSON-quoted ASCII (no newline, CR, NUL or Unicode line separator)."""
    return json.dumps(name, ensure_ascii=True)


def trtexec_unsupported(name: str) -> bool:
    return "," in name or "'" in name


def _trt_name(name: str) -> str:
    return f"'{name}'" if re.search(r"[^A-Za-z0-9_./\-]", name) or ":" in name else name


def trtexec_command(model: str, plan: Plan, graph: GraphView | None = None) -> tuple[str, list[str]]:
    """Returns (command, names that trtexec cannot express)."""
    fmt = plan.format
    pins = sorted(plan.pins)
    bad = [p for p in pins if trtexec_unsupported(p)]
    ok = [p for p in pins if not trtexec_unsupported(p)]
    parts = ["trtexec", f"--onnx={shlex.quote(model)}", f"--{fmt.trt_name}"]
    if ok:
        outs = {p: max(1, len(graph.node(p).output)) if graph else 1 for p in ok}
        parts.append("--precisionConstraints=obey")
        parts.append(shlex.quote("--layerPrecisions=" + ",".join(f"{_trt_name(p)}:fp32" for p in ok)))
        parts.append(shlex.quote("--layerOutputTypes=" + ",".join(f"{_trt_name(p)}:{'+'.join(['fp32'] * outs[p])}" for p in ok)))
    parts += ["--profilingVerbosity=detailed", "--exportLayerInfo=layers.json", "--saveEngine=model.plan"]
    return " \\\n    ".join(parts), bad


def polygraphy_args(model: str, plan: Plan) -> str:
    fmt = plan.format
    parts = ["polygraphy", "run", shlex.quote(model), "--trt", "--onnxrt", f"--{fmt.name}"]
    if plan.pins:
        parts += ["--precision-constraints", "obey", "--layer-precisions"]
        parts += [shlex.quote(f"{p}:float32") for p in sorted(plan.pins)]
    return " \\\n    ".join(parts)


def autocast_regexes(pins) -> list[str]:
    return [f"^{re.escape(p)}$" for p in sorted(pins)]


def autocast_command(model: str, plan: Plan, out: str = "model.autocast.onnx") -> str:
    parts = ["python", "-m", "modelopt.onnx.autocast", f"--onnx_path={shlex.quote(model)}", f"--output_path={shlex.quote(out)}",
             f"--low_precision_type={plan.precision}"]
    if plan.pins:
        parts.append("--nodes_to_exclude")
        parts += [shlex.quote(r) for r in autocast_regexes(plan.pins)]
    # inf thresholds: AutoCast's range rules would add FP32 islands of their own; the search already decided
    parts += ["--data_max=inf", "--init_max=inf", "--keep_io_types"]
    return " \\\n    ".join(parts)


def trtexec11_command(mixed: str) -> str:
    return " \\\n    ".join(["trtexec", f"--onnx={shlex.quote(mixed)}", "--profilingVerbosity=detailed",
                             "--exportLayerInfo=layers.json", "--saveEngine=model.plan"])


def write_artifacts(outdir: Path, model_path: str, graph: GraphView, plan: Plan, formats=FORMATS) -> Artifacts:
    """Write the requested artifacts into outdir; the model is named relative to it."""
    outdir = Path(outdir)
    model = os.path.relpath(Path(model_path).resolve(), outdir.resolve())
    out = Artifacts()
    header = f"# precdoctor: {plan.precision} with {len(plan.pins)} node(s) pinned to FP32; run from this folder\n"
    if "trtexec" in formats:
        cmd, bad = trtexec_command(model, plan, graph)
        note = ""
        if bad:
            note = ("# WARNING: trtexec cannot name these layers (',' or ''' in the name); use polygraphy.txt or the mixed ONNX:\n"
                    + "".join(f"#   {comment_safe(b)}\n" for b in bad))
        write_text(outdir / "trtexec.txt", header + "# TensorRT 8.6 - 10.x (weakly typed build with layer precision constraints)\n"
                   + note + cmd + "\n")
        out.trtexec, out.trtexec_unsupported = "trtexec.txt", bad
    if "polygraphy" in formats:
        write_text(outdir / "polygraphy.txt", header + "# TensorRT 8.6 - 10.x via Polygraphy (compares against ONNX Runtime)\n"
                   + polygraphy_args(model, plan) + "\n")
        out.polygraphy = "polygraphy.txt"
    if "autocast" in formats:
        write_text(outdir / "autocast.txt", header + "# ModelOpt AutoCast: the same FP32 islands as a mixed ONNX\n"
                   + autocast_command(model, plan) + "\n")
        out.autocast = "autocast.txt"
    if "mixed-onnx" in formats:
        mixed = mixed_model(graph, plan)
        check(mixed.model)
        save_model(mixed.model, outdir / "model.mixed.onnx")
        write_text(outdir / "trtexec-11.txt", header + "# TensorRT 11 is always strongly typed: the precision lives in the ONNX graph,\n"
                   "# so there are no precision flags (--fp16 and --layerPrecisions were removed).\n"
                   + trtexec11_command("model.mixed.onnx") + "\n")
        out.mixed_onnx, out.trtexec11, out.casts = "model.mixed.onnx", "trtexec-11.txt", mixed.casts
    return out
