"""What the report shows, gathered from any run record into one object the template reads.

The template never looks into a run record itself: a bisect, compare or wer
run becomes a ``Page`` here, so a renamed field fails in Python, loudly, and
the template stays about presentation.
"""
from __future__ import annotations

import difflib
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..comparison import Comparison
from ..formats import get_format
from ..limits import REPORT_TENSORS, REPORT_TRACE
from ..runs import BisectRun, CompareRun, WerRun

ARTIFACT_TITLES = {"trtexec": "trtexec.txt (TensorRT 8.6 - 10.x)", "polygraphy": "polygraphy.txt (TensorRT 8.6 - 10.x)",
                   "trtexec11": "trtexec-11.txt (TensorRT 11, mixed ONNX)", "autocast": "autocast.txt (ModelOpt AutoCast)"}


@dataclass
class PinRow:
    node: str
    op: str
    why: str
    elements: int
    flops: int | None
    flop_share: float | None


@dataclass
class Page:
    command: str
    model: str
    precision: str
    verdict: str
    sentence: str
    subtitle: str
    naive: Comparison | None = None
    series: list[tuple[str, Comparison]] = field(default_factory=list)  # label, comparison: the error plot's lines
    marks: list[tuple[str, str]] = field(default_factory=list)  # (node, what) marked on the plots
    pins: list[PinRow] = field(default_factory=list)
    pin_facts: dict = field(default_factory=dict)
    artifacts: list[dict] = field(default_factory=list)
    mixed_onnx: str | None = None
    task: object | None = None  # TaskReport
    worst: list[dict] = field(default_factory=list)
    baselines: object | None = None
    offenders: list = field(default_factory=list)
    trace: list = field(default_factory=list)
    trace_more: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)
    evaluations: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)


def _diff_html(ref: str, hyp: str) -> str:
    """Word diff of hyp against ref after WER's normalization (what is scored); every word escaped."""
    from ..tasks.wer import normalize

    a, b = normalize(ref).split(), normalize(hyp).split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(html.escape(" ".join(a[i1:i2])))
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(' '.join(b[j1:j2]))}</ins>")
    return " ".join(parts)


def _worst(task) -> list[dict]:
    return [{"id": u.id, "reference": u.reference, "fp32": _diff_html(u.reference, u.fp32),
             "cands": [(k, _diff_html(u.reference, v)) for k, v in u.hypotheses.items()]} for u in task.worst]


def verdict_sentence(run, naive: Comparison | None) -> str:
    prec = run.precision.upper()
    if run.command == "wer":
        return f"WER of {run.model} per configuration."
    verdict = run.verdict
    if verdict in ("healthy", "ok"):
        return f"{prec} is healthy on these inputs: no node needs FP32."
    parts = []
    origin = naive.origin or naive.first_divergence if naive else None
    if origin:
        t, limit = naive.of_node(origin), get_format(run.precision).max_finite
        what = f"{prec} breaks at {origin}"
        if t and t.ref_absmax > limit:
            what += f": its FP32 output reaches {t.ref_absmax:.3g} > {limit:.6g} on {t.overflow} elements"
        elif t and math.isfinite(t.growth):
            what += f": its error grows {t.growth:.3g}x over its inputs"
        parts.append(what)
    for name, o in (naive.outputs if naive else {}).items():
        if not o.diverges:
            continue
        if o.kind == "exact":
            parts.append(f"{o.mismatch} of {o.elements} elements of {name} differ from FP32")
        elif o.metrics.nonfinite_new:
            parts.append(f"{o.metrics.nonfinite_new} Inf/NaN values reach output {name}")
        elif o.positions_off:
            parts.append(f"{o.positions_off} of {o.positions} positions of {name} are silently corrupted "
                         f"(finite but off by more than {naive.tolerance.atol:g})")
        else:
            parts.append(f"output {name} is off by {o.metrics.rel_l2:.3g} relative L2")
    if isinstance(run, BisectRun):
        parts += _fix_sentence(run)
    return "; ".join(parts) + "."


def _fix_sentence(run: BisectRun) -> list[str]:
    if run.verdict == "unfixed":
        return ["no plan met the acceptance: " + run.message]
    n = len(run.pins)
    fix = f"pinning {n} node{'s' if n != 1 else ''} to FP32 restores it"
    rows = run.task
    if rows is not None:
        p, naive, fp32 = rows.row(run.precision + "+pins"), rows.row(run.precision), rows.row("fp32")
        if p and naive and fp32:
            fix += f" (WER {100 * p.wer:.1f} %, naive {run.precision.upper()} {100 * naive.wer:.1f} %, FP32 {100 * fp32.wer:.1f} %)"
    return [fix]


def _pin_rows(run: BisectRun) -> list[PinRow]:
    elems: dict[str, int] = {}
    for t in run.comparison.naive.tensors:
        elems[t.node] = elems.get(t.node, 0) + t.elements
    total = run.flops.total
    return [PinRow(p, run.node_ops.get(p, ""), run.why.get(p, ""), elems.get(p, 0), run.flops.pinned.get(p),
                   run.flops.pinned[p] / total if p in run.flops.pinned and total else None) for p in run.pins]


def _artifacts(run: BisectRun, outdir: Path | None) -> list[dict]:
    """The command files of the run, read only from inside its own folder."""
    if outdir is None:
        return []
    root = outdir.resolve()
    blocks = []
    for key, name in run.artifacts.command_files().items():
        path = (root / name).resolve()
        if path.parent != root or not path.is_file():
            continue  # a run file naming anything outside its folder gets nothing read
        blocks.append({"title": ARTIFACT_TITLES[key], "file": name, "text": path.read_text(encoding="utf-8", errors="replace")})
    return blocks


def _offenders(c: Comparison) -> list:
    return sorted(c.tensors, key=lambda t: (t.nonfinite_new == 0, -t.rel_l2 if not math.isnan(t.rel_l2) else 0.0))[:REPORT_TENSORS]


def _comparison_parts(page: Page, naive: Comparison) -> None:
    page.naive = naive
    page.offenders = _offenders(naive)
    page.trace, page.trace_more = naive.trace[:REPORT_TRACE], max(0, len(naive.trace) - REPORT_TRACE)


def build_page(run, outdir: Path | None) -> Page:
    if isinstance(run, WerRun):
        page = Page("wer", run.model, run.precision, "wer", verdict_sentence(run, None), f"{run.task.clips} clips, backend {run.engine.backend}")
        page.task, page.worst = run.task, _worst(run.task)
        page.versions = run.versions
        return page
    naive = run.comparison.naive if isinstance(run, BisectRun) else run.comparison
    sub = f"{run.nodes} nodes, {run.inputs.samples} input sample(s), backend {run.engine.backend}" + (
        f" (profile {run.engine.profile})" if run.engine.profile else "")
    page = Page(run.command, run.model, run.precision, run.verdict, verdict_sentence(run, naive), sub)
    _comparison_parts(page, naive)
    page.versions = run.versions
    if isinstance(run, CompareRun):
        page.series = [(f"{run.precision}" + (" + pins" if run.pins else ""), naive)]
        page.facts = [("origin / first divergence", f"{naive.origin or '-'} / {naive.first_divergence or '-'}"),
                      ("backend", f"{run.engine.backend}: {run.engine.engine}")]
        return page
    c = run.comparison
    page.series = [(f"naive {run.precision}", c.naive)] + ([(f"{run.precision} + pins", c.pinned)] if c.pinned else []) + (
        [(f"naive {c.other.precision}", c.other)] if c.other else [])
    page.marks = [(n, w) for n, w in ((naive.origin, "Inf/NaN origin"), (naive.first_divergence, "first divergence")) if n]
    page.marks += [(p, "pin") for p in run.pins]
    page.pins = _pin_rows(run)
    page.pin_facts = {"casts": run.artifacts.casts, "one_minimal": run.one_minimal, "evaluations": run.evaluations,
                      "candidates": run.candidates, "nodes": run.nodes, "flops": run.flops}
    page.artifacts, page.mixed_onnx = _artifacts(run, outdir), run.artifacts.mixed_onnx
    page.task = run.task
    page.worst = _worst(run.task) if run.task else []
    page.baselines = run.baselines
    page.evaluations = run.evaluation_log
    page.facts = [("acceptance", ", ".join(run.accept) + (" (default)" if run.accept_default else "")),
                  ("origin / first divergence", f"{naive.origin or '-'} / {naive.first_divergence or '-'}"),
                  ("backend", f"{run.engine.backend}: {run.engine.engine}")]
    page.facts += [(f"time: {k}", f"{v:.2f} s") for k, v in run.timing.items()]
    return page
