"""The report's rewrite section (``bisect --fix rewrite|auto``): each rewrite before and after, its FP32
difference, what fails without it, beside the pins it replaces, and what each fix costs."""
from __future__ import annotations

from pathlib import Path

from ..ship.artifacts import read_command_file
from ..planning.plan import config_name
from ..rewrite import FAMILIES
from ..runs import BisectRun, Cost
from ..core.status import RewriteStatus
from .numbers import count, flops, num, pct

STATUS = {RewriteStatus.FIXED: "fixed by rewrites alone: every node in the low format",
          RewriteStatus.PARTIAL: "fixed by rewrites and the pins they do not cover",
          RewriteStatus.INSUFFICIENT: "the rewrites alone do not meet the acceptance",
          RewriteStatus.REFUSED: "refused: the rewrites would add a failure", RewriteStatus.NONE: "no rewrite applies"}


def _error(x: float) -> str:
    return "0 (bitwise identical)" if x == 0 else num(x, ".2g")


def _cost(c: Cost, low: bool = False) -> dict:
    out = {"fp32_nodes": count(c.fp32_nodes), "casts": count(c.casts), "fp32_flops": flops(c.fp32_flops)}
    out["added"] = (f"{c.nodes_added:+d} node(s), {'+' if c.flops_added >= 0 else '-'}{flops(abs(c.flops_added))} in the low format"
                    if low else "-")
    return out


def _rows(run: BisectRun) -> list[dict]:
    rows = []
    for c in run.rewrite.rewrites:
        r = c.rewrite
        rows.append({"id": r.id, "family": FAMILIES.get(r.family, r.family), "summary": r.summary, "exact": r.exact,
                     "before": "\n".join(r.before), "after": "\n".join(r.after), "note": r.note,
                     "error": _error(c.fp32_max_rel), "without": ", ".join(c.without) or "-",
                     "pins": c.pins, "pin_cost": _cost(c.pin_cost), "cost": _cost(c.cost, low=True)})
    return rows


def rewrite_sentence(run: BisectRun) -> str:
    w = run.rewrite
    n = len(w.rewrites)
    fix = f"{n} rewrite{'s' if n != 1 else ''} restore{'' if n != 1 else 's'} it with " + (
        "every node in " + run.precision.upper() if not w.pins else f"{len(w.pins)} node(s) left in FP32")
    t = run.task
    row = t.row(config_name(run.precision, w.pins, rewritten=True)) if t is not None else None
    fp32 = t.row("fp32") if t is not None else None
    if row and fp32:
        fix += f" (WER {pct(row.wer)} against {pct(fp32.wer)} in FP32)"
    return fix + f"; the pin alternative keeps {len(run.pins)} node(s) in FP32"


def rewrite_section(run: BisectRun, outdir: Path | None) -> dict | None:
    w = run.rewrite
    if w is None:
        return None
    commands = []
    for title, name in (("TensorRT 8.6 - 10.x, the rewritten model", w.files.trtexec),
                        ("TensorRT 11, the rewritten mixed ONNX", w.files.trtexec11)):
        text = read_command_file(outdir, name) if outdir is not None and name else None
        if text is not None:
            commands.append({"title": f"{title} ({name})", "text": text})
    worst = max(w.fp32_outputs.values(), default=None)
    return {"mode": w.mode, "status": w.status, "status_text": STATUS[w.status], "message": w.message, "rows": _rows(run),
            "evaluations": w.evaluations, "outputs_error": _error(worst) if worst is not None else "-",
            "tensors": len(w.fp32_tensors), "pins_left": w.pins, "cost": _cost(w.cost, low=True), "pins_cost": _cost(w.pins_cost),
            "dropped": w.dropped, "commands": commands, "log": w.evaluation_log, "edges": w.edges,
            "targets": [{"target": t.target, "assumptions": t.assumptions, "verdict": t.plan_word(), "own": t.own} for t in w.targets], "model": w.files.model, "mixed": w.files.mixed_onnx,
            "alternatives": [{"id": a.rewrite.id, "replaces": a.replaces, "summary": a.rewrite.summary, "note": a.rewrite.note,
                              "error": _error(a.fp32_max_rel), "after": "\n".join(a.rewrite.after),
                              "passes": ", ".join(f"{p}: {'passes' if ok else 'fails (' + ', '.join(a.failed.get(p, [])) + ')'}"
                                                  for p, ok in a.passes.items())} for a in w.alternatives]}
