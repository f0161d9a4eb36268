"""Run records as the text a person reads in a terminal: aligned tables, measures named for what they
count, and the verdict last, in words."""
from __future__ import annotations

import math
import os
from pathlib import Path
from collections import Counter

from ..backends.trt_layers import PinCheck
from ..core.limits import TOP_TENSORS
from ..numerics.targets import TARGETS
from ..runs import BisectRun, CompareRun, InputInfo, ScanRun, VerifyRun, WerRun


def g(x, spec: str = ".3g") -> str:
    """A number for people: inf and nan spelled out."""
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return format(x, spec)


def table(headers: list[str], rows: list[list], right: set[int] = frozenset(), indent: str = "  ") -> list[str]:
    """Columns aligned to their widest cell; ``right``: indexes of right-aligned (numeric) columns."""
    cells = [[str(c) for c in r] for r in [headers] + rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    fmt = lambda r: indent + "  ".join(c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(r).rstrip() for r in cells]


def _inputs(info: InputInfo) -> str:
    n = f"{info.samples} sample{'s' if info.samples != 1 else ''}"
    return f"{n} of seeded random data (seed {info.seed})" if info.random else f"{n} from {info.source}"


def _outputs(c) -> list[str]:
    """One row per output; where FP32 itself holds Inf/NaN, that comes first (the norms are over the rest, or nan)."""
    ref = any(o.metrics is not None and o.metrics.nonfinite_ref for o in c.outputs.values())
    rows = []
    for name, o in c.outputs.items():
        m = o.metrics
        first = [name] + ([f"{m.nonfinite_ref} of {m.elements}" if m else "-"] if ref else [])
        if o.kind == "exact":
            rows.append(first + ["-", "-", "-", "-", f"{o.mismatch} of {o.elements} elements differ from FP32"])
            continue
        rows.append(first + [g(m.rel_l2), g(m.max_abs), g(m.cosine, ".6f"), m.nonfinite_new, f"{o.positions_off} of {o.positions}"])
    head = ["output"] + (["FP32 itself Inf/NaN"] if ref else []) + ["rel. L2", "max abs", "cosine", "new Inf/NaN", "positions off"]
    return table(head, rows, set(range(1, len(head))))


def warning_lines(r) -> list[str]:
    """What the verdict rests on (random data, FP32's own Inf/NaN, Inf/NaN accepted inside), just before it."""
    return [f"WARNING: {w}" for w in r.warnings]


def compare_summary(r: CompareRun, top: int = TOP_TENSORS) -> str:
    c = r.comparison
    lines = [f"precdoctor compare: {r.model} in {r.precision.upper()}" + (f" with {len(r.pins)} node(s) pinned to FP32" if r.pins else "")
             + f" ({r.nodes} nodes, {len(c.tensors)} float tensors, {_inputs(r.inputs)}, {r.engine.backend}"
             + (f", target {r.engine.target}: constants {r.engine.constants}, TF32 {'on' if r.engine.tf32 else 'off'}"
                if r.engine.target else "") + ")",
             f"Inf/NaN origin:    {c.origin or '-'}" + (f"  (tensor {c.origin_tensor})" if c.origin_tensor else ""),
             f"first divergence:  {c.first_divergence or '-'}"]
    lines += coverage_lines(c.control_flow) + [f"note: {n}" for n in c.notes]
    lines.append("outputs (all samples):")
    lines += _outputs(c)
    worst = sorted(c.tensors, key=lambda t: (-(t.fault_nonfinite > 0), -t.rel_l2 if not math.isnan(t.rel_l2) else 0.0))[:top]
    if worst:
        lines.append(f"largest errors ({len(worst)} of {len(c.tensors)} tensors):")
        lines += table(["tensor #", "node", "op", "rel. L2", "SQNR dB", "new Inf/NaN", "FP32 |max|"],
                       [[t.index, t.node, t.op, g(t.rel_l2), g(t.sqnr_db, ".1f"), t.nonfinite_new, g(t.ref_absmax)] for t in worst],
                       {0, 3, 4, 5, 6})
    lines += baseline_lines(r.task) + decode_lines(r.task)
    lines += warning_lines(r)
    lines.append(f"verdict: {r.verdict.upper()}" + (" - " + "; ".join(r.reasons) if r.reasons else " - every output within tolerance")
                 + (f" (target {r.engine.target})" if r.engine.target else ""))
    return "\n".join(lines)


def baseline_lines(task) -> list[str]:
    """The FP32 baseline first (tasks/baseline.py): what every other task number is measured against."""
    return [task.baseline.summary()] if task is not None and task.baseline is not None else []


def decode_lines(task, departures: int = 3) -> list[str]:
    """Each configuration's decode against FP32's: token agreement, identical clips, the per-step logit
    error (teacher-forced, where the decoder is under test), and the first departures with the tokens on
    both sides."""
    if task is None or not task.decodes:
        return []
    rows, gone = [], []
    for d in task.decodes:
        errs = sorted(e for c in d.clips for e in c.logit_rel_l2)
        err = f"median {g(errs[len(errs) // 2])}, max {g(errs[-1])} ({len(errs)} steps)" if errs else None
        rows.append([d.config, f"{d.token_agreement:.3f}", f"{d.identical} of {len(d.clips)}", err])
        gone += [(d.config, c) for c in d.clips if c.departure is not None]
    # the encoder under test has no recorded decoder steps, so no logit error: no column for it
    logits = any(r[-1] is not None for r in rows)
    head = ["configuration", "token agreement", "identical"] + (["logit rel. L2 per step"] if logits else [])
    rows = [r if logits else r[:-1] for r in rows]
    lines = [f"decode against FP32's ({len(task.decodes[0].clips)} clips"
             + ("; logit error teacher-forced, on the recorded steps):" if logits else "):")]
    lines += table(head, [[x if x is not None else "-" for x in r] for r in rows], {1})
    for config, c in gone[:departures]:
        lines.append(f"  {config} departs on {c.id} at step {c.departure + 1} of {c.steps}: "
                     f"...{c.before[-30:]!r} then FP32 {c.fp32_token!r}, {config} {c.candidate_token!r}")
    rest = Counter(config for config, _ in gone[departures:])
    return lines + ([f"  ... and {', '.join(f'{n} more {config}' for config, n in rest.items())} departing clip(s)"] if rest else [])


def coverage_lines(coverage) -> list[str]:
    """How each If/Loop/Scan was analysed; what was not, said plainly."""
    return [f"{'control flow' if c.analysed else 'NOT ANALYSED'}: {c.op} {c.node}: {c.detail}" for c in coverage]


def scan_summary(r: ScanRun) -> str:
    lines = [f"precdoctor scan: {r.model} ({r.nodes} nodes, {r.tensors} float tensors, {_inputs(r.inputs)}"
             + (f", constants judged as target {r.target} converts them" if r.target else "") + ")"]
    if r.risks:
        lines += table(["severity", "kind", "where", "what"], [[x.severity, x.kind, x.node or x.tensor, x.detail] for x in r.risks])
    high = sum(x.severity == "high" for x in r.risks)
    lines += coverage_lines(r.control_flow)
    lines += warning_lines(r)
    lines.append(f"{len(r.risks)} risk(s), {high} high" if r.risks else "no risk: nothing out of FP16/BF16 range on these inputs")
    return "\n".join(lines)


def _yes(x) -> str:
    return "-" if x is None else ("yes" if x else "no")


def _bisect_tables(r: BisectRun) -> list[str]:
    lines = []
    b = r.baselines
    if b:
        lines.append("baselines (same model, inputs and acceptance):")
        lines += table(["method", "nodes in FP32", "passes", "evaluations"],
                       [["range rule (AutoCast-style)", g(b.range_rule.pins), _yes(b.range_rule.passed), b.range_rule.evaluations],
                        ["prefix bisection (Polygraphy-style)", g(b.prefix_bisection.pins), _yes(b.prefix_bisection.passed),
                         b.prefix_bisection.evaluations],
                        ["precdoctor", g(b.precdoctor.pins), _yes(b.precdoctor.passed), b.precdoctor.evaluations]], {1, 3})
    if r.task and r.task.rows:
        lines += baseline_lines(r.task)
        lines.append(f"task metric ({r.task.clips} clips):")
        lines += table(["configuration", "WER", "CER"], [[row.config, f"{100 * row.wer:.2f} %", f"{100 * row.cer:.2f} %"]
                                                          for row in r.task.rows], {1, 2})
    return lines + decode_lines(r.task)


def _cost(c) -> str:
    s = f"{c.fp32_nodes} node(s) in FP32, {c.casts} Casts, {g(c.fp32_flops)} FLOPs in FP32"
    return s + (f"; adds {c.nodes_added:+d} node(s), {c.flops_added:+,} FLOPs in the low format" if c.nodes_added or c.flops_added else "")


def rewrite_lines(r: BisectRun) -> list[str]:
    """The rewrite stage (--fix rewrite|auto): what was applied, its FP32 difference, both fixes' costs."""
    w = r.rewrite
    if w is None:
        return []
    lines = [f"rewrite (--fix {w.mode}): {w.status.upper()} in {w.evaluations} evaluation(s) - {w.message}"]
    if w.rewrites:
        lines += table(["rewrite", "FP32 max rel. error", "pins it replaces", "what"],
                       [[c.rewrite.id, g(c.fp32_max_rel, ".2g"), len(c.pins), c.rewrite.summary] for c in w.rewrites], {1, 2})
        lines.append(f"  cost, rewrite: {_cost(w.cost)}" + (f" ({len(w.pins)} pin(s) left)" if w.pins else ""))
        lines.append(f"  cost, pins:    {_cost(w.pins_cost)}")
    lines += [f"  not applied: {k}: {v}" for k, v in w.dropped.items()]
    lines += [f"  alternative {a.rewrite.id}: " + ", ".join(f"profile {p} {'passes' if ok else 'fails'}" for p, ok in a.passes.items())
              for a in w.alternatives]
    if w.targets:
        lines.append("  the rewritten model per target: " + "; ".join(f"{t.target} {t.plan_word()}" for t in w.targets))
    files = [f for f in (w.files.model, w.files.mixed_onnx, w.files.trtexec, w.files.trtexec11) if f]
    return lines + ([f"  artifacts (rewrite): {', '.join(files)}"] if files else [])


def where_lines(r: BisectRun, folder: str | None) -> list[str]:
    """Where everything went: the folder, the report to open, the plan, the run record, what to ship and to verify with."""
    a = r.artifacts
    root = Path(folder).resolve() if folder is not None else None

    def at(name: str) -> str:
        return str(root / name) if root is not None else name

    lines = [f"files in {root}{os.sep}" if root is not None else "files:"]
    if a.report:
        lines.append(f"  report:    {at(a.report)}  (open it in a browser)")
    lines.append("  the plan:  pins.json (pins and why; `precdoctor pins` re-emits any artifact from it)")
    lines.append("  the run:   run.json (this whole record; `precdoctor report run.json -o FILE.html` renders it)")
    ship = [f for f in (a.trtexec, a.polygraphy, a.autocast) if f]
    if a.trtexec11 or a.mixed_onnx:
        ship.append(" + ".join(f for f in (a.trtexec11, a.mixed_onnx) if f))
    if ship:
        lines.append("  to ship:   " + ", ".join(ship))
    w = r.rewrite.files if r.rewrite is not None else None
    rewritten = [f for f in (w.model, w.mixed_onnx, w.trtexec, w.trtexec11) if f] if w is not None else []
    if rewritten:
        lines.append("  rewritten: " + ", ".join(rewritten))
    v = r.verification
    if v is not None:
        held = f"{v.samples} sample(s)" + (f" of {v.of_samples}" if v.of_samples > v.samples else "")
        lines.append(f"  to verify: {', '.join(v.scripts)} on your TensorRT, against {v.references}/ ({held} and their FP32 "
                     "outputs); `precdoctor verify " + (str(root) if root is not None else "DIR") + "` on ONNX Runtime")
    lines.append("  journals:  journal*.jsonl (a rerun with the same inputs replays every judged plan from them)")
    return lines


def bisect_summary(r: BisectRun, folder: str | None = None) -> str:
    """The run, the verdict's plan first: a rewrite that is the verdict leads, the pins follow as its alternative."""
    lines = [f"precdoctor bisect: {r.model} in {r.precision.upper()} ({_inputs(r.inputs)})"]
    lead = r.rewrite is not None and r.rewrite.applied
    if lead:
        lines += rewrite_lines(r)
    if r.pins:
        what = "pins" if r.fix == "pins" else "the pin alternative"
        lines.append(f"{what} ({len(r.pins)} node(s) in FP32, {r.artifacts.casts} Cast nodes at precision borders):")
        lines += table(["node", "op", "why"], [[p, r.node_ops.get(p, "?"), r.why.get(p, "")] for p in r.pins])
    lines.append(f"evaluations: {r.evaluations} (bound {r.evaluation_bound}: k*ceil(log2 N)+3 per search, for {r.candidates} candidates)"
                 + (f", {r.evaluations_resumed} replayed from the journal" if r.evaluations_resumed else "")
                 + ("; 1-minimal: verified" if r.one_minimal and r.pins else ""))
    if r.bound_note:
        lines.append(f"  BOUND EXCEEDED: {r.bound_note}")
    lines += _bisect_tables(r)
    lines += _target_lines(r, "the pin alternative" if lead else "this plan")
    if not lead:
        lines += rewrite_lines(r)
    lines += warning_lines(r)
    lines += where_lines(r, folder)
    lines.append(f"verdict: {r.verdict.upper()} - {r.message}" + (f" (target {r.target})" if r.target else ""))
    return "\n".join(lines)


def _target_lines(r: BisectRun, plan: str = "this plan") -> list[str]:
    """The target the plan is for, the TF32 choice of the commands, and the verdicts under the other targets."""
    lines = [f"target: {r.target} - {TARGETS[r.target].engine}" + (
        f"; constants {r.engine.constants}, profile {r.engine.profile}, recurrent ops {r.engine.recurrent}" if r.engine.constants else "")
    ] if r.target in TARGETS else []
    if r.tf32 is not None:
        lines.append(f"TF32: {r.tf32.note}")
    word = lambda v: "-" if v is None else ("passes" if v else "FAILS")  # noqa: E731
    others = [f"{t.target}: naive {word(t.naive)}, {plan} {word(t.plan)}" for t in r.targets if not t.own]
    if others:
        lines.append("other targets (output criteria): " + "; ".join(others))
    return lines


def wer_summary(r: WerRun) -> str:
    t = r.task
    lines = [f"precdoctor wer: {r.model} ({t.task.get('task', '?')}, {t.clips} clips, {r.engine.backend}"
             + (f", target {r.engine.target}" if r.engine.target else "") + ")"] + baseline_lines(t)
    lines += table(["configuration", "WER", "CER", "substitutions", "insertions", "deletions", "words", "clips", "time"],
                   [[row.config, f"{100 * row.wer:.2f} %", f"{100 * row.cer:.2f} %", row.substitutions, row.insertions,
                     row.deletions, row.words, row.utterances, f"{row.seconds:.1f} s"] for row in t.rows], set(range(1, 9)))
    if t.worst:
        lines.append("worst utterances (by naive WER):")
        for u in t.worst[:3]:
            lines.append(f"  [{u.id}] WER {100 * u.wer_naive:.1f} %")
            lines += [f"    {k:10s} {v}" for k, v in (("reference", u.reference), ("fp32", u.fp32), *u.hypotheses.items())]
    return "\n".join(lines + decode_lines(t) + warning_lines(r))


def verify_summary(r: VerifyRun) -> str:
    lines = [f"precdoctor verify: {r.folder} ({r.precision.upper()}, {len(r.pins)} pin(s), target {r.target or '-'}) on "
             f"{r.engine.backend}: {r.engine.engine}"]
    for plan in r.plans or [None]:
        samples = r.samples if plan is None else plan.samples
        if plan is not None and len(r.plans) > 1:
            what = "the rewritten model" if plan.fix == "rewrite" else "the pins"
            lines.append(f"{'the verdict' if plan.role == 'verdict' else 'its alternative'}: {what} ({len(plan.pins)} pin(s), "
                         f"{plan.model}): {'PASS' if plan.passed else 'FAIL'}")
        lines += table(["sample", "verdict", "measures"], [[v.sample, "pass" if v.passed else "FAIL: " + ", ".join(v.failed),
                                                           ", ".join(f"{k} {g(m)}" for k, m in v.measures.items())] for v in samples])
    if r.not_checked:
        lines.append("not checked here (outputs cannot show them; the bisect confirmed them): " + ", ".join(r.not_checked))
    lines.append(f"verdict: {'PASS' if r.passed else 'FAIL'} - " + ", ".join(r.accept) + f" on {len(r.samples)} sample(s)"
                 + (f", for each of {len(r.plans)} plans" if len(r.plans) > 1 else ""))
    return "\n".join(lines)


def pin_check_summary(r: PinCheck) -> str:
    rows = [["honoured", p, ", ".join(r.layers_of[p])] for p in r.honoured]
    rows += [["NOT HONOURED", b.pin, "runs in low-precision layer(s): " + ", ".join(b.layers)] for b in r.not_honoured]
    rows += [["unresolved", p, "no engine layer names it; it may have been folded away"] for p in r.unresolved]
    rows += [["unknown", p, "its engine layers carry no output types"] for p in r.untyped]
    verdict = "every pin honoured" if not r.not_honoured and not r.unresolved and not r.untyped else (
        f"{len(r.not_honoured)} pin(s) not honoured, {len(r.unresolved)} unresolved, {len(r.untyped)} unknown")
    return "\n".join(table(["pin", "node", "engine layers"], rows) + [f"verdict: {verdict}"])
