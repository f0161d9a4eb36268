"""What the report shows, gathered from any run record into one object the template reads.

The template never looks into a run record itself: a bisect, compare or wer
run becomes a ``Page`` here, so a renamed field fails in Python, loudly, and
the template stays about presentation. Every number leaves here as text with
its unit, and says whether it is per sample or summed over the samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..ship.artifacts import read_command_file
from ..analysis.comparison import Comparison
from ..core.formats import get_format
from ..core.limits import REPORT_TENSORS, REPORT_TRACE
from ..planning.plan import config_name
from ..runs import BisectRun, CompareRun, WerRun
from ..core.status import BisectVerdict, CompareVerdict
from .numbers import count, flops, num, pct
from .rewrite import rewrite_section, rewrite_sentence
from .task import decode_steps, decodes, task_rows, worst

ARTIFACT_TITLES = {"trtexec": "TensorRT 8.6 - 10.x (trtexec.txt)", "polygraphy": "TensorRT 8.6 - 10.x via Polygraphy (polygraphy.txt)",
                   "trtexec11": "TensorRT 11, the mixed ONNX (trtexec-11.txt)", "autocast": "ModelOpt AutoCast (autocast.txt)",
                   "verify_trt11": "Check it on TensorRT 11.1+ (verify-trt11.sh)",
                   "verify_trt10": "Check it on TensorRT 8.6-10.x with Polygraphy (verify-trt10.sh)"}
FIRST_SCREEN = ("trtexec", "trtexec11")  # the commands the fix box shows
STAGES = {"load": "loading the model and inputs", "localize": "comparing the naive plan", "search": "searching pins",
          "baselines": "baselines", "compare": "comparing the pinned plan", "task": "task metric", "transcribe": "transcribing",
          "scan": "scanning", "total": "total"}


@dataclass
class PinRow:
    node: str
    op: str
    why: str
    elements: str
    flops: str
    flop_share: str


@dataclass
class Page:
    command: str
    model: str
    precision: str
    verdict: str
    sentence: str
    subtitle: str
    samples: int = 1
    naive: Comparison | None = None
    series: list[tuple[str, Comparison]] = field(default_factory=list)  # the error plots' lines
    marks: list[tuple[str, str]] = field(default_factory=list)  # (node, what) marked on the plots
    pins: list[PinRow] = field(default_factory=list)
    forced: dict[str, str] = field(default_factory=dict)  # FP32 by the schema, pinned in every artifact: node -> why
    cost: str = ""
    search: str = ""
    artifacts: list[dict] = field(default_factory=list)
    commands: list[dict] = field(default_factory=list)  # the first screen's
    mixed_onnx: str | None = None
    task: object | None = None  # TaskReport
    task_rows: list[dict] = field(default_factory=list)
    worst: list[dict] = field(default_factory=list)
    decodes: list[dict] = field(default_factory=list)  # per configuration: its decode against FP32's, per clip (task.py)
    decode_steps: list = field(default_factory=list)  # DecodeReports with per-step logit errors, for the figure
    baselines: list[dict] = field(default_factory=list)
    offenders: list = field(default_factory=list)
    trace: list = field(default_factory=list)
    trace_more: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)
    evaluations: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the run's: random data, FP32's own Inf/NaN, Inf/NaN accepted inside
    targets: list[dict] = field(default_factory=list)  # the naive and the found plan under every target
    verify: list[str] = field(default_factory=list)  # commands that check the plan on the user's engine
    rewrite: dict | None = None  # the fix by rewrite (report/rewrite.py)


def verdict_sentence(run, naive: Comparison | None) -> str:
    prec = run.precision.upper()
    if run.command == "wer":
        return f"word error rate of {run.model} per configuration, on {run.task.clips} clips."
    if run.verdict == CompareVerdict.REFERENCE_NONFINITE:  # the FP32 reference itself is NaN: nothing is blamed on the format
        return "; ".join(run.reasons) + "."
    if run.verdict in (BisectVerdict.HEALTHY, CompareVerdict.OK):
        fails = [t.target for t in run.targets if t.naive is False] if isinstance(run, BisectRun) else []
        return f"{prec} is healthy on these inputs: no node needs FP32" + (
            f" on target {run.target}; on {', '.join(fails)} it fails." if fails else ".")
    parts = []
    origin = (naive.origin or naive.first_divergence) if naive else None
    if origin:
        t, limit = naive.of_node(origin), get_format(run.precision).max_finite
        what = f"{prec} breaks at {origin}"
        if t and t.ref_absmax > limit:
            what += f": its FP32 output reaches {t.ref_absmax:.3g} > {limit:.6g} on {count(t.overflow)} elements"
        elif t and math.isfinite(t.growth):
            what += f": its error grows {t.growth:.3g}x over its inputs"
        parts.append(what)
    for name, o in (naive.outputs if naive else {}).items():
        if not o.diverges:
            continue
        if o.kind == "exact":
            parts.append(f"{count(o.mismatch)} of {count(o.elements)} elements of {name} differ from FP32")
        elif o.metrics.nonfinite_new:
            parts.append(f"{count(o.metrics.nonfinite_new)} Inf/NaN values reach output {name}")
        elif o.positions_off:
            parts.append(f"{count(o.positions_off)} of {count(o.positions)} positions of {name} are silently corrupted "
                         "(finite but off by more than " + (f"{naive.tolerance.atol:g})" if naive.tolerance.atol is not None
                                                             else "the format's rounding at that magnitude)"))
        else:
            parts.append(f"output {name} is off by {o.metrics.rel_l2:.3g} relative L2")
    if isinstance(run, BisectRun):
        parts += _fix_sentence(run)
    return "; ".join(parts) + "."


def _fix_sentence(run: BisectRun) -> list[str]:
    if run.rewrite is not None and run.rewrite.applied:
        return [rewrite_sentence(run)]
    if run.verdict == BisectVerdict.UNFIXED:
        return ["no plan met the acceptance: " + run.message]
    if run.verdict == BisectVerdict.MOSTLY_FP32:
        return [run.message]
    fails = [t.target for t in run.targets if t.plan is False]
    where = [f"on target {run.target} this plan passes; on {', '.join(fails)} it fails"] if fails else []
    fine = [t.target for t in run.targets if t.naive and not t.own]
    where += [f"on {', '.join(fine)} the naive plan already passes"] if fine and run.pins else []
    n = len(run.pins)
    fix = f"pinning {n} node{'s' if n != 1 else ''} to FP32 restores it"
    t = run.task
    if t is not None:
        p = t.row(config_name(run.precision, run.pins)) if run.pins else None
        naive, fp32 = t.row(run.precision), t.row("fp32")
        if p and naive and fp32:
            fix += f" (WER {pct(p.wer)} against {pct(naive.wer)} naive {run.precision.upper()} and {pct(fp32.wer)} in FP32)"
    return [fix] + where


def _pin_rows(run: BisectRun) -> list[PinRow]:
    elems: dict[str, int] = {}
    for t in run.comparison.naive.tensors:
        elems[t.node] = elems.get(t.node, 0) + t.elements
    total = run.flops.total
    return [PinRow(p, run.node_ops.get(p, ""), run.why.get(p, ""), count(elems.get(p, 0)), flops(run.flops.pinned.get(p)),
                   pct(run.flops.pinned[p] / total if p in run.flops.pinned and total else None)) for p in run.pins]


def _cost(run: BisectRun) -> str:
    f = run.flops
    parts = [f"{len(run.pins)} of {count(run.nodes)} nodes in FP32 ({pct(len(run.pins) / max(run.nodes, 1))})"]
    if f.total:
        parts.append(f"{flops(f.pinned_total)} of {flops(f.total)} ({pct(f.pinned_total / f.total)}) on the first sample")
    if run.artifacts.casts is not None:
        parts.append(f"{run.artifacts.casts} Cast nodes at precision borders in the mixed ONNX")
    return "; ".join(parts)


def _search_line(run: BisectRun) -> str:
    line = f"found in {run.evaluations} evaluations among {count(run.candidates)} candidate nodes (bound {run.evaluation_bound})"
    if run.bound_note:
        line += f"; bound exceeded: {run.bound_note}"
    if run.evaluations_resumed:
        line += f", {run.evaluations_resumed} replayed from the journal"
    return line + ("; 1-minimal: dropping any single pin breaks acceptance (verified)" if run.one_minimal and run.pins else "")


def _artifacts(run: BisectRun, outdir: Path | None) -> list[dict]:
    """The command files of the run, read only from inside its own folder (artifacts.read_command_file)."""
    if outdir is None:
        return []
    blocks = []
    for key, name in run.artifacts.command_files().items():
        text = read_command_file(outdir, name)
        if text is None:
            continue  # not a plain file inside the run's folder: nothing is read
        blocks.append({"key": key, "title": ARTIFACT_TITLES[key], "file": name, "text": text, "lines": text.count("\n") + 1,
                       "command": "\n".join(ln for ln in text.split("\n") if ln and not ln.startswith("#"))})
    return blocks


def _baselines(run: BisectRun) -> list[dict]:
    b = run.baselines
    if b is None:
        return []
    yes = lambda x: "not judged (budget)" if x is None else ("yes" if x else "no")  # noqa: E731
    pb = b.prefix_bisection
    return [{"method": f"range rule, as ModelOpt AutoCast ({b.range_rule.rule})", "pins": count(b.range_rule.pins),
             "passes": yes(b.range_rule.passed), "evaluations": b.range_rule.evaluations},
            {"method": "prefix bisection, as Polygraphy debug precision (the first K nodes in FP32)",
             "pins": "-" if pb.pins is None else count(pb.pins), "passes": yes(pb.passed), "evaluations": pb.evaluations},
            {"method": "precdoctor", "pins": count(b.precdoctor.pins), "passes": yes(b.precdoctor.passed), "evaluations": b.precdoctor.evaluations}]


def _targets(run: BisectRun) -> list[dict]:
    word = lambda v: "-" if v is None else ("passes" if v else "fails")  # noqa: E731
    return [{"target": t.target + (" (this run)" if t.own else ""), "assumptions": t.assumptions, "naive": word(t.naive),
             "plan": word(t.plan) + (f" ({', '.join(t.failed)})" if t.failed else "")} for t in run.targets]


def _verify_lines(run: BisectRun) -> list[str]:
    a = run.artifacts
    return ([f"bash {a.verify_trt11}   # TensorRT 11.1+: trtexec's own accuracy check"] if a.verify_trt11 else []) + (
        [f"bash {a.verify_trt10}   # TensorRT 8.6-10.x: trtexec builds, Polygraphy checks"] if a.verify_trt10 else []) + (
        ["precdoctor verify . --backend ort-cuda   # ONNX Runtime CUDA"] if run.verification else [])


def _offenders(c: Comparison) -> list:
    return sorted(c.tensors, key=lambda t: (t.fault_nonfinite == 0, -t.rel_l2 if not math.isnan(t.rel_l2) else 0.0))[:REPORT_TENSORS]


def _common(run, naive: Comparison) -> Page:
    sub = (f"{count(run.nodes)} nodes, {run.inputs.samples} input sample{'s' if run.inputs.samples != 1 else ''} ({run.inputs.source}), "
           f"{run.engine.engine}" + (f", profile {run.engine.profile}" if run.engine.profile else "")
           + (f", recurrent ops {run.engine.recurrent}" if run.engine.recurrent else "")
           + (f", target {run.engine.target} (constants {run.engine.constants})" if run.engine.target else ""))
    page = Page(run.command, run.model, run.precision, run.verdict, verdict_sentence(run, naive), sub, run.inputs.samples)
    page.naive, page.offenders = naive, _offenders(naive)
    page.trace, page.trace_more = naive.trace[:REPORT_TRACE], max(0, len(naive.trace) - REPORT_TRACE)
    page.marks = [(n, w) for n, w in ((naive.origin, "Inf/NaN origin"), (naive.first_divergence, "first divergence")) if n]
    page.versions, page.notes, page.warnings = {"precdoctor": "?", **run.versions}, list(naive.notes), run.warnings
    page.facts = [("origin / first divergence", f"{naive.origin or '-'} / {naive.first_divergence or '-'}"),
                  ("engine", f"{run.engine.backend}: {run.engine.engine}")]
    page.facts += [(f"{c.op} {c.node}", ("" if c.analysed else "NOT ANALYSED: ") + c.detail) for c in naive.control_flow]
    page.facts += [(f"time, {STAGES.get(k, k)}", num(v, ".2f", "s")) for k, v in run.timing.items()]
    return page


def build_page(run, outdir: Path | None) -> Page:
    if isinstance(run, WerRun):
        page = Page("wer", run.model, run.precision, "wer", verdict_sentence(run, None), f"{run.task.clips} clips, {run.engine.engine}")
        page.versions, page.warnings = {"precdoctor": "?", **run.versions}, run.warnings
        _task_section(page, run.task)
        return page
    naive = run.comparison if isinstance(run, CompareRun) else run.comparison.naive
    page = _common(run, naive)
    if isinstance(run, CompareRun):
        page.series = [(run.precision + (" + pins" if run.pins else ""), naive)]
        if run.task is not None:
            _task_section(page, run.task, with_worst=False)
        return page
    c = run.comparison
    page.series = [(f"naive {run.precision.upper()}", c.naive)] + ([(f"{run.precision.upper()} + pins", c.pinned)] if c.pinned else []) + (
        [(f"naive {c.other.precision.upper()}", c.other)] if c.other else [])
    page.marks += [(p, "pin") for p in run.pins]
    page.pins, page.cost, page.search = _pin_rows(run), _cost(run), _search_line(run)
    page.forced = run.artifacts.forced
    page.artifacts, page.mixed_onnx = _artifacts(run, outdir), run.artifacts.mixed_onnx
    page.commands = [a for a in page.artifacts if a["key"] in FIRST_SCREEN]
    if run.task is not None:
        _task_section(page, run.task)
    page.rewrite = rewrite_section(run, outdir)
    page.baselines, page.evaluations = _baselines(run), run.evaluation_log
    page.facts.insert(0, ("acceptance", ", ".join(run.accept) + (" (the default)" if run.accept_default else "")))
    page.targets, page.verify = _targets(run), _verify_lines(run)
    if run.tf32 is not None:
        page.facts.insert(1, ("TF32", run.tf32.note))
    return page



def _task_section(page: Page, task, with_worst: bool = True) -> None:
    page.task, page.task_rows = task, task_rows(task)
    if with_worst:
        page.worst = worst(task)
    page.decodes, page.decode_steps = decodes(task), decode_steps(task)
