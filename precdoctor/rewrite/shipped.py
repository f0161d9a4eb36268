"""The rewritten model and what ships it: ``model.rewritten.onnx`` (FP32, for any converter), its mixed ONNX
(the low format everywhere; FP32 islands only for pins left by ``--fix auto``) and the TensorRT commands, whose
8.6-10 flags carry no layer precisions when the rewrites covered everything."""
from __future__ import annotations

from pathlib import Path

from ..ship.artifacts import trtexec11_command, trtexec_command
from ..core.files import write_text
from ..graph.loading import save_model
from ..graph import GraphView
from ..numerics.mixed import check, mixed_model
from ..planning.plan import Plan
from ..core.quoting import comment_safe
from ..runs import RewriteFiles
from ..numerics.schema import forced_fp32

MODEL = "model.rewritten.onnx"
MIXED = "model.rewritten.mixed.onnx"
TRTEXEC = "trtexec-rewritten.txt"
TRTEXEC11 = "trtexec-11-rewritten.txt"
ENGINE = "model.rewritten.plan"
FILES = (MODEL, MODEL + ".data", MIXED, MIXED + ".data", TRTEXEC, TRTEXEC11)


def _header(plan: Plan, rewrites: int, forced: dict[str, str]) -> str:
    pinned = (f"{len(plan.pins)} node(s) still pinned to FP32" if plan.pins else "no node pinned to FP32")
    out = f"# precdoctor: the rewritten model ({rewrites} rewrite(s), verified) in {plan.precision}, {pinned}; run from this folder with bash\n"
    if forced:
        out += (f"# and {len(forced)} node(s) kept FP32 because the ONNX schema has no {plan.precision} form:\n"
                + "".join(f"#   {comment_safe(n)}: {why}\n" for n, why in forced.items()))
    return out


def write(outdir: Path, graph: GraphView, plan: Plan, rewrites: int) -> RewriteFiles:
    """The files, written into ``outdir`` (the run's staging folder); names are relative to it."""
    outdir = Path(outdir)
    save_model(graph.model_with_data(), outdir / MODEL)
    mixed = mixed_model(graph, plan)
    check(mixed.model)
    save_model(mixed.model, outdir / MIXED)
    forced = forced_fp32(graph, plan)
    flags = Plan(plan.precision, frozenset(plan.pins) | frozenset(forced), plan.why)
    command, bad = trtexec_command(MODEL, flags, graph, engine=ENGINE)
    note = "".join(f"# WARNING: trtexec cannot name {comment_safe(b)} exactly; use the mixed ONNX\n" for b in bad)
    about = ("# TensorRT 8.6 - 10.x, weakly typed: " + ("no layer precisions, every layer may run in the low format\n"
                                                      if not flags.pins else "layer precisions only for the pins left\n"))
    header = _header(plan, rewrites, forced)
    write_text(outdir / TRTEXEC, header + about + note + command + "\n")
    write_text(outdir / TRTEXEC11, header + "# TensorRT 11 (strongly typed): the precision lives in the mixed ONNX\n"
               + trtexec11_command(MIXED, engine=ENGINE) + "\n")
    return RewriteFiles(MODEL, MIXED, TRTEXEC, TRTEXEC11, mixed.casts)
