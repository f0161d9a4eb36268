"""Run records as the text a person reads in a terminal (the command line prints these)."""
from __future__ import annotations

import math

from .backends.trt_layers import PinCheck
from .limits import TOP_TENSORS
from .runs import BisectRun, CompareRun, ScanRun, WerRun


def g(x, spec: str = ".3g") -> str:
    """A number for people: inf and nan spelled out."""
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return format(x, spec)


def compare_summary(r: CompareRun, top: int = TOP_TENSORS) -> str:
    c = r.comparison
    lines = [f"precdoctor compare: {r.model} in {r.precision}" + (f" with {len(r.pins)} FP32 pins" if r.pins else "")
             + f" ({r.nodes} nodes, {len(c.tensors)} float tensors, {r.inputs.samples} sample(s), {r.engine.backend})"]
    lines.append(f"verdict: {c.verdict.upper()}")
    lines += [f"  {reason}" for reason in c.reasons]
    lines.append(f"Inf/NaN origin:   {c.origin or '-'}" + (f"  (tensor {c.origin_tensor})" if c.origin_tensor else ""))
    lines.append(f"first divergence: {c.first_divergence or '-'}")
    for name, o in c.outputs.items():
        if o.kind == "exact":
            lines.append(f"output {name}: {o.mismatch} of {o.elements} elements differ from FP32")
            continue
        m = o.metrics
        lines.append(f"output {name}: rel-L2 {g(m.rel_l2)}, max-abs {g(m.max_abs)}, cosine {g(m.cosine, '.6f')}, "
                     f"non-finite {m.nonfinite_new}, positions off {o.positions_off}/{o.positions}")
    worst = sorted(c.tensors, key=lambda t: (-(t.nonfinite_new > 0), -t.rel_l2 if not math.isnan(t.rel_l2) else 0.0))[:top]
    if worst:
        lines.append(f"top {len(worst)} tensors by error:")
        lines.append(f"  {'#':>4}  {'node':40s} {'op':18s} {'rel-L2':>9} {'SQNR dB':>8} {'non-fin':>8} {'|max| FP32':>11}")
        for t in worst:
            lines.append(f"  {t.index:>4}  {t.node[:40]:40s} {t.op[:18]:18s} {g(t.rel_l2):>9} {g(t.sqnr_db, '.1f'):>8} "
                         f"{t.nonfinite_new:>8} {g(t.ref_absmax):>11}")
    return "\n".join(lines)


def scan_summary(r: ScanRun) -> str:
    lines = [f"precdoctor scan: {r.nodes} nodes, {r.tensors} float tensors, {len(r.risks)} risk(s)"]
    for risk in r.risks:
        lines.append(f"  [{risk.severity:6s}] {risk.kind:15s} {(risk.node or risk.tensor)[:60]}: {risk.detail}")
    if not r.risks:
        lines.append("  nothing out of FP16/BF16 range on these inputs")
    return "\n".join(lines)


def _yes(x) -> str:
    return "-" if x is None else ("yes" if x else "no")


def bisect_summary(r: BisectRun) -> str:
    lines = [f"precdoctor bisect: {r.verdict.upper()} - {r.message}"]
    if r.pins:
        lines.append(f"pins ({len(r.pins)}, {r.artifacts.casts} precision boundaries):")
        lines += [f"  {p}  [{r.node_ops.get(p, '?')}]  {r.why.get(p, '')}" for p in r.pins]
    lines.append(f"evaluations: {r.evaluations} (bound k*ceil(log2 N)+3 = {r.evaluation_bound}, {r.candidates} candidates)"
                 + (f", {r.evaluations_resumed} from the journal" if r.evaluations_resumed else "")
                 + ("; 1-minimal: verified" if r.one_minimal and r.pins else ""))
    b = r.baselines
    if b:
        lines.append("baselines (same model, inputs and acceptance):")
        lines.append(f"  {'method':30s} {'FP32 nodes':>10} {'passes':>7} {'evaluations':>12}")
        rows = [("range rule (AutoCast-style)", b.range_rule.pins, b.range_rule.passed, b.range_rule.evaluations),
                ("prefix bisection (Polygraphy)", b.prefix_bisection.pins, b.prefix_bisection.passed, b.prefix_bisection.evaluations),
                ("precdoctor", b.precdoctor.pins, b.precdoctor.passed, b.precdoctor.evaluations)]
        lines += [f"  {name:30s} {g(pins):>10} {_yes(passed):>7} {ev:>12}" for name, pins, passed, ev in rows]
    if r.task and r.task.rows:
        lines.append("task metric:")
        lines += [f"  {row.config:12s} WER {row.wer:.4f}  CER {row.cer:.4f}" for row in r.task.rows]
    files = r.artifacts.command_files()
    lines.append("artifacts: " + ", ".join(list(files.values()) + [f for f in (r.artifacts.mixed_onnx, r.artifacts.report) if f]))
    if r.artifacts.trtexec_unsupported:
        lines.append(f"  note: trtexec cannot name {len(r.artifacts.trtexec_unsupported)} pinned layer(s); see trtexec.txt")
    return "\n".join(lines)


def wer_summary(r: WerRun) -> str:
    t = r.task
    lines = [f"precdoctor wer: {r.model} ({t.task.get('task', '?')}, {t.clips} clips, {r.engine.backend})",
             f"  {'config':12s} {'WER':>8} {'CER':>8} {'S':>5} {'I':>5} {'D':>5} {'words':>6} {'utts':>5} {'time s':>7}"]
    for row in t.rows:
        lines.append(f"  {row.config:12s} {row.wer:8.4f} {row.cer:8.4f} {row.substitutions:5d} {row.insertions:5d} "
                     f"{row.deletions:5d} {row.words:6d} {row.utterances:5d} {row.seconds:7.1f}")
    if t.worst:
        lines.append("worst utterances (by naive WER):")
        for u in t.worst[:3]:
            lines.append(f"  [{u.id}] WER {u.wer_naive:.2f}")
            lines += [f"    {k:10s} {v}" for k, v in (("reference", u.reference), ("fp32", u.fp32), *u.hypotheses.items())]
    return "\n".join(lines)


def pin_check_summary(r: PinCheck) -> str:
    lines = [f"honoured      {p}  ({', '.join(r.layers_of[p])})" for p in r.honoured]
    lines += [f"NOT HONOURED  {b.pin}  runs in low-precision layer(s): {', '.join(b.layers)}" for b in r.not_honoured]
    lines += [f"unresolved    {p}  (no engine layer names it; it may have been folded away)" for p in r.unresolved]
    return "\n".join(lines)
